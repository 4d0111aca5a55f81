"""Action heads. A head maps features ``(B, F)`` to an action distribution; any policy may compose one."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CategoricalHead(nn.Module):
    """Discrete actions: logits ``(B, num_actions)``; loss is the negative log-likelihood."""

    def __init__(self, in_dim: int, num_actions: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, num_actions)

    def forward(self, features: Tensor) -> Tensor:
        return self.linear(features)

    def loss(self, features: Tensor, actions: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Mean NLL of integer ``actions`` ``(B,)``, and the accuracy of the argmax action."""
        logits = self(features)
        loss = F.cross_entropy(logits, actions.long())
        accuracy = (logits.argmax(-1) == actions).float().mean()
        nll, accuracy_value = torch.stack([loss.detach(), accuracy]).tolist()  # one host transfer, not two
        return loss, {"nll": nll, "action_accuracy": accuracy_value}

    def mode(self, features: Tensor) -> Tensor:
        """Most likely action ``(B,)`` int64."""
        return self(features).argmax(-1)
