"""Hilbert representations (Park, Kreiman and Levine, *Foundation Policies with Hilbert Representations*, 2024).

A map ``phi: S -> R^d`` trained so that the distance ``||phi(s) - phi(g)||`` is the temporal distance from ``s``
to ``g`` (the steps an optimal agent needs), learned from reward-free data as a goal-conditioned value
``V(s, g) = -||phi(s) - phi(g)||`` by IQL-style expectile regression on the Bellman target
``r + gamma * (1 - [s = g]) * V_target(s', g)`` with ``r = -1`` per step (0 at the goal). The expectile
(towards 1) makes ``V`` follow the *best* paths in the data rather than the average wander, so distances
shorten where play data only meanders.

Goals are relabeled from the data (:func:`relabel_goals`): with probability ``p_current_goal`` the state
itself, ``p_random_goal`` a state from anywhere in the batch, otherwise a future state of the same episode
``k ~ Geometric(1 - gamma)`` steps ahead. The future is read from an ``obs`` window of ``goal_window`` steps
(:mod:`clonekit.data.windows`), so offsets are capped at ``goal_window - 1`` and at the episode's last step.

The value is an ensemble of two ``phi`` networks (MLPs with layer norm) with Polyak-averaged target copies, as
the paper's implementation; :meth:`HilbertValue.phi` is the first member. :class:`HilbertValue` is the module a
policy composes (``hilp`` trains it jointly with its latent-conditioned policy, the paper's recipe: the policy's
intrinsic reward reads ``phi`` without gradient).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from clonekit.nn.critics import polyak_update


def layer_norm_mlp(in_dim: int, hidden: Sequence[int], out_dim: int) -> nn.Sequential:
    """Linear + LayerNorm + GELU layers of widths ``hidden``, then a linear output of ``out_dim``: the
    value networks of HILP use layer norm, which keeps large regression targets (distances of ~100 steps)
    from destabilizing the hidden activations."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.LayerNorm(width), nn.GELU()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


def steps_to_episode_end(episode_lengths: Sequence[int] | np.ndarray) -> np.ndarray:
    """``(num_steps,)`` int64 for episodes of ``episode_lengths`` stored one after another: for each step, how
    many steps of its episode follow it (0 at the last step). Policies read it as a derived stream."""
    lengths = np.asarray(episode_lengths, dtype=np.int64)
    ends = np.repeat(np.cumsum(lengths), lengths)
    return ends - 1 - np.arange(int(lengths.sum()), dtype=np.int64)


def relabel_goals(
    window: Tensor, steps_left: Tensor, gamma: float, p_current_goal: float, p_random_goal: float
) -> tuple[Tensor, Tensor]:
    """Goals for the states ``window[:, 0]`` of observation windows ``(B, K, ...)`` (see the module docstring).

    ``steps_left`` ``(B,)``: steps after the state in its episode. Returns ``(goals (B, ...), offsets (B,))``:
    ``offsets`` is the step distance to a goal from the same episode (0: the state itself) or -1 for a goal
    drawn from elsewhere in the batch.
    """
    batch, length = window.shape[0], window.shape[1]
    ahead = torch.distributions.Geometric(probs=torch.tensor(1.0 - gamma)).sample((batch,)).long() + 1
    offsets = torch.minimum(torch.minimum(ahead, steps_left.long()), torch.tensor(length - 1))
    draw = torch.rand(batch)
    offsets = torch.where(draw < p_current_goal, torch.zeros_like(offsets), offsets)
    goals = window[torch.arange(batch), offsets]
    random = draw >= 1.0 - p_random_goal
    shuffled = window[torch.randperm(batch), 0]
    goals = torch.where(random.view(-1, *[1] * (goals.dim() - 1)), shuffled, goals)
    return goals, torch.where(random, torch.full_like(offsets, -1), offsets)


class HilbertValue(nn.Module):
    """``V(s, g) = -||phi(s) - phi(g)||`` with two ``phi`` networks and their target copies.

    Inputs are (already normalized) flat states ``(B, F)``; ``phi`` maps them to ``(B, latent_dim)``.
    """

    def __init__(self, features: int, hidden_sizes: Sequence[int], latent_dim: int) -> None:
        super().__init__()
        self.phis = nn.ModuleList([layer_norm_mlp(features, hidden_sizes, latent_dim) for _ in range(2)])
        self.target_phis = nn.ModuleList([layer_norm_mlp(features, hidden_sizes, latent_dim) for _ in range(2)])
        self.target_phis.load_state_dict(self.phis.state_dict())
        self.target_phis.requires_grad_(False)

    def phi(self, states: Tensor) -> Tensor:
        """The representation ``(B, latent_dim)`` of states ``(B, F)`` (the first ensemble member)."""
        return self.phis[0](states)

    def loss(
        self, states: Tensor, next_states: Tensor, goals: Tensor, at_goal: Tensor, gamma: float, expectile: float
    ) -> tuple[Tensor, dict[str, float]]:
        """Expectile value loss on states, next states and goals ``(B, F)``; ``at_goal`` ``(B,)`` bool marks
        transitions whose state is the goal (reward 0, no bootstrap); every other step costs -1."""
        batch = len(states)
        reward = at_goal.float() - 1.0
        not_done = 1.0 - at_goal.float()
        with torch.no_grad():
            # One pass per network over the three kinds of states (fewer calls: this loop is overhead-bound).
            stacked = torch.cat([states, next_states, goals])
            now, after = [], []
            for net in self.target_phis:
                phi_s, phi_next, phi_g = net(stacked).split(batch)
                now.append(-(phi_s - phi_g).norm(dim=-1))
                after.append(-(phi_next - phi_g).norm(dim=-1))
            # The advantage under the pessimistic next value decides which side of the expectile a sample is on.
            advantage = reward + gamma * not_done * torch.minimum(*after) - (now[0] + now[1]) / 2
            targets = [reward + gamma * not_done * value for value in after]
        values = []
        for net in self.phis:
            phi_s, phi_g = net(torch.cat([states, goals])).split(batch)
            values.append(-(phi_s - phi_g).norm(dim=-1))
        weight = torch.where(advantage >= 0, expectile, 1.0 - expectile)
        loss = (weight * (targets[0] - values[0]).square()).mean() + (weight * (targets[1] - values[1]).square()).mean()
        return loss, {"phi_loss": float(loss.detach()), "v_mean": float(values[0].detach().mean())}

    def update_target(self, rate: float) -> None:
        """Move the target ``phi`` networks towards the online ones by ``rate``."""
        polyak_update(self.target_phis, self.phis, rate)


__all__ = ["HilbertValue", "layer_norm_mlp", "relabel_goals", "steps_to_episode_end"]
