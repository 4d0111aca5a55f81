"""Configuration of HILP: a Hilbert representation and a latent-direction policy trained from reward-free data."""

from __future__ import annotations

import math
from dataclasses import dataclass

from clonekit.config import check


@dataclass(frozen=True)
class HILPConfig:
    """Hilbert foundation policy (Park, Kreiman and Levine, 2024) for vector observations and Box actions.

    ``phi`` is trained so that ``||phi(s) - phi(g)||`` is the temporal distance (see
    :mod:`clonekit.pretrain.hilp`); the policy ``pi(a | s, z)`` by IQL on the intrinsic reward
    ``(phi(s') - phi(s)) . z`` for random unit ``z``; to reach goal ``g`` it acts with
    ``z = (phi(g) - phi(s)) / ||phi(g) - phi(s)||``. Goals are states, so ``act`` reads a ``goal`` of the
    observation's shape.

    Args:
        obs_shape: Shape ``(D,)`` of one observation. Filled in from the dataset.
        action_shape: Shape ``(A,)`` of one action. Filled in from the dataset.

        latent_dim: Width ``d`` of the representation ``phi(s)`` and of the latent direction ``z``.
        phi_hidden_sizes: Widths of the ``phi`` networks (MLPs with layer norm).
        gamma: Discount of the temporal-distance value ``V(s, g)``.
        expectile: Expectile of the ``phi`` value regression (towards 1: the shortest paths in the data).
        p_current_goal: Share of ``phi`` training goals that are the state itself.
        p_random_goal: Share of ``phi`` training goals drawn from other states of the batch; the rest are future
            states of the same episode, ``Geometric(1 - gamma)`` steps ahead.
        goal_window: Steps of future read per sample for those goals (the offset is capped at this minus 1).

        hidden_sizes: Widths of the MLPs of the latent-conditioned actor, ``Q`` and ``V``.
        skill_gamma: Discount of the intrinsic return.
        skill_expectile: Expectile of the latent-conditioned ``V`` regression on ``Q``.
        beta: Inverse temperature of the actor's advantage weights ``exp(beta * (Q - V))``.
        max_weight: The advantage weights are clipped at this value.
        polyak: Rate of the target networks' (``phi`` and ``Q``) moving average per optimizer step.
    """

    obs_shape: tuple[int, ...]
    action_shape: tuple[int, ...] = ()

    latent_dim: int = 32
    phi_hidden_sizes: tuple[int, ...] = (256, 256)
    gamma: float = 0.99
    expectile: float = 0.95
    p_current_goal: float = 0.2
    p_random_goal: float = 0.3
    goal_window: int = 128

    hidden_sizes: tuple[int, ...] = (256, 256)
    skill_gamma: float = 0.99
    skill_expectile: float = 0.9
    beta: float = 10.0
    max_weight: float = 100.0
    polyak: float = 0.005

    def __post_init__(self) -> None:
        check(len(self.obs_shape) == 1 and self.obs_shape[0] >= 1, "obs_shape", "(D,) vectors", self.obs_shape)
        check(
            len(self.action_shape) == 1 and self.action_shape[0] >= 1,
            "action_shape",
            "(A,) with A >= 1 (a Box action space)",
            self.action_shape,
        )
        check(1 <= self.latent_dim <= 4096, "latent_dim", "in [1, 4096]", self.latent_dim)
        for name in ("phi_hidden_sizes", "hidden_sizes"):
            sizes = getattr(self, name)
            check(1 <= len(sizes) <= 16 and all(0 < s <= 65536 for s in sizes), name, "1 to 16 widths", sizes)
        for name in ("gamma", "skill_gamma"):
            check(0 < getattr(self, name) < 1, name, "in (0, 1)", getattr(self, name))
        for name in ("expectile", "skill_expectile"):
            check(0 < getattr(self, name) < 1, name, "in (0, 1)", getattr(self, name))
        for name in ("p_current_goal", "p_random_goal"):
            check(0 <= getattr(self, name) <= 1, name, "in [0, 1]", getattr(self, name))
        check(
            self.p_current_goal + self.p_random_goal <= 1,
            "p_current_goal + p_random_goal",
            "<= 1",
            self.p_current_goal + self.p_random_goal,
        )
        check(2 <= self.goal_window <= 4096, "goal_window", "in [2, 4096]", self.goal_window)
        check(self.beta >= 0 and math.isfinite(self.beta), "beta", "a finite number >= 0", self.beta)
        check(
            self.max_weight >= 1 and math.isfinite(self.max_weight),
            "max_weight",
            "a finite number >= 1",
            self.max_weight,
        )
        check(0 < self.polyak <= 1, "polyak", "in (0, 1]", self.polyak)
