"""A scripted multimodal expert for Avoiding: each episode picks one of the 8 paths uniformly at random.

On goal-reaching tasks (env ``avoiding-goal``) it picks uniformly among the paths through the goal's exit.

The expert steers towards waypoints: the chosen gap of each obstacle row (its x jittered by
``WAYPOINT_NOISE``), then the finish line straight above the last gap. It moves at full speed towards the
current waypoint, with Gaussian action noise ``ACTION_NOISE``, and switches to the next waypoint once it has
reached the row's height. It writes the path it chose as the ``style`` stream (the mode id, an index into
:data:`clonekit.envs.avoiding.MODES`), so the diversity of a dataset can be measured and filtered.
"""

from __future__ import annotations

import numpy as np

from clonekit.data import StreamSpec, array_stream
from clonekit.envs.avoiding import FINISH_Y, GOAL_TOLERANCE, MODES, NUM_MODES, ROW_Y, AvoidingVecEnv

WAYPOINT_NOISE = 0.03
ACTION_NOISE = 0.1


class AvoidingExpert:
    """Multimodal Avoiding expert: one of the 8 paths per episode, written as the style stream.

    See the module docstring.
    """

    name = "paths"

    def __init__(self) -> None:
        self._modes = np.zeros(0, dtype=np.int64)
        self._waypoints = np.zeros((0, len(ROW_Y) + 1, 2))
        self._rng = np.random.default_rng(0)
        self._goals = np.zeros((0, 2), dtype=np.float32)

    def streams(self, observation_shape: tuple[int, ...]) -> list[StreamSpec]:
        """Annotation streams this expert writes."""
        return [array_stream("style", "int64", (), f"path (mode) id in [0, {NUM_MODES}) of clonekit.envs.avoiding")]

    def reset(self, env: AvoidingVecEnv, seed: int | None = None) -> None:
        """Choose a path for every slot, uniformly, with jittered waypoints (``seed`` fixes the draws)."""
        self._rng = np.random.default_rng(seed)
        b = env.num_envs
        self._modes = self._rng.integers(NUM_MODES, size=b)
        if env.goal_reaching:  # only the paths that leave through the goal's exit, uniformly
            for i, goal_x in enumerate(env.goals[:, 0]):
                fitting = [m for m, path in enumerate(MODES) if abs(path[-1] - goal_x) <= GOAL_TOLERANCE]
                self._modes[i] = fitting[self._rng.integers(len(fitting))] if fitting else self._modes[i]
        self._goals = env.goals.astype(np.float32)
        gaps = np.array(MODES)[self._modes]  # (B, 3)
        gaps = gaps + self._rng.normal(0.0, WAYPOINT_NOISE, gaps.shape)
        waypoints = np.zeros((b, len(ROW_Y) + 1, 2))
        waypoints[:, : len(ROW_Y), 0] = gaps
        waypoints[:, : len(ROW_Y), 1] = ROW_Y
        waypoints[:, -1, 0] = gaps[:, -1]
        waypoints[:, -1, 1] = FINISH_Y + 0.1
        self._waypoints = waypoints

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Actions ``(B, 2)`` float32 in [-1, 1] and ``{"style": (B,)}`` for positions ``(B, 2)``."""
        b = obs.shape[0]
        # The current waypoint is the first row not yet reached (the finish line after the last row).
        target_index = (obs[:, 1:2] >= np.asarray(ROW_Y)[None]).sum(axis=1)
        target = self._waypoints[np.arange(b), target_index]
        direction = target - obs
        direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-9)
        action = direction + self._rng.normal(0.0, ACTION_NOISE, direction.shape)
        return np.clip(action, -1.0, 1.0).astype(np.float32), {"style": self._modes.copy()}


class AvoidingGoalExpert(AvoidingExpert):
    """The Avoiding expert on goal-reaching tasks: a path through the goal's exit; also writes the goal stream."""

    def streams(self, observation_shape: tuple[int, ...]) -> list[StreamSpec]:
        return [*super().streams(observation_shape), array_stream("goal", "float32", (2,), "goal position (x, y)")]

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """As :meth:`AvoidingExpert.act`, plus ``{"goal": (B, 2)}``."""
        action, annotations = super().act(obs)
        return action, {**annotations, "goal": self._goals.copy()}
