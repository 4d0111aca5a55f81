"""Unimodal continuous action heads: mean regression (MSE) and a diagonal Gaussian.

Both predict one action per input, so on multimodal demonstrations they learn the *average* of the modes,
which is exactly the failure the multimodal heads (GMM, diffusion) exist to avoid.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class GaussianHead(nn.Module):
    """``features (B, F) -> N(mean (B, D), diag(std (B, D)^2))``.

    With ``learn_std=False`` it is plain regression: the loss is the mean squared error and ``sample``
    returns the mean. With ``learn_std=True`` the loss is the negative log-likelihood and ``sample`` draws
    from the Gaussian (``mode`` returns the mean).
    """

    def __init__(self, in_dim: int, action_dim: int, learn_std: bool = False) -> None:
        super().__init__()
        self.action_dim = action_dim
        self.learn_std = learn_std
        self.linear = nn.Linear(in_dim, 2 * action_dim if learn_std else action_dim)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, log_std)``, each ``(B, D)`` (``log_std`` is 0 without ``learn_std``)."""
        out = self.linear(features)
        if not self.learn_std:
            return out, torch.zeros_like(out)
        mean, log_std = out.chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def loss(self, features: Tensor, actions: Tensor) -> tuple[Tensor, dict[str, float]]:
        """MSE (or Gaussian NLL with ``learn_std``) of ``actions`` ``(B, D)``."""
        mean, log_std = self(features)
        mse = (mean - actions).square().mean()
        if not self.learn_std:
            return mse, {"mse": float(mse.detach())}
        nll = (0.5 * ((actions - mean) / log_std.exp()).square() + log_std + 0.5 * math.log(2 * math.pi)).sum(-1)
        return nll.mean(), {"nll": float(nll.mean().detach()), "mse": float(mse.detach())}

    def mode(self, features: Tensor) -> Tensor:
        """The mean action ``(B, D)``."""
        return self(features)[0]

    def noise_shapes(self) -> dict[str, tuple[int, ...]]:
        """The random draws ``sample`` makes, by name, each ``(B, *shape)``: none for MSE."""
        return {"noise": (self.action_dim,)} if self.learn_std else {}

    def draw_noise(
        self, batch_size: int, device: torch.device, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """The draws of :meth:`noise_shapes` (standard normal), from ``generator`` (torch's global one if None)."""
        if not self.learn_std:
            return {}
        return {"noise": torch.randn(batch_size, self.action_dim, generator=generator, device=device)}

    def sample_with(self, features: Tensor, noise: dict[str, Tensor]) -> Tensor:
        """The action ``(B, D)`` ``sample`` returns when its random draws are ``noise`` (see :meth:`draw_noise`)."""
        mean, log_std = self(features)
        if not self.learn_std:
            return mean
        return mean + log_std.exp() * noise["noise"].to(mean.dtype)

    def sample(self, features: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """An action ``(B, D)``: the mean for MSE, a draw from the Gaussian with ``learn_std``."""
        return self.sample_with(features, self.draw_noise(features.shape[0], features.device, generator))
