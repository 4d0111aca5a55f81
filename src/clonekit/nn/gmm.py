"""Gaussian mixture action head: several modes, each a diagonal Gaussian, with learned weights."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class GMMHead(nn.Module):
    """``features (B, F) -> sum_k pi_k N(mean_k, diag(std_k^2))`` over ``num_components`` components ``K``.

    Trained by the negative log-likelihood (a log-sum-exp over components). ``sample`` picks a component
    by its weight, then draws from it; ``mode`` returns the mean of the heaviest component.
    """

    def __init__(self, in_dim: int, action_dim: int, num_components: int = 5) -> None:
        super().__init__()
        if num_components < 1:
            raise ValueError(f"GMMHead num_components: expected >= 1, got {num_components}")
        self.action_dim = action_dim
        self.num_components = num_components
        self.logits = nn.Linear(in_dim, num_components)
        self.params = nn.Linear(in_dim, 2 * num_components * action_dim)
        # Spread the initial means over the normalized action range [-1, 1]: components that start together
        # tend to stay together, leaving one wide component across several modes.
        with torch.no_grad():
            self.params.bias.view(num_components, 2 * action_dim)[:, :action_dim].uniform_(-1.0, 1.0)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(logits (B, K), means (B, K, D), log_stds (B, K, D))``."""
        b = features.shape[0]
        means, log_stds = self.params(features).view(b, self.num_components, 2 * self.action_dim).chunk(2, dim=-1)
        return self.logits(features), means, log_stds.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def log_prob(self, features: Tensor, actions: Tensor) -> Tensor:
        """Log-density ``(B,)`` of ``actions`` ``(B, D)``."""
        logits, means, log_stds = self(features)
        z = (actions[:, None, :] - means) / log_stds.exp()
        component = -(0.5 * z.square() + log_stds + 0.5 * math.log(2 * math.pi)).sum(-1)  # (B, K)
        return torch.logsumexp(torch.log_softmax(logits, -1) + component, dim=-1)

    def loss(self, features: Tensor, actions: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Mean negative log-likelihood of ``actions`` ``(B, D)``."""
        nll = -self.log_prob(features, actions).mean()
        return nll, {"nll": float(nll.detach())}

    def mode(self, features: Tensor) -> Tensor:
        """Mean ``(B, D)`` of the component with the largest weight."""
        logits, means, _ = self(features)
        return means[torch.arange(len(means)), logits.argmax(-1)]

    def noise_shapes(self) -> dict[str, tuple[int, ...]]:
        """The random draws ``sample`` makes, by name, each ``(B, *shape)``."""
        return {"component_noise": (self.num_components,), "noise": (self.action_dim,)}

    def draw_noise(
        self, batch_size: int, device: torch.device, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """``component_noise`` ~ Exp(1) picks the component (as ``torch.multinomial`` draws one sample: the
        argmax of ``probs / component_noise``), ``noise`` ~ N(0, 1) the point in it."""
        exponential = torch.empty(batch_size, self.num_components, device=device).exponential_(1, generator=generator)
        noise = torch.randn(batch_size, self.action_dim, generator=generator, device=device)
        return {"component_noise": exponential, "noise": noise}

    def sample_with(self, features: Tensor, noise: dict[str, Tensor]) -> Tensor:
        """The action ``(B, D)`` ``sample`` returns when its random draws are ``noise`` (see :meth:`draw_noise`)."""
        logits, means, log_stds = self(features)
        k = (torch.softmax(logits, -1) / noise["component_noise"]).argmax(-1)  # (B,)
        index = k[:, None, None].expand(-1, 1, self.action_dim)
        mean, log_std = means.gather(1, index).squeeze(1), log_stds.gather(1, index).squeeze(1)
        return mean + log_std.exp() * noise["noise"]

    def sample(self, features: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A draw ``(B, D)`` from the mixture."""
        return self.sample_with(features, self.draw_noise(features.shape[0], features.device, generator))
