"""Configuration of a residual policy: a frozen base policy plus a small learned correction (ResiP)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from clonekit.config import check


@dataclass(frozen=True)
class ResidualConfig:
    """A frozen ``continuous_bc`` base policy and a residual ``continuous_bc`` (``mse`` head) on top of it.

    The action is ``clip(a_base + scale * half_range * delta, low, high)``: ``a_base`` is the base's action for
    this step (a chunked base's chunk is executed step by step), ``delta`` in [-1, 1] the residual's output for
    the observation and that base action, ``[low, high]`` the base's action range and ``half_range`` its half
    width. See :mod:`clonekit.policies.residual.policy` and :mod:`clonekit.rl.residual` (training by PPO).

    Args:
        base_config: The base's ``continuous_bc`` config (as its run's ``config.json`` records it); its weights
            are part of this policy's weights (copied into the residual run).
        residual_config: The residual network's ``continuous_bc`` config: ``obs_shape`` ``(D + A,)`` (the base's
            normalized observation, then its action in [-1, 1] units), ``action_shape`` ``(A,)``, head ``mse``.
        scale: Largest correction, as a fraction of the half action range (``delta`` is clipped to [-1, 1]).
    """

    base_config: dict[str, Any] = field(default_factory=dict)
    residual_config: dict[str, Any] = field(default_factory=dict)
    scale: float = 0.2

    def __post_init__(self) -> None:
        check(bool(self.base_config), "base_config", "a continuous_bc config (JSON object)", self.base_config)
        check(bool(self.residual_config), "residual_config", "a continuous_bc config (JSON object)", {})
        check(0 < self.scale <= 2 and math.isfinite(self.scale), "scale", "in (0, 2]", self.scale)
