"""Value-learning pieces shared by the critics of offline RL (IQL, TD3+BC) and of RLIF: twin ``Q`` networks
with target copies, the expectile loss, and the Polyak update of target networks.

A :class:`TwinQ` reads features ``(B, F)`` (e.g. a normalized, flattened observation) and an action: with
discrete actions each ``Q`` network has one output per action, read at the given action ``(B,)``; with
continuous actions the action ``(B, A)`` is appended to the features. Its target copies take no gradient
(``requires_grad=False``) and move only through :meth:`TwinQ.update_target`, so an optimizer over all
parameters leaves them alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from clonekit.nn.encoders import mlp


def expectile_loss(diff: Tensor, expectile: float) -> Tensor:
    """Mean of ``|expectile - 1(diff < 0)| * diff^2``: asymmetric least squares, ``diff = Q - V``."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.square()).mean()


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, rate: float) -> None:
    """Move every parameter of ``target`` towards the same parameter of ``online`` by ``rate`` (1: copy)."""
    for target_param, online_param in zip(target.parameters(), online.parameters(), strict=True):
        target_param.lerp_(online_param, rate)


class TwinQ(nn.Module):
    """Two ``Q`` networks (``q``) and their target copies (``q_target``), MLPs of widths ``hidden_sizes``.

    ``num_actions``: the number of discrete actions, or ``None`` for continuous actions of width
    ``action_dim``. The target copies start equal to the online networks.
    """

    def __init__(self, features: int, num_actions: int | None, action_dim: int, hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        self.num_actions = num_actions
        q_in = features if num_actions is not None else features + action_dim
        q_out = num_actions if num_actions is not None else 1
        self.q = nn.ModuleList([mlp(q_in, hidden_sizes, q_out) for _ in range(2)])
        self.q_target = nn.ModuleList([mlp(q_in, hidden_sizes, q_out) for _ in range(2)])
        self.q_target.load_state_dict(self.q.state_dict())
        self.q_target.requires_grad_(False)

    def _pair(self, nets: nn.ModuleList, features: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        if self.num_actions is None:
            x = torch.cat([features, action.flatten(1).float()], dim=1)
            first, second = (net(x).squeeze(1) for net in nets)
        else:
            index = action.long().unsqueeze(1)
            first, second = (net(features).gather(1, index).squeeze(1) for net in nets)
        return first, second

    def online(self, features: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """The two online ``Q(s, a)``, each ``(B,)``, of features ``(B, F)`` and actions."""
        return self._pair(self.q, features, action)

    def target(self, features: Tensor, action: Tensor) -> Tensor:
        """The smaller of the two target ``Q(s, a)`` ``(B,)``."""
        return torch.minimum(*self._pair(self.q_target, features, action))

    def first_with_fixed_weights(self, features: Tensor, action: Tensor) -> Tensor:
        """The first online ``Q(s, a)`` ``(B,)`` with its weights detached: the gradient reaches the inputs (e.g.
        an actor's action) but not the critic, so an actor's loss can join the critic's in one backward pass."""
        net = self.q[0]
        weights = {name: p.detach() for name, p in net.named_parameters()}
        if self.num_actions is None:
            x = torch.cat([features, action.flatten(1).float()], dim=1)
            return functional_call(net, weights, (x,)).squeeze(1)
        return functional_call(net, weights, (features,)).gather(1, action.long().unsqueeze(1)).squeeze(1)

    def update_target(self, rate: float) -> None:
        """Move the target networks towards the online ones by ``rate`` (Polyak averaging)."""
        polyak_update(self.q_target, self.q, rate)


__all__ = ["TwinQ", "expectile_loss", "polyak_update"]
