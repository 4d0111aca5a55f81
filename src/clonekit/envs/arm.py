"""Arm: a planar arm of 2 or more revolute links reaches a target with its end effector.

A toy two-embodiment setting for cross-embodiment retargeting (see :mod:`clonekit.quality.retarget`): the same
targets are reached by arms with different numbers of links (env kwarg ``links``), which differ in their joint
space (observation and action sizes) but share the workspace their end effector moves in.

Geometry: the base sits at the origin; link ``k`` has length ``link_lengths[k]`` (default: ``links`` equal links
of total length 1, the *reach*). Joint angle ``q_k`` is relative to the previous link (``q_0`` to the x axis),
so link ``k`` points along the absolute angle ``q_0 + ... + q_k``.

Observation: ``float32 (2L + 4,)`` for ``L`` links: ``sin q`` (L), ``cos q`` (L), the target ``(x, y)`` and the
end effector ``(x, y)``. Action: ``float32 (L,)`` in [-1, 1], the joint velocities as a fraction of
``max_delta`` radians per step (``q += clip(action, -1, 1) * max_delta``). Reward 1 and ``terminated`` when the
end effector is within ``tolerance`` of the target; ``truncated`` after ``max_steps`` steps.

A *task* is a start configuration (``L`` joint angles) and a target. Targets lie at a distance in
``TARGET_RADIUS`` (as fractions of the reach) from the base, at any angle, at least ``MIN_START_DISTANCE``
(times the reach) from the start's end effector. Train and test tasks come from different seed streams (one per
link count) and are checked to differ, so the ``test`` split evaluates from start-target pairs no
demonstration saw.

The kinematics (:func:`forward_kinematics`, :func:`jacobian`, :func:`damped_least_squares`) are numpy-batched
and public: the scripted expert (:mod:`clonekit.experts.arm`) and the retargeting map use them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from clonekit.config import check
from clonekit.errors import ConfigError
from clonekit.seeding import derive_seed

DEFAULT_LINKS = 2
DEFAULT_MAX_STEPS = 60
DEFAULT_TOLERANCE = 0.05
DEFAULT_MAX_DELTA = 0.15  # radians per step at action 1
TARGET_RADIUS = (0.3, 0.9)  # fractions of the reach
MIN_START_DISTANCE = 0.3  # fraction of the reach between the start's end effector and the target
START_BEND = 2.0  # joints after the first start in [-START_BEND, START_BEND] radians
MAX_LINKS = 6


def default_link_lengths(links: int) -> tuple[float, ...]:
    """``links`` equal link lengths of total length 1."""
    return tuple(1.0 / links for _ in range(links))


def forward_kinematics(angles: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Positions ``(B, L + 1, 2)`` of the base, every joint and the end effector (last) for angles ``(B, L)``."""
    absolute = np.cumsum(angles, axis=1)
    steps = np.stack([np.cos(absolute), np.sin(absolute)], axis=-1) * np.asarray(lengths)[None, :, None]
    positions = np.zeros((angles.shape[0], angles.shape[1] + 1, 2))
    positions[:, 1:] = np.cumsum(steps, axis=1)
    return positions


def jacobian(angles: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``(B, 2, L)``: d(end effector) / d(angles) at angles ``(B, L)``.

    Joint ``j`` turns everything after it about its own position ``p_j``, so its column is the end effector's
    offset from ``p_j`` turned by 90 degrees.
    """
    positions = forward_kinematics(angles, lengths)
    offset = positions[:, -1:, :] - positions[:, :-1, :]  # (B, L, 2)
    return np.stack([-offset[..., 1], offset[..., 0]], axis=1)


def damped_least_squares(
    angles: np.ndarray, lengths: np.ndarray, displacement: np.ndarray, damping: float
) -> np.ndarray:
    """Joint changes ``(B, L)`` that move the end effector by ``displacement`` ``(B, 2)`` to first order:
    ``J^T (J J^T + damping^2 I)^-1 displacement``, the least-norm solution, kept finite near singular poses."""
    jac = jacobian(angles, lengths)
    gram = jac @ jac.transpose(0, 2, 1) + damping**2 * np.eye(2)[None]
    return np.einsum("bij,bj->bi", jac.transpose(0, 2, 1), np.linalg.solve(gram, displacement[..., None])[..., 0])


def joint_action(delta: np.ndarray, max_delta: float) -> np.ndarray:
    """Actions ``(B, L)`` in [-1, 1] for joint changes ``delta`` ``(B, L)``: a row too fast for ``max_delta`` is
    scaled down as a whole, so the end effector keeps its direction (clipping each joint would bend it)."""
    action = delta / max_delta
    peak = np.abs(action).max(axis=1, keepdims=True)
    return action / np.maximum(peak, 1.0)


def angles_from_obs(obs: np.ndarray, links: int) -> np.ndarray:
    """Joint angles ``(B, L)`` read back from observations ``(B, 2L + 4)`` (sin and cos)."""
    return np.arctan2(obs[:, :links], obs[:, links : 2 * links]).astype(np.float64)


@dataclass(frozen=True)
class ArmTask:
    """A start configuration ``start`` (``L`` joint angles, radians) and a ``target`` ``(x, y)``."""

    start: tuple[float, ...]
    target: tuple[float, float]

    @property
    def key(self) -> str:
        """Identity of the task (angles and target rounded to 1e-4), to keep train and test disjoint."""
        angles = ",".join(f"{a:.4f}" for a in self.start)
        return f"q={angles};t={self.target[0]:.4f},{self.target[1]:.4f}"


def draw_task(rng: np.random.Generator, lengths: tuple[float, ...]) -> ArmTask:
    """One task for an arm with ``lengths``: start angles and a target (see the module docstring), rounded to 1e-4."""
    reach = float(sum(lengths))
    while True:
        start = [rng.uniform(-math.pi, math.pi), *rng.uniform(-START_BEND, START_BEND, len(lengths) - 1)]
        radius = reach * rng.uniform(*TARGET_RADIUS)
        heading = rng.uniform(-math.pi, math.pi)
        task = ArmTask(
            tuple(round(float(a), 4) for a in start),
            (round(radius * math.cos(heading), 4), round(radius * math.sin(heading), 4)),
        )
        ee = forward_kinematics(np.array([task.start]), np.asarray(lengths))[0, -1]
        if np.linalg.norm(ee - np.asarray(task.target)) >= MIN_START_DISTANCE * reach:
            return task


def sample_tasks(
    seed: int, split: str, count: int, lengths: tuple[float, ...], exclude: set[str] | frozenset[str] = frozenset()
) -> list[ArmTask]:
    """``count`` distinct tasks of ``split`` for an arm with ``lengths``, drawn from ``seed``; none in ``exclude``."""
    rng = np.random.default_rng(derive_seed(seed, f"arm-tasks:{len(lengths)}:{split}"))
    tasks: list[ArmTask] = []
    seen = set(exclude)
    while len(tasks) < count:
        task = draw_task(rng, lengths)
        if task.key in seen:
            continue
        seen.add(task.key)
        tasks.append(task)
    return tasks


def check_options(
    links: Any, link_lengths: Any, max_steps: Any, tolerance: Any, max_delta: Any
) -> tuple[int, tuple[float, ...]]:
    """Validate the arm's options (one-line ``ConfigError``); returns the link count and the link lengths."""
    check(
        isinstance(links, int) and not isinstance(links, bool) and 2 <= links <= MAX_LINKS,
        "links",
        f"an integer in [2, {MAX_LINKS}]",
        links,
    )
    lengths = default_link_lengths(links) if link_lengths is None else link_lengths
    check(
        isinstance(lengths, list | tuple)
        and len(lengths) == links
        and all(isinstance(v, int | float) and not isinstance(v, bool) and 0 < v <= 10 for v in lengths),
        "link_lengths",
        f"{links} lengths in (0, 10] (one per link)",
        link_lengths,
    )
    check(
        max_steps is None or (isinstance(max_steps, int) and not isinstance(max_steps, bool) and max_steps >= 1),
        "max_steps",
        "an integer >= 1",
        max_steps,
    )
    check(isinstance(tolerance, int | float) and tolerance > 0, "tolerance", "a distance > 0", tolerance)
    check(isinstance(max_delta, int | float) and 0 < max_delta <= math.pi, "max_delta", "in (0, pi]", max_delta)
    return links, tuple(float(v) for v in lengths)


def observation_space(lengths: tuple[float, ...]) -> gym.spaces.Box:
    """The observation space of an arm with ``lengths`` (see the module docstring)."""
    links, reach = len(lengths), float(sum(lengths)) * 1.05  # a little room for float32 rounding
    low = np.array([-1.0] * (2 * links) + [-reach] * 4, dtype=np.float32)
    return gym.spaces.Box(low, -low, dtype=np.float32)


def action_space(links: int) -> gym.spaces.Box:
    """The action space of an arm with ``links`` links: joint velocities in [-1, 1]."""
    return gym.spaces.Box(-1.0, 1.0, (links,), dtype=np.float32)


class ArmVecEnv:
    """Many arm episodes stepped together with numpy (one episode per slot, as :class:`AvoidingVecEnv`)."""

    def __init__(
        self,
        tasks: list[ArmTask],
        link_lengths: tuple[float, ...],
        max_steps: int | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
        max_delta: float = DEFAULT_MAX_DELTA,
    ) -> None:
        if not tasks:
            raise ValueError("ArmVecEnv needs at least one task")
        self.links = len(link_lengths)
        bad = [t.start for t in tasks if len(t.start) != self.links]
        check(not bad, "tasks", f"start angles for {self.links} links", bad[:1])
        self.lengths = np.asarray(link_lengths, dtype=np.float64)
        self.tasks = list(tasks)
        self.num_envs = len(tasks)
        self.max_steps = max_steps if max_steps is not None else DEFAULT_MAX_STEPS
        self.tolerance = float(tolerance)
        self.max_delta = float(max_delta)
        self.starts = np.array([t.start for t in tasks], dtype=np.float64)
        self.targets = np.array([t.target for t in tasks], dtype=np.float64)
        self.angles = self.starts.copy()
        self.steps = np.zeros(self.num_envs, dtype=np.int64)
        self.done = np.zeros(self.num_envs, dtype=bool)

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Put every slot in its task's start configuration; returns observations ``(B, 2L + 4)`` float32.

        The task fixes the episode, so ``seed`` is accepted for the common interface and not used.
        """
        self.angles = self.starts.copy()
        self.steps[:] = 0
        self.done[:] = False
        return self.observe()

    def end_effector(self) -> np.ndarray:
        """End-effector positions ``(B, 2)``."""
        return forward_kinematics(self.angles, self.lengths)[:, -1]

    def observe(self) -> np.ndarray:
        """Observations ``(B, 2L + 4)`` float32: sin q, cos q, target, end effector."""
        parts = [np.sin(self.angles), np.cos(self.angles), self.targets, self.end_effector()]
        return np.concatenate(parts, axis=1).astype(np.float32)

    def halt(self, mask: np.ndarray) -> None:
        """End the slots in ``mask`` now: the next :meth:`step` leaves them unchanged."""
        self.done |= np.asarray(mask, dtype=bool)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Apply joint velocities ``(B, L)`` in [-1, 1]; returns ``(obs, reward, terminated, truncated)``.

        Slots already done are left unchanged and report ``terminated=truncated=False``.
        """
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape != (self.num_envs, self.links) or not np.isfinite(actions).all():
            raise ValueError(
                f"actions: expected finite values of shape ({self.num_envs}, {self.links}), got {actions.shape}"
            )
        active = ~self.done
        # Wrapped to [-pi, pi): the observation shows sin and cos only, and long episodes stay well conditioned.
        moved = self.angles + np.clip(actions, -1.0, 1.0) * self.max_delta
        self.angles[active] = (moved[active] + math.pi) % (2 * math.pi) - math.pi
        self.steps[active] += 1
        reached = np.linalg.norm(self.end_effector() - self.targets, axis=1) <= self.tolerance
        terminated = active & reached
        truncated = active & ~terminated & (self.steps >= self.max_steps)
        self.done |= terminated | truncated
        return self.observe(), terminated.astype(np.float32), terminated, truncated


def render_arm(angles: np.ndarray, target: np.ndarray, lengths: np.ndarray, size: int = 64) -> np.ndarray:
    """A picture ``(size, size, 3)`` uint8 of one arm (angles ``(L,)``): links dark, end effector blue, target red."""
    frame = np.full((size, size, 3), 240, dtype=np.uint8)
    scale = (size - 1) / (2.2 * float(lengths.sum()))

    def pixel(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cols = np.clip(np.round(points[:, 0] * scale + (size - 1) / 2), 0, size - 1).astype(int)
        rows = np.clip(np.round((size - 1) / 2 - points[:, 1] * scale), 0, size - 1).astype(int)
        return rows, cols

    def disc(centre: np.ndarray, radius: float, colour: tuple[int, int, int]) -> None:
        grid = np.stack(np.meshgrid(np.linspace(-radius, radius, 7), np.linspace(-radius, radius, 7)), -1)
        points = centre[None] + grid.reshape(-1, 2)
        frame[pixel(points[np.linalg.norm(points - centre, axis=1) <= radius])] = colour

    disc(target, 0.06 * float(lengths.sum()), (220, 40, 40))
    joints = forward_kinematics(angles[None], lengths)[0]
    along = np.linspace(0.0, 1.0, size)[:, None, None]
    segments = joints[:-1][None] + along * (joints[1:] - joints[:-1])[None]  # (size, L, 2)
    frame[pixel(segments.reshape(-1, 2))] = (40, 40, 40)
    disc(joints[-1], 0.04 * float(lengths.sum()), (40, 80, 220))
    return frame


class ArmEnv(gym.Env[np.ndarray, np.ndarray]):
    """Gymnasium env of the planar arm (a one-slot :class:`ArmVecEnv`); options as the ``arm`` env family.

    Every ``reset(seed=...)`` draws a task (start angles and target) as the family's task sampler does.
    ``render_mode="rgb_array"``: ``render()`` draws the arm as a ``(64, 64, 3)`` uint8 frame (numpy, no GL).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}  # noqa: RUF012 - gymnasium reads this

    def __init__(
        self,
        links: int = DEFAULT_LINKS,
        link_lengths: list[float] | tuple[float, ...] | None = None,
        max_steps: int | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
        max_delta: float = DEFAULT_MAX_DELTA,
        render_mode: str | None = None,
    ) -> None:
        check(render_mode in (None, "rgb_array"), "render_mode", "None or 'rgb_array'", render_mode)
        _, self.lengths = check_options(links, link_lengths, max_steps, tolerance, max_delta)
        self.max_steps, self.tolerance, self.max_delta = max_steps, float(tolerance), float(max_delta)
        self.render_mode = render_mode
        self.observation_space = observation_space(self.lengths)
        self.action_space = action_space(links)
        self._vec: ArmVecEnv | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        task = draw_task(self.np_random, self.lengths)
        self._vec = ArmVecEnv([task], self.lengths, self.max_steps, self.tolerance, self.max_delta)
        return self._vec.reset()[0], {"start": task.start, "target": task.target}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._vec is None:
            raise RuntimeError("ArmEnv.step called before reset")
        obs, reward, terminated, truncated = self._vec.step(np.asarray(action, dtype=np.float64)[None])
        return obs[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), {}

    def render(self) -> np.ndarray:
        """The arm and its target, ``(64, 64, 3)`` uint8."""
        if self._vec is None:
            raise RuntimeError("ArmEnv.render called before reset")
        return render_arm(self._vec.angles[0], self._vec.targets[0], self._vec.lengths)


class ArmFamily:
    """Planar arms reaching targets; a task is a start configuration and a target. See :mod:`clonekit.envs.arm`.

    Env kwargs: ``links`` (int in [2, 6], default 2), ``link_lengths`` (one length a link, default equal links of
    total length 1), ``max_steps`` (int, default 60), ``tolerance`` (float, default 0.05: the success distance)
    and ``max_delta`` (float, default 0.15: radians a joint turns per step at action 1).
    """

    name = "arm"
    KWARGS = ("links", "link_lengths", "max_steps", "tolerance", "max_delta")
    deterministic_tasks = True  # the task fixes the start; the dynamics have no noise

    def options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Every option of ``kwargs`` with defaults filled in and checked (``link_lengths`` as a tuple)."""
        unknown = set(kwargs) - set(self.KWARGS)
        if unknown:
            raise ConfigError(f"env arm: unknown option(s) {sorted(unknown)}; expected some of {list(self.KWARGS)}")
        given = kwargs.get("link_lengths")
        links = kwargs.get("links", len(given) if isinstance(given, list | tuple) else DEFAULT_LINKS)
        tolerance = kwargs.get("tolerance", DEFAULT_TOLERANCE)
        max_delta = kwargs.get("max_delta", DEFAULT_MAX_DELTA)
        _, lengths = check_options(links, kwargs.get("link_lengths"), kwargs.get("max_steps"), tolerance, max_delta)
        return {
            "link_lengths": lengths,
            "max_steps": kwargs.get("max_steps"),
            "tolerance": float(tolerance),
            "max_delta": float(max_delta),
        }

    def spaces(self, **kwargs: Any) -> tuple[gym.Space[Any], gym.Space[Any]]:
        lengths = self.options(kwargs)["link_lengths"]
        return observation_space(lengths), action_space(len(lengths))

    def sample_tasks(self, seed: int, split: str, count: int, exclude: set[str], **kwargs: Any) -> list[ArmTask]:
        return sample_tasks(seed, split, count, self.options(kwargs)["link_lengths"], exclude)

    def task_to_json(self, task: ArmTask) -> dict[str, Any]:
        return {"start": list(task.start), "target": list(task.target)}

    def task_from_json(self, data: dict[str, Any], **kwargs: Any) -> ArmTask:
        links = len(self.options(kwargs)["link_lengths"])
        start = data.get("start") if isinstance(data, dict) else None
        target = data.get("target") if isinstance(data, dict) else None
        if not (_numbers(start, links) and _numbers(target, 2)):
            raise ConfigError(
                f"arm task: expected an object with 'start' ({links} angles) and 'target' [x, y], found {data!r}"
            )
        assert isinstance(start, list) and isinstance(target, list)
        return ArmTask(tuple(float(v) for v in start), (float(target[0]), float(target[1])))

    def task_key(self, task: ArmTask) -> str:
        return task.key

    def make_vec(self, tasks: list[ArmTask], **kwargs: Any) -> ArmVecEnv:
        options = self.options(kwargs)
        return ArmVecEnv(tasks, **options)


def _numbers(value: Any, count: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) == count
        and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    )
