"""Configuration of Play-LMP: latent plans learned from windows of undirected play."""

from __future__ import annotations

import math
from dataclasses import dataclass

from clonekit.config import check


@dataclass(frozen=True)
class PlayLMPConfig:
    """Play-supervised latent motor plans (Lynch et al., *Learning Latent Plans from Play*, 2019).

    From a window of play (states and actions, its last state taken as the goal) a plan encoder infers a
    latent plan ``z``; a plan prior proposes ``z`` from the first state and the goal alone; a goal- and
    plan-conditioned policy reconstructs the window's actions. Loss: the actions' squared error plus
    ``kl_weight`` times ``KL(encoder || prior)``. Goals are states, so ``act`` reads a ``goal`` of the
    observation's shape.

    Args:
        obs_shape: Shape ``(D,)`` of one observation. Filled in from the dataset.
        action_shape: Shape ``(A,)`` of one action. Filled in from the dataset.

        max_window: Longest window of play in steps (windows are read this long and cut).
        min_window: Shortest window; each sample's length is drawn uniformly in ``[min_window, max_window]``
            (and cut at its episode's end).
        latent_dim: Width of the latent plan ``z``.
        hidden_sizes: Widths of the MLPs of the plan encoder, the plan prior and the policy.
        kl_weight: Weight ``beta`` of the KL term.
        replan_every: ``act`` draws a new plan from the prior every this many steps.
    """

    obs_shape: tuple[int, ...]
    action_shape: tuple[int, ...] = ()

    max_window: int = 32
    min_window: int = 16
    latent_dim: int = 16
    hidden_sizes: tuple[int, ...] = (128, 128)
    kl_weight: float = 0.01
    replan_every: int = 16

    def __post_init__(self) -> None:
        check(len(self.obs_shape) == 1 and self.obs_shape[0] >= 1, "obs_shape", "(D,) vectors", self.obs_shape)
        check(
            len(self.action_shape) == 1 and self.action_shape[0] >= 1,
            "action_shape",
            "(A,) with A >= 1 (a Box action space)",
            self.action_shape,
        )
        check(2 <= self.max_window <= 1024, "max_window", "in [2, 1024]", self.max_window)
        check(
            2 <= self.min_window <= self.max_window,
            "min_window",
            f"in [2, max_window={self.max_window}]",
            self.min_window,
        )
        check(1 <= self.latent_dim <= 1024, "latent_dim", "in [1, 1024]", self.latent_dim)
        sizes = self.hidden_sizes
        check(1 <= len(sizes) <= 16 and all(0 < s <= 65536 for s in sizes), "hidden_sizes", "1 to 16 widths", sizes)
        check(
            self.kl_weight >= 0 and math.isfinite(self.kl_weight), "kl_weight", "a finite number >= 0", self.kl_weight
        )
        check(1 <= self.replan_every <= 1024, "replan_every", "in [1, 1024]", self.replan_every)
