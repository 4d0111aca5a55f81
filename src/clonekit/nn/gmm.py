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

    def sample(self, features: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A draw ``(B, D)`` from the mixture."""
        logits, means, log_stds = self(features)
        rows = torch.arange(len(means), device=means.device)
        k = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)
        noise = torch.randn(means.shape[0], self.action_dim, generator=generator, device=means.device)
        return means[rows, k] + log_stds[rows, k].exp() * noise
