"""Categorical head over discretized continuous actions (as RT-1 does): one categorical per dimension.

Each action dimension (normalized to [-1, 1]) is cut into ``num_bins`` equal bins; the head predicts a
categorical over the bins of every dimension and is trained by cross-entropy with the bin the demonstrated
value falls in. A categorical can put mass on several bins, so it keeps the modes of each dimension; the
dimensions are sampled independently, so modes that couple dimensions can mix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class BinnedHead(nn.Module):
    """``features (B, F) -> logits (B, D, num_bins)``; an action is the centre of the bin drawn per dimension."""

    centers: Tensor

    def __init__(self, in_dim: int, action_dim: int, num_bins: int = 21) -> None:
        super().__init__()
        if num_bins < 2:
            raise ValueError(f"BinnedHead num_bins: expected >= 2, got {num_bins}")
        self.action_dim = action_dim
        self.num_bins = num_bins
        self.linear = nn.Linear(in_dim, action_dim * num_bins)
        edges = torch.linspace(-1, 1, num_bins + 1)
        self.register_buffer("centers", (edges[1:] + edges[:-1]) / 2, persistent=False)

    def forward(self, features: Tensor) -> Tensor:
        """Logits ``(B, D, num_bins)``."""
        return self.linear(features).view(features.shape[0], self.action_dim, self.num_bins)

    def bins(self, actions: Tensor) -> Tensor:
        """Bin index ``(B, D)`` of normalized ``actions`` ``(B, D)`` (values outside [-1, 1] go to the end bins)."""
        index = ((actions.clamp(-1, 1) + 1) / 2 * self.num_bins).long()
        return index.clamp(0, self.num_bins - 1)

    def loss(self, features: Tensor, actions: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Mean cross-entropy of the demonstrated bins of ``actions`` ``(B, D)``."""
        logits = self(features)
        target = self.bins(actions)
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten())
        accuracy = (logits.argmax(-1) == target).float().mean()
        return loss, {"nll": float(loss.detach()), "bin_accuracy": float(accuracy)}

    def mode(self, features: Tensor) -> Tensor:
        """Centre of the most likely bin per dimension, ``(B, D)``."""
        return self.centers[self(features).argmax(-1)]

    def noise_shapes(self) -> dict[str, tuple[int, ...]]:
        """The random draws ``sample`` makes, by name, each ``(B, *shape)``."""
        return {"bin_noise": (self.action_dim, self.num_bins)}

    def draw_noise(
        self, batch_size: int, device: torch.device, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """``bin_noise`` ~ Exp(1): the bin of each dimension is the argmax of ``probs / bin_noise`` (how
        ``torch.multinomial`` draws one sample)."""
        shape = (batch_size, self.action_dim, self.num_bins)
        return {"bin_noise": torch.empty(shape, device=device).exponential_(1, generator=generator)}

    def sample_with(self, features: Tensor, noise: dict[str, Tensor]) -> Tensor:
        """The action ``(B, D)`` ``sample`` returns when its random draws are ``noise`` (see :meth:`draw_noise`)."""
        probs = torch.softmax(self(features), -1)
        return self.centers[(probs / noise["bin_noise"]).argmax(-1)]

    def sample(self, features: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Centre of a bin drawn per dimension, ``(B, D)``."""
        return self.sample_with(features, self.draw_noise(features.shape[0], features.device, generator))
