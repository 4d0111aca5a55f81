"""Configuration of TD3+BC, for continuous actions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from clonekit.config import check
from clonekit.policies.from_data import auto_normalize_obs, resolve_auto


@dataclass(frozen=True)
class TD3BCConfig:
    """TD3+BC (Fujimoto & Gu, 2021): TD3's deterministic actor and twin critics, with a behaviour cloning term.

    The actor minimizes ``-lambda * Q(s, pi(s)) + (pi(s) - a)^2`` with ``lambda = alpha / mean|Q|``, so ``alpha``
    trades the critic's advice against staying near the data. Continuous (Box) actions only.

    Args:
        obs_shape: Shape of one observation (flattened for every network). Filled in from the dataset.
        action_shape: Shape ``(A,)`` of one action. Filled in from the dataset.

        hidden_sizes: Widths of the MLPs of the actor and of each critic.
        normalize_obs: ``"per_feature"``, ``"per_channel"`` (maps), ``"none"``, or ``"auto"``: ``"per_channel"``
            for ``(C, H, W)`` observations, else ``"per_feature"`` (the paper's state normalization); fitted on
            the training data.

        gamma: Discount of future rewards.
        alpha: Weight of the critic's term against behaviour cloning (paper: 2.5).
        policy_noise: Standard deviation of the target policy smoothing noise, in [-1, 1] action units.
        noise_clip: The smoothing noise is clipped to ``[-noise_clip, noise_clip]``.
        policy_freq: The actor and the target networks are updated every ``policy_freq``-th optimizer step
            (delayed policy updates); the critics every step.
        polyak: Rate of the target networks' moving average per update.
    """

    obs_shape: tuple[int, ...]
    action_shape: tuple[int, ...]

    hidden_sizes: tuple[int, ...] = (256, 256)
    normalize_obs: Literal["auto", "none", "per_feature", "per_channel"] = "auto"

    gamma: float = 0.99
    alpha: float = 2.5
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_freq: int = 2
    polyak: float = 0.005

    def __post_init__(self) -> None:
        check(
            len(self.obs_shape) >= 1 and all(d > 0 for d in self.obs_shape),
            "obs_shape",
            "positive dims",
            self.obs_shape,
        )
        check(
            len(self.action_shape) == 1 and self.action_shape[0] >= 1,
            "action_shape",
            "(A,) with A >= 1 (a Box action space; td3bc has no discrete form, use iql)",
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
        check(0 <= self.gamma < 1, "gamma", "in [0, 1)", self.gamma)
        check(math.isfinite(self.alpha) and self.alpha >= 0, "alpha", "a finite number >= 0", self.alpha)
        check(
            math.isfinite(self.policy_noise) and self.policy_noise >= 0,
            "policy_noise",
            "a finite number >= 0",
            self.policy_noise,
        )
        check(
            math.isfinite(self.noise_clip) and self.noise_clip >= 0,
            "noise_clip",
            "a finite number >= 0",
            self.noise_clip,
        )
        check(1 <= self.policy_freq <= 1000, "policy_freq", "in [1, 1000]", self.policy_freq)
        check(0 < self.polyak <= 1, "polyak", "in (0, 1]", self.polyak)
