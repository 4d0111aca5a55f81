"""Configuration of Implicit Q-Learning (IQL), for discrete or continuous actions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from clonekit.config import check
from clonekit.policies.from_data import auto_normalize_obs, resolve_auto


@dataclass(frozen=True)
class IQLConfig:
    """Implicit Q-Learning (Kostrikov et al., 2021): offline RL that never values an action outside the data.

    ``V(s)`` is an expectile of the target ``Q(s, a)`` over the data's actions, ``Q`` is regressed on
    ``r + gamma * V(s')``, and the actor is behaviour cloning weighted by ``exp(beta * (Q(s, a) - V(s)))``.
    Exactly one of ``num_actions`` (discrete actions) and ``action_shape`` (continuous) is set; training fills
    in the one that fits the dataset's action space.

    Args:
        obs_shape: Shape of one observation (flattened for every network). Filled in from the dataset.
        num_actions: Number of discrete actions, or 0 for continuous actions. Filled in from the dataset.
        action_shape: Shape ``(A,)`` of one continuous action, or ``()`` for discrete actions. Filled in from
            the dataset.

        hidden_sizes: Widths of the MLPs of the actor, ``Q`` and ``V``.
        normalize_obs: ``"per_feature"``, ``"per_channel"`` (maps), ``"none"``, or ``"auto"``: ``"per_channel"``
            for ``(C, H, W)`` observations, else ``"per_feature"``; fitted on the training data.
        actor: Continuous actions only: ``"gaussian"`` (the actor's likelihood has a learned, state-dependent
            spread, as in the paper) or ``"mse"`` (weighted regression of the mean). ``act`` returns the mean
            either way.

        gamma: Discount of future rewards.
        expectile: ``tau`` of the expectile regression of ``V`` on ``Q``: 0.5 fits the data's mean value,
            towards 1 the best action's value (paper: 0.7 for locomotion, 0.9 for mazes).
        beta: Inverse temperature of the advantage weights ``exp(beta * (Q - V))``; 0 is plain behaviour
            cloning of all data.
        max_weight: The advantage weights are clipped at this value (paper: 100).
        polyak: Rate of the target ``Q`` networks' moving average per optimizer step.
    """

    obs_shape: tuple[int, ...]
    num_actions: int = 0
    action_shape: tuple[int, ...] = ()

    hidden_sizes: tuple[int, ...] = (256, 256)
    normalize_obs: Literal["auto", "none", "per_feature", "per_channel"] = "auto"
    actor: Literal["gaussian", "mse"] = "gaussian"

    gamma: float = 0.99
    expectile: float = 0.7
    beta: float = 3.0
    max_weight: float = 100.0
    polyak: float = 0.005

    def __post_init__(self) -> None:
        check(
            len(self.obs_shape) >= 1 and all(d > 0 for d in self.obs_shape),
            "obs_shape",
            "positive dims",
            self.obs_shape,
        )
        discrete, continuous = self.num_actions != 0, self.action_shape != ()
        check(
            discrete != continuous,
            "num_actions, action_shape",
            "exactly one set (num_actions >= 2 for discrete actions, action_shape (A,) for continuous)",
            (self.num_actions, self.action_shape),
        )
        if discrete:
            check(self.num_actions >= 2, "num_actions", ">= 2", self.num_actions)
        else:
            check(
                len(self.action_shape) == 1 and self.action_shape[0] >= 1,
                "action_shape",
                "(A,) with A >= 1 (a Box action space)",
                self.action_shape,
            )
        resolve_auto(self, "normalize_obs", auto_normalize_obs(self.obs_shape))
        check(
            self.normalize_obs in ("none", "per_feature", "per_channel"),
            "normalize_obs",
            "auto|none|per_feature|per_channel",
            self.normalize_obs,
        )
        if self.normalize_obs == "per_channel":
            check(len(self.obs_shape) == 3, "normalize_obs", "per_channel only for (C, H, W) maps", self.obs_shape)
        check(
            1 <= len(self.hidden_sizes) <= 16 and all(0 < h <= 65536 for h in self.hidden_sizes),
            "hidden_sizes",
            "1 to 16 widths in [1, 65536]",
            self.hidden_sizes,
        )
        check(self.actor in ("gaussian", "mse"), "actor", "gaussian|mse", self.actor)
        check(0 <= self.gamma < 1, "gamma", "in [0, 1)", self.gamma)
        check(0 < self.expectile < 1, "expectile", "in (0, 1)", self.expectile)
        check(math.isfinite(self.beta) and self.beta >= 0, "beta", "a finite number >= 0", self.beta)
        check(math.isfinite(self.max_weight) and self.max_weight >= 1, "max_weight", "a number >= 1", self.max_weight)
        check(0 < self.polyak <= 1, "polyak", "in (0, 1]", self.polyak)
