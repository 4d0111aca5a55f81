"""Avoiding: a 2-D point agent moves from the bottom to the top past three rows of obstacles.

A re-creation of the *Avoiding* task of D3IL ("Towards Diverse Behaviors", Jia et al. 2024) without a robot
simulator: what matters there is the geometry, which offers many distinct collision-free paths, so
demonstrations are multimodal and a policy that averages them drives into an obstacle.

Geometry (arena ``x`` in [-1, 1], ``y`` in [0, 1.1])::

    y = 1.00  ----------------------------- finish line (success) -----------------------------
    y = 0.75        gap -0.9   (o -0.6)   gap -0.3   (o 0.0)   gap 0.3   (o 0.6)   gap 0.9
    y = 0.50                   gap -0.6   (o -0.3)   gap 0.0   (o 0.3)   gap 0.6
    y = 0.25                              gap -0.25  (o 0.0)   gap 0.25
    y = 0.00                                start (x in [-0.1, 0.1], y in [0, 0.05])

``(o X)`` is a round obstacle of radius ``OBSTACLE_RADIUS`` centred at ``(X, row y)``. The agent passes each
row through a *gap*; from a gap it can reach the two neighbouring gaps of the next row without touching an
obstacle. A *behaviour* (mode) is the sequence of gaps taken in the three rows: 2 x 2 x 2 = 8 modes
(``MODES``), e.g. ``(-0.25, -0.6, -0.9)`` hugs the left side. :func:`classify_paths` maps a trajectory to
its mode by the gap nearest to where it crossed each row.

Observation: ``float32 (2,)`` agent position ``(x, y)``. Action: ``float32 (2,)`` in [-1, 1], the velocity
as a fraction of ``MAX_STEP`` per step (the agent moves by ``action * MAX_STEP``, clipped to the arena).
Reward 1 and ``terminated`` on crossing the finish line; touching an obstacle (centre within
``OBSTACLE_RADIUS + AGENT_RADIUS``) is also ``terminated``, with reward 0 (a failure); ``truncated`` after
``max_steps`` steps.

A *task* is a start position. Train and test start positions come from different seed streams and are
checked to differ, so the ``test`` split evaluates from start states no demonstration began at.

Goal-reaching variant (env family ``avoiding-goal``): a task also names a goal, one of the 4 exits
``EXITS`` on the finish line (the x of the last row's gaps); success is crossing the finish line within
``GOAL_TOLERANCE`` of it, and crossing elsewhere ends the episode with reward 0. The policy gets the goal
as a second input, ``goal`` ``(2,)`` (see :meth:`AvoidingVecEnv.policy_inputs`).

Reaching variant (env family ``avoiding-reach``, :class:`AvoidingReachVecEnv`): a task is a start and a goal
point anywhere in the free arena (:func:`sample_reach_tasks`); success is coming within ``REACH_TOLERANCE`` of
the goal before ``max_steps`` (default ``REACH_MAX_STEPS``), touching an obstacle ends the episode with reward 0,
and the finish line is no border. The goal, a position like the observation, is the policy's ``goal`` input.

Precision variant (env kwarg ``finish_gate``, a half-width): the finish line is open only through gates of
that half-width centred on the ``EXITS``; crossing it elsewhere ends the episode with reward 0. The expert's
exits scatter by ``WAYPOINT_NOISE`` (0.03) around the gates' centres, so a gate of a few hundredths asks for
corrections that cloned behaviour lacks (the ``avoiding-residual`` experiment). ``None`` (the default): the
whole line counts, as before. Env kwarg ``drift``: a side wind that moves the agent by that much along ``x``
every step (0, the default: none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from clonekit.config import check
from clonekit.seeding import derive_seed

OBSTACLE_RADIUS = 0.08
AGENT_RADIUS = 0.02
MAX_STEP = 0.04
FINISH_Y = 1.0
ARENA_X = (-1.0, 1.0)
ARENA_Y = (0.0, 1.1)
START_X = (-0.1, 0.1)
START_Y = (0.0, 0.05)
DEFAULT_MAX_STEPS = 80

ROW_Y = (0.25, 0.5, 0.75)
# Obstacle centres (x, y), row by row.
OBSTACLES = np.array(
    [(0.0, 0.25), (-0.3, 0.5), (0.3, 0.5), (-0.6, 0.75), (0.0, 0.75), (0.6, 0.75)],
    dtype=np.float64,
)
# x of the gaps between (and beside) the obstacles of each row.
GAPS = ((-0.25, 0.25), (-0.6, 0.0, 0.6), (-0.9, -0.3, 0.3, 0.9))


def _modes() -> tuple[tuple[float, float, float], ...]:
    modes = []
    for i, g1 in enumerate(GAPS[0]):
        for j in (i, i + 1):  # row 2 gaps next to the row 1 gap
            for k in (j, j + 1):  # row 3 gaps next to the row 2 gap
                modes.append((g1, GAPS[1][j], GAPS[2][k]))
    return tuple(modes)


# Goals of the goal-reaching variant: the x of the last row's gaps, on the finish line.
EXITS = GAPS[-1]
GOAL_TOLERANCE = 0.15

# The 8 collision-free behaviours, as the gap x taken in each row; the index is the mode id.
MODES: tuple[tuple[float, float, float], ...] = _modes()
NUM_MODES = len(MODES)


@dataclass(frozen=True)
class AvoidingTask:
    """One start position ``(x, y)`` of the agent and, in the goal-reaching variant, a ``goal`` on the
    finish line (one of ``EXITS``) that the agent must cross within ``GOAL_TOLERANCE`` of."""

    start: tuple[float, float]
    goal: tuple[float, float] | None = None

    @property
    def key(self) -> str:
        """Identity of the task (start, and goal if any, rounded to 1e-4), to keep train and test disjoint."""
        start = f"{self.start[0]:.4f},{self.start[1]:.4f}"
        return start if self.goal is None else f"{start}->{self.goal[0]:.4f},{self.goal[1]:.4f}"


def sample_tasks(
    seed: int, split: str, count: int, exclude: set[str] | frozenset[str] = frozenset()
) -> list[AvoidingTask]:
    """``count`` distinct start positions for ``split`` drawn from ``seed``, none whose key is in ``exclude``."""
    rng = np.random.default_rng(derive_seed(seed, f"avoiding-tasks:{split}"))
    tasks: list[AvoidingTask] = []
    seen = set(exclude)
    while len(tasks) < count:
        x, y = float(rng.uniform(*START_X)), float(rng.uniform(*START_Y))
        task = AvoidingTask((round(x, 4), round(y, 4)))
        if task.key in seen:
            continue
        seen.add(task.key)
        tasks.append(task)
    return tasks


def sample_goal_tasks(
    seed: int, split: str, count: int, exclude: set[str] | frozenset[str] = frozenset()
) -> list[AvoidingTask]:
    """Goal-reaching tasks: start positions as :func:`sample_tasks`, each with a goal exit drawn uniformly."""
    rng = np.random.default_rng(derive_seed(seed, f"avoiding-goals:{split}"))
    starts = sample_tasks(seed, split, count, {key.split("->")[0] for key in exclude})
    return [AvoidingTask(t.start, (EXITS[int(rng.integers(len(EXITS)))], FINISH_Y)) for t in starts]


class AvoidingVecEnv:
    """Many Avoiding episodes stepped together with numpy (one episode per slot, as :class:`MazeVecEnv`).

    When the tasks have goals, crossing the finish line counts only within ``GOAL_TOLERANCE`` of the goal
    (elsewhere the episode ends with reward 0), and :meth:`policy_inputs` gives the goals to the policy.
    ``finish_gate``: the precision variant's gate half-width, ``drift``: its side wind per step (see the module
    docstring); ``None`` and 0: neither.
    """

    def __init__(
        self,
        tasks: list[AvoidingTask],
        max_steps: int | None = None,
        finish_gate: float | None = None,
        drift: float = 0.0,
    ) -> None:
        if not tasks:
            raise ValueError("AvoidingVecEnv needs at least one task")
        check(finish_gate is None or finish_gate > 0, "finish_gate", "a half-width > 0 or None", finish_gate)
        check(abs(drift) <= MAX_STEP, "drift", f"in [-{MAX_STEP}, {MAX_STEP}]", drift)
        self.finish_gate = finish_gate
        self.drift = float(drift)
        self.tasks = list(tasks)
        self.num_envs = len(tasks)
        self.max_steps = max_steps if max_steps is not None else DEFAULT_MAX_STEPS
        self.starts = np.array([t.start for t in tasks], dtype=np.float64)
        self.agents = self.starts.copy()
        self.steps = np.zeros(self.num_envs, dtype=np.int64)
        self.done = np.zeros(self.num_envs, dtype=bool)
        self.crashed = np.zeros(self.num_envs, dtype=bool)
        self.goal_reaching = any(t.goal is not None for t in tasks)
        if self.goal_reaching and not all(t.goal is not None for t in tasks):
            raise ValueError("AvoidingVecEnv: either every task has a goal or none has")
        self.goals = np.array([t.goal if t.goal is not None else (0.0, FINISH_Y) for t in tasks], dtype=np.float64)

    def policy_inputs(self) -> dict[str, np.ndarray]:
        """Inputs for the policy besides ``obs``: ``{"goal": (B, 2) float32}`` for goal-reaching tasks."""
        return {"goal": self.goals.astype(np.float32)} if self.goal_reaching else {}

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Put every slot at its task's start; returns observations ``(B, 2)`` float32.

        The start is the task itself, so ``seed`` is accepted for the common interface and not used.
        """
        self.agents = self.starts.copy()
        self.steps[:] = 0
        self.done[:] = False
        self.crashed[:] = False
        return self.observe()

    def observe(self) -> np.ndarray:
        """Agent positions ``(B, 2)`` float32."""
        return self.agents.astype(np.float32)

    def halt(self, mask: np.ndarray) -> None:
        """End the slots in ``mask`` now: the next :meth:`step` leaves them unchanged (their action never runs)."""
        self.done |= np.asarray(mask, dtype=bool)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Apply velocities ``(B, 2)`` in [-1, 1]; returns ``(obs, reward, terminated, truncated)``.

        Slots already done are left unchanged and report ``terminated=truncated=False``.
        """
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape != (self.num_envs, 2) or not np.isfinite(actions).all():
            raise ValueError(f"actions: expected finite values of shape ({self.num_envs}, 2), got {actions.shape}")
        active = ~self.done
        target = self.agents + np.clip(actions, -1.0, 1.0) * MAX_STEP
        if self.drift:  # the precision variant's side wind, which the demonstrations never felt
            target[:, 0] += self.drift
        target[:, 0] = target[:, 0].clip(*ARENA_X)
        target[:, 1] = target[:, 1].clip(*ARENA_Y)
        self.agents[active] = target[active]
        self.steps[active] += 1
        hit = collides(self.agents)
        finished = self.agents[:, 1] >= FINISH_Y
        on_target = np.abs(self.agents[:, 0] - self.goals[:, 0]) <= GOAL_TOLERANCE
        success = active & finished & ~hit & (on_target | ~self.goal_reaching)
        if self.finish_gate is not None:  # the precision variant: only through a gate around an exit
            off_gate = np.abs(self.agents[:, 0, None] - np.asarray(EXITS)[None]).min(axis=1)
            success &= off_gate <= self.finish_gate
        crash = active & hit
        terminated = (active & finished) | crash
        truncated = active & ~terminated & (self.steps >= self.max_steps)
        self.crashed |= crash
        self.done |= terminated | truncated
        return self.observe(), success.astype(np.float32), terminated, truncated


def collides(positions: np.ndarray) -> np.ndarray:
    """``(B,)`` bool: whether each position ``(B, 2)`` touches an obstacle."""
    distance = np.linalg.norm(positions[:, None, :] - OBSTACLES[None], axis=-1)
    return (distance < OBSTACLE_RADIUS + AGENT_RADIUS).any(axis=1)


def classify_paths(paths: np.ndarray) -> np.ndarray:
    """Mode id ``(B,)`` int64 of trajectories ``(T, B, 2)``: the index in ``MODES``, or -1.

    A row's gap is the one nearest to where the trajectory first reached the row's height; a trajectory
    that never reached the last row, or whose gap sequence is not in ``MODES``, gets -1.
    """
    batch = paths.shape[1]
    crossing = np.zeros((batch, len(ROW_Y)), dtype=np.float64)
    reached = np.ones(batch, dtype=bool)
    for r, row_y in enumerate(ROW_Y):
        above = paths[:, :, 1] >= row_y  # (T, B)
        first = above.argmax(axis=0)
        reached &= above.any(axis=0)
        x = paths[first, np.arange(batch), 0]
        gaps = np.asarray(GAPS[r])
        crossing[:, r] = gaps[np.abs(x[:, None] - gaps[None]).argmin(axis=1)]
    lookup: dict[tuple[float, ...], int] = {mode: i for i, mode in enumerate(MODES)}
    ids = np.array([lookup.get(tuple(float(g) for g in row), -1) for row in crossing], dtype=np.int64)
    return np.where(reached, ids, -1)


class AvoidingEnv(gym.Env[np.ndarray, np.ndarray]):
    """Gymnasium env of Avoiding (a one-slot :class:`AvoidingVecEnv`).

    ``start`` fixes the start position; without it, every ``reset(seed=...)`` draws one from the start area.
    ``render_mode="rgb_array"``: ``render()`` draws the arena as an ``(S, S, 3)`` uint8 frame (numpy, no GL).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}  # noqa: RUF012 - gymnasium reads this

    def __init__(
        self, start: tuple[float, float] | None = None, max_steps: int | None = None, render_mode: str | None = None
    ) -> None:
        check(render_mode in (None, "rgb_array"), "render_mode", "None or 'rgb_array'", render_mode)
        self.start = start
        self.max_steps = max_steps
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(
            np.array([ARENA_X[0], ARENA_Y[0]], dtype=np.float32),
            np.array([ARENA_X[1], ARENA_Y[1]], dtype=np.float32),
            dtype=np.float32,
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self._vec: AvoidingVecEnv | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if self.start is not None:
            start = self.start
        else:
            start = (float(self.np_random.uniform(*START_X)), float(self.np_random.uniform(*START_Y)))
        self._vec = AvoidingVecEnv([AvoidingTask(start)], max_steps=self.max_steps)
        return self._vec.reset()[0], {"start": start}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._vec is None:
            raise RuntimeError("AvoidingEnv.step called before reset")
        obs, reward, terminated, truncated = self._vec.step(np.asarray(action, dtype=np.float64)[None])
        return (
            obs[0],
            float(reward[0]),
            bool(terminated[0]),
            bool(truncated[0]),
            {"crashed": bool(self._vec.crashed[0])},
        )

    def render(self) -> np.ndarray:
        """The arena with the agent, ``(S, S, 3)`` uint8 (``S``: the pixel envs' default image size)."""
        from clonekit.envs.pixels import render_avoiding  # pixels imports this module, so not at the top

        if self._vec is None:
            raise RuntimeError("AvoidingEnv.render called before reset")
        return np.ascontiguousarray(render_avoiding(self._vec.observe())[0].transpose(1, 2, 0))


class AvoidingGoalEnv(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """Gymnasium env of goal-reaching Avoiding: observations ``{"obs": (x, y), "goal": (x, y)}``.

    ``start`` and ``goal`` fix the task; without them, every ``reset(seed=...)`` draws a start position and
    one of the ``EXITS``.
    """

    metadata = AvoidingEnv.metadata

    def __init__(
        self,
        start: tuple[float, float] | None = None,
        goal: tuple[float, float] | None = None,
        max_steps: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        self._plain = AvoidingEnv(start, max_steps, render_mode)
        self.render_mode = render_mode
        self.goal = goal
        arena = self._plain.observation_space  # a goal is a position too (those used lie on the finish line)
        self.observation_space = gym.spaces.Dict({"obs": arena, "goal": arena})  # type: ignore[assignment]
        self.action_space = self._plain.action_space
        self._goal = np.zeros(2, dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        _, info = self._plain.reset(seed=int(self.np_random.integers(0, 2**62)))
        goal = self.goal if self.goal is not None else (EXITS[int(self.np_random.integers(len(EXITS)))], FINISH_Y)
        self._plain._vec = AvoidingVecEnv([AvoidingTask(info["start"], goal)], max_steps=self._plain.max_steps)
        self._goal = np.array(goal, dtype=np.float32)
        return {"obs": self._plain._vec.reset()[0], "goal": self._goal.copy()}, {**info, "goal": goal}

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self._plain.step(action)
        return {"obs": obs, "goal": self._goal.copy()}, reward, terminated, truncated, info

    def render(self) -> np.ndarray:
        """The arena with the agent, as :meth:`AvoidingEnv.render`."""
        return self._plain.render()


# Goal-reaching anywhere (env family ``avoiding-reach``): a task is a start and a goal point in free space.
REACH_TOLERANCE = 0.05  # success: within this distance of the goal (a bit more than one full step)
REACH_MAX_STEPS = 120
REACH_CLEARANCE = 0.15  # starts and goals keep this distance from every obstacle centre
REACH_MIN_DISTANCE = 0.5  # a start is at least this far from its goal
REACH_X = (-0.95, 0.95)
REACH_Y = (0.02, 1.08)


def free_points(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` points ``(count, 2)`` float64 drawn uniformly from the arena, at least ``REACH_CLEARANCE`` from
    every obstacle centre (rejection sampling)."""
    points = np.zeros((0, 2))
    while len(points) < count:
        draw = np.stack([rng.uniform(*REACH_X, 4 * count), rng.uniform(*REACH_Y, 4 * count)], axis=1)
        clear = np.linalg.norm(draw[:, None] - OBSTACLES[None], axis=-1).min(axis=1) >= REACH_CLEARANCE
        points = np.concatenate([points, draw[clear]])
    return points[:count]


def sample_reach_tasks(
    seed: int,
    split: str,
    goals: int,
    starts_per_goal: int = 1,
    exclude: set[str] | frozenset[str] = frozenset(),
) -> list[AvoidingTask]:
    """``goals * starts_per_goal`` reaching tasks for ``split``: ``goals`` goal points in free space, each with
    ``starts_per_goal`` start points at least ``REACH_MIN_DISTANCE`` away (task ``k`` has goal
    ``k // starts_per_goal``); coordinates rounded to 1e-4, no task key in ``exclude``."""
    rng = np.random.default_rng(derive_seed(seed, f"avoiding-reach:{split}"))
    tasks: list[AvoidingTask] = []
    seen = set(exclude)
    while len(tasks) < goals * starts_per_goal:
        goal = tuple(round(float(v), 4) for v in free_points(rng, 1)[0])
        chosen: list[AvoidingTask] = []
        while len(chosen) < starts_per_goal:
            start = tuple(round(float(v), 4) for v in free_points(rng, 1)[0])
            task = AvoidingTask((start[0], start[1]), (goal[0], goal[1]))
            if np.hypot(start[0] - goal[0], start[1] - goal[1]) >= REACH_MIN_DISTANCE and task.key not in seen:
                seen.add(task.key)
                chosen.append(task)
        tasks += chosen
    return tasks


class AvoidingReachVecEnv(AvoidingVecEnv):
    """Goal reaching anywhere in the Avoiding arena: success (reward 1, ``terminated``) within
    ``REACH_TOLERANCE`` of the task's goal; touching an obstacle ends the episode with reward 0; the finish
    line is no border here (the arena goes on to ``y = 1.1``). :meth:`policy_inputs` gives the goal, a position
    like the observation. Same dynamics as :class:`AvoidingVecEnv` (no drift, no gates)."""

    def __init__(self, tasks: list[AvoidingTask], max_steps: int | None = None) -> None:
        if any(t.goal is None for t in tasks):
            raise ValueError("AvoidingReachVecEnv: every task needs a goal")
        super().__init__(tasks, max_steps if max_steps is not None else REACH_MAX_STEPS)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Apply velocities ``(B, 2)`` in [-1, 1]; returns ``(obs, reward, terminated, truncated)``."""
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape != (self.num_envs, 2) or not np.isfinite(actions).all():
            raise ValueError(f"actions: expected finite values of shape ({self.num_envs}, 2), got {actions.shape}")
        active = ~self.done
        target = self.agents + np.clip(actions, -1.0, 1.0) * MAX_STEP
        target[:, 0] = target[:, 0].clip(*ARENA_X)
        target[:, 1] = target[:, 1].clip(*ARENA_Y)
        self.agents[active] = target[active]
        self.steps[active] += 1
        hit = active & collides(self.agents)
        reached = active & ~hit & (np.linalg.norm(self.agents - self.goals, axis=1) <= REACH_TOLERANCE)
        terminated = hit | reached
        truncated = active & ~terminated & (self.steps >= self.max_steps)
        self.crashed |= hit
        self.done |= terminated | truncated
        return self.observe(), reached.astype(np.float32), terminated, truncated
