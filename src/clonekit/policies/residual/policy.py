"""Residual policy (ResiP): a frozen base policy's action plus a learned per-step correction.

``act``: the base acts as it always does (a chunked base executes its chunk step by step from its queue, its
sampling noise from torch's global generator), then the residual network sees this step's observation and
that base action and outputs ``delta`` in [-1, 1]; the executed action is
``clip(a_base + scale * half_range * delta, low, high)`` with the base's action range ``[low, high]``. With a
zero ``delta`` (the residual's last layer starts at zero) the action is the base's, bit for bit.

The residual is trained by PPO (:mod:`clonekit.rl.residual`), so ``compute_loss`` is not offered: a residual
run is written by ``clonekit finetune residual``, never by ``clonekit train``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from clonekit.config import config_from_json
from clonekit.errors import ConfigError
from clonekit.policies.base import Policy
from clonekit.policies.continuous_bc import ContinuousBCConfig, ContinuousBCPolicy
from clonekit.policies.residual.config import ResidualConfig


def residual_inputs(base: ContinuousBCPolicy, obs: Tensor, base_action: Tensor) -> Tensor:
    """The residual's input ``(B, D + A)``: the base's normalized observation ``obs`` ``(B, D)`` and its
    action ``(B, A)`` in [-1, 1] units."""
    return torch.cat([base.normalizer(obs).flatten(1), base.normalize_action(base_action)], dim=1)


def combine(base: ContinuousBCPolicy, base_action: Tensor, delta: Tensor, scale: float) -> Tensor:
    """The executed action ``(B, A)``: ``base_action`` moved by ``scale * half_range * delta`` (``delta`` clipped to
    [-1, 1]), then clipped to the base's action range; a zero ``delta`` returns ``base_action`` unchanged."""
    half_range = (base.action_high - base.action_low) / 2
    moved = base_action + scale * half_range * delta.clamp(-1.0, 1.0)
    return torch.minimum(torch.maximum(moved, base.action_low), base.action_high)


class ResidualPolicy(Policy):
    """A frozen ``continuous_bc`` base plus a residual ``continuous_bc`` (``mse`` head) correction.

    ``act``'s state is the base's (its chunk queue); see the module docstring.
    """

    name = "residual"

    def __init__(self, config: ResidualConfig) -> None:
        super().__init__()
        self.config = config
        self.base = ContinuousBCPolicy(config_from_json(ContinuousBCConfig, config.base_config, "base_config"))
        self.residual = ContinuousBCPolicy(
            config_from_json(ContinuousBCConfig, config.residual_config, "residual_config")
        )
        check_residual_shapes(self.base, self.residual)
        self.base.requires_grad_(False)

    @property
    def deterministic(self) -> bool:
        """As deterministic as the base (the residual acts with its mean)."""
        return self.base.deterministic

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        raise ConfigError("policy residual: trained by `clonekit finetune residual` (PPO), not by `clonekit train`")

    def initial_state(self, batch_size: int) -> Any:
        return self.base.initial_state(batch_size)

    def act(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, Any]:
        base_action, state = self.base.act(obs, state)
        inputs = residual_inputs(self.base, obs["obs"], base_action)
        delta = self.residual.predict_chunk({"obs": inputs})[:, 0]
        return combine(self.base, base_action, delta, self.config.scale), state


def check_residual_shapes(base: ContinuousBCPolicy, residual: ContinuousBCPolicy) -> None:
    """A one-line ``ConfigError`` unless ``residual`` fits ``base``: a vector-observation base without a goal or
    frame stack, and a residual with the ``mse`` head, ``chunk`` 1, input ``(D + A,)`` and output ``(A,)``."""
    b, r = base.config, residual.config
    if len(b.obs_shape) != 1 or b.frame_stack != 1 or b.goal_shape:
        raise ConfigError(
            f"base_config: expected vector observations (D,), frame_stack 1 and no goal, found obs_shape "
            f"{b.obs_shape}, frame_stack {b.frame_stack}, goal_shape {b.goal_shape}"
        )
    width = b.obs_shape[0] + b.action_shape[0]
    if r.obs_shape != (width,) or r.action_shape != b.action_shape or r.head != "mse" or r.chunk != 1:
        raise ConfigError(
            f"residual_config: expected obs_shape ({width},), action_shape {b.action_shape}, head 'mse', chunk 1; "
            f"found {r.obs_shape}, {r.action_shape}, {r.head!r}, {r.chunk}"
        )
