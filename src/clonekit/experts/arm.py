"""A scripted expert for the planar arm: damped least-squares Jacobian control towards the target.

Every step the expert asks the end effector to move straight towards the target by at most ``ee_speed`` (times
the reach), turns that displacement into joint changes with damped least squares (the least-norm joint motion,
kept finite near singular poses; see :func:`clonekit.envs.arm.damped_least_squares`) and scales the changes into
the action range as a whole, so the direction survives. It works for any number of links; ``action_noise``
(default 0) adds Gaussian noise to the actions it records and plays.
"""

from __future__ import annotations

import numpy as np

from clonekit.config import check
from clonekit.data import StreamSpec
from clonekit.envs.arm import ArmVecEnv, angles_from_obs, damped_least_squares, joint_action

EE_SPEED = 0.08  # largest end-effector step asked for, as a fraction of the reach
DAMPING = 0.05


class ArmReachExpert:
    """Damped least-squares reaching expert for :class:`clonekit.envs.arm.ArmVecEnv` (any link count)."""

    name = "reach"

    def __init__(self, ee_speed: float = EE_SPEED, damping: float = DAMPING, action_noise: float = 0.0) -> None:
        check(0 < ee_speed <= 1, "ee_speed", "in (0, 1] (a fraction of the reach)", ee_speed)
        check(damping >= 0, "damping", ">= 0", damping)
        check(action_noise >= 0, "action_noise", ">= 0", action_noise)
        self.ee_speed, self.damping, self.action_noise = float(ee_speed), float(damping), float(action_noise)
        self._lengths = np.ones(2)
        self._max_delta = 1.0
        self._rng = np.random.default_rng(0)

    def streams(self, observation_shape: tuple[int, ...]) -> list[StreamSpec]:
        """Annotation streams this expert writes: none."""
        return []

    def reset(self, env: ArmVecEnv, seed: int | None = None) -> None:
        """Read the arm's link lengths and joint speed from ``env``; ``seed`` fixes the action noise."""
        self._lengths = np.asarray(env.lengths, dtype=np.float64)
        self._max_delta = float(env.max_delta)
        self._rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Actions ``(B, L)`` float32 in [-1, 1] for observations ``(B, 2L + 4)``; no annotations."""
        links = len(self._lengths)
        angles = angles_from_obs(obs, links)
        target = obs[:, 2 * links : 2 * links + 2].astype(np.float64)
        ee = obs[:, 2 * links + 2 : 2 * links + 4].astype(np.float64)
        step = target - ee
        largest = self.ee_speed * float(self._lengths.sum())
        step *= np.minimum(1.0, largest / np.maximum(np.linalg.norm(step, axis=1, keepdims=True), 1e-12))
        action = joint_action(damped_least_squares(angles, self._lengths, step, self.damping), self._max_delta)
        if self.action_noise:
            action = action + self._rng.normal(0.0, self.action_noise, action.shape)
        return np.clip(action, -1.0, 1.0).astype(np.float32), {}
