"""Avoiding demonstrations with injected defects and the ground truth of every injection, for
``avoiding-quality`` (the continuous counterpart of :mod:`clonekit.experiments.maze_pollution`).

Every demonstrator plays every training start state once, so each start has one attempt per demonstrator
(best-of-N selects among them). All of them steer like the ``paths`` expert (:mod:`clonekit.experts.avoiding`:
one of the 8 paths per episode, picked uniformly, towards jittered waypoints at full speed, with Gaussian
action jitter ``ACTION_NOISE``); what differs is what they add. Demonstrator kinds:

* ``expert``: the ``paths`` expert; clean.
* ``noisy``: the expert, but at each step with probability ``noise_rate`` its heading is turned by a random
  angle of at least ``noise_min_turn`` degrees (either side; then the usual jitter), so every injected step
  really points elsewhere than the expert meant (the maze's "a random *other* action"); it steers back to its
  waypoint afterwards. Ground truth: those steps (``defect`` = ``noise``).
* ``wanderer``: the expert, but at each step with probability ``detour_rate`` (at most ``max_detours`` an
  episode) it makes an extraneous detour that returns to the point it left: **idling** (``idle_steps`` steps
  of jitter only, no intended motion; ``defect`` = ``idle``) or an **excursion** (``excursion_steps`` steps at
  full speed square to its heading, on a side where that stays clear of obstacles, then as many steps back
  that steer to the point it left, the last one landing on it; ``defect`` = ``detour``).
* ``axis``: an incompatible style, a demonstrator on arrow keys: the same paths, but every action moves along
  one axis at full speed (the axis with the larger remaining distance to the waypoint; up once within a step
  of it), no jitter, so its
  routes are staircases and its actions never match a joystick's diagonal ones. Ground truth: all its steps
  (``defect`` = ``style``).

The dataset has the streams ``obs``, ``action``, ``reward``, ``terminated``, ``truncated``, ``demonstrator``
(text: ``expert_0``, ``noisy_1``, ...) and ``defect`` (text per step: ``""``, ``noise``, ``idle``,
``detour``, ``style``), the episode info ``task_index`` (the start state), and the env block of
``clonekit collect`` (so evaluation finds held-out start states).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clonekit.config import check
from clonekit.data import Dataset, DatasetWriter, text_stream
from clonekit.data.spaces import space_to_json
from clonekit.envs import get_env_family
from clonekit.envs.avoiding import (
    AGENT_RADIUS,
    ARENA_X,
    FINISH_Y,
    MAX_STEP,
    OBSTACLE_RADIUS,
    OBSTACLES,
    ROW_Y,
    AvoidingTask,
    AvoidingVecEnv,
)
from clonekit.experiments.common import avoiding_step_streams
from clonekit.experts.avoiding import ACTION_NOISE, AvoidingExpert
from clonekit.seeding import derive_seed

KINDS = ("expert", "noisy", "wanderer", "axis")
DEFECTS = ("noise", "idle", "detour", "style")
DEFECT_STREAM = text_stream("defect", "injected ground truth: '', noise, idle, detour or style")
DEMONSTRATOR_STREAM = text_stream("demonstrator", "who demonstrated the episode")
CLEARANCE = OBSTACLE_RADIUS + AGENT_RADIUS + 0.03  # an excursion keeps this far from every obstacle centre


@dataclass(frozen=True)
class AvoidingPollutionConfig:
    """Who demonstrates, and how much of each defect they inject.

    Args:
        experts: Clean demonstrators.
        noisy: Demonstrators whose heading is sometimes turned.
        wanderers: Demonstrators with extraneous detours (idling, excursions).
        axis: Demonstrators with the incompatible arrow-key style.
        noise_rate: Probability that a noisy demonstrator's step is turned.
        noise_min_turn: Smallest turn (degrees) of a noisy step; the turn is uniform in [this, 180].
        detour_rate: Probability per step that a wanderer starts a detour.
        max_detours: Most detours per wanderer episode.
        idle_steps: ``(min, max)`` steps of an idling detour.
        excursion_steps: ``(min, max)`` steps out of an excursion (as many come back).
    """

    experts: int = 2
    noisy: int = 3
    wanderers: int = 3
    axis: int = 4
    noise_rate: float = 0.15
    noise_min_turn: float = 60.0
    detour_rate: float = 0.05
    max_detours: int = 2
    idle_steps: tuple[int, int] = (4, 6)
    excursion_steps: tuple[int, int] = (3, 5)

    def __post_init__(self) -> None:
        check(self.experts >= 1, "experts", ">= 1", self.experts)
        for name in ("noisy", "wanderers", "axis", "max_detours"):
            check(getattr(self, name) >= 0, name, ">= 0", getattr(self, name))
        for name in ("noise_rate", "detour_rate"):
            check(0 <= getattr(self, name) <= 1, name, "in [0, 1]", getattr(self, name))
        check(0 <= self.noise_min_turn <= 180, "noise_min_turn", "in [0, 180] degrees", self.noise_min_turn)
        for name in ("idle_steps", "excursion_steps"):
            low, high = getattr(self, name)
            check(1 <= low <= high, name, "(min, max) with 1 <= min <= max", getattr(self, name))

    def demonstrators(self) -> list[str]:
        """Demonstrator ids in play order: ``expert_0``, ..., ``noisy_0``, ..., ``wanderer_0``, ..., ``axis_0``."""
        counts = {"expert": self.experts, "noisy": self.noisy, "wanderer": self.wanderers, "axis": self.axis}
        return [f"{kind}_{i}" for kind in KINDS for i in range(counts[kind])]


class _Paths(AvoidingExpert):
    """The ``paths`` expert for one episode, also telling where it is heading (its current waypoint)."""

    def target(self, obs: np.ndarray) -> np.ndarray:
        """The waypoint ``(2,)`` it steers to from position ``obs`` ``(2,)``."""
        index = int((obs[1] >= np.asarray(ROW_Y)).sum())
        return np.asarray(self._waypoints[0, index], dtype=np.float64)


def _clear(points: np.ndarray) -> bool:
    """Whether every point ``(K, 2)`` keeps ``CLEARANCE`` from the obstacles and stays well inside the arena."""
    distance = np.linalg.norm(points[:, None] - OBSTACLES[None], axis=-1).min()
    inside = (points[:, 0] > ARENA_X[0] + 0.05) & (points[:, 0] < ARENA_X[1] - 0.05)
    below_finish = (points[:, 1] > 0.01) & (points[:, 1] < FINISH_Y - 0.05)
    return bool(distance > CLEARANCE and inside.all() and below_finish.all())


class _Demonstrator:
    """Chooses one action at a time for one episode, with the defect it carries."""

    def __init__(self, kind: str, config: AvoidingPollutionConfig, expert: _Paths, rng: np.random.Generator) -> None:
        self.kind = kind
        self.config = config
        self.expert = expert
        self.rng = rng
        self.detours = 0
        self.plan: list[tuple[str, np.ndarray | None]] = []  # the rest of a detour: (defect, action or None)
        self.anchor = np.zeros(2)  # where an excursion left the path

    def _heading(self, obs: np.ndarray) -> np.ndarray:
        direction = self.expert.target(obs) - obs
        return direction / max(float(np.linalg.norm(direction)), 1e-9)

    def _jitter(self) -> np.ndarray:
        return self.rng.normal(0.0, ACTION_NOISE, 2)

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, str]:
        """The action ``(2,)`` at position ``obs`` ``(2,)`` and its defect (``""`` when clean)."""
        clean, _ = self.expert.act(obs[None])
        if self.plan:
            return self._detour_step(obs)
        if self.kind == "noisy" and self.rng.random() < self.config.noise_rate:
            turn = np.deg2rad(self.rng.uniform(self.config.noise_min_turn, 180.0)) * self.rng.choice([-1.0, 1.0])
            c, s = np.cos(turn), np.sin(turn)
            h = self._heading(obs)
            turned = np.array([c * h[0] - s * h[1], s * h[0] + c * h[1]])
            return np.clip(turned + self._jitter(), -1.0, 1.0), "noise"
        if self.kind == "axis":
            delta = self.expert.target(obs) - obs
            # Within a step of the waypoint, up: across the row's height to the next one (no dithering on the spot).
            axis = 1 if np.abs(delta).max() < MAX_STEP else int(np.abs(delta).argmax())
            action = np.zeros(2)
            action[axis] = np.sign(delta[axis]) or 1.0
            return action, "style"
        if (
            self.kind == "wanderer"
            and self.detours < self.config.max_detours
            and self.rng.random() < self.config.detour_rate
            and self._plan_detour(obs)
        ):
            self.detours += 1
            return self._detour_step(obs)
        return clean[0].astype(np.float64), ""

    def _plan_detour(self, obs: np.ndarray) -> bool:
        """Plan an idle or an excursion from ``obs`` (in random order of preference); False when neither fits."""
        kinds = ["idle", "detour"]
        self.rng.shuffle(kinds)
        for kind in kinds:
            if kind == "idle":
                low, high = self.config.idle_steps
                self.plan = [("idle", None)] * int(self.rng.integers(low, high + 1))
                return True
            low, high = self.config.excursion_steps
            steps = int(self.rng.integers(low, high + 1))
            h = self._heading(obs)
            sides = [np.array([-h[1], h[0]]), np.array([h[1], -h[0]])]
            self.rng.shuffle(sides)
            for side in sides:
                path = obs + np.arange(1, steps + 1)[:, None] * MAX_STEP * side[None]
                if _clear(path):
                    self.anchor = obs.astype(np.float64).copy()
                    self.plan = [("out", side)] * steps + [("back", None)] * steps
                    return True
        return False

    def _detour_step(self, obs: np.ndarray) -> tuple[np.ndarray, str]:
        kind, direction = self.plan.pop(0)
        if kind == "idle":
            return np.clip(self._jitter(), -1.0, 1.0), "idle"
        if kind == "out":
            assert direction is not None
            return np.clip(direction + self._jitter(), -1.0, 1.0), "detour"
        left = sum(1 for k, _ in self.plan if k == "back") + 1  # steps back, this one included
        aim = (self.anchor - obs) / (MAX_STEP * left)
        return np.clip(aim if left == 1 else aim + self._jitter(), -1.0, 1.0), "detour"  # the last one lands


def play_episode(
    task: AvoidingTask, kind: str, config: AvoidingPollutionConfig, seed: int, max_steps: int | None = None
) -> dict[str, Any]:
    """One episode of a demonstrator of ``kind`` from ``task``'s start (draws from ``seed``); its streams."""
    vec = AvoidingVecEnv([task], max_steps)
    expert = _Paths()
    obs = vec.reset()
    expert.reset(vec, seed=derive_seed(seed, "paths"))
    demonstrator = _Demonstrator(kind, config, expert, np.random.default_rng(derive_seed(seed, "defects")))
    steps: dict[str, list[Any]] = {n: [] for n in ("obs", "action", "reward", "terminated", "truncated", "defect")}
    done = False
    while not done:
        action, defect = demonstrator.act(obs[0].astype(np.float64))
        steps["obs"].append(obs[0])
        steps["action"].append(action.astype(np.float32))
        steps["defect"].append(defect)
        obs, reward, terminated, truncated = vec.step(action[None])
        steps["reward"].append(float(reward[0]))
        steps["terminated"].append(bool(terminated[0]))
        steps["truncated"].append(bool(truncated[0]))
        done = bool(terminated[0] or truncated[0])
    return {
        "obs": np.stack(steps["obs"]).astype(np.float32),
        "action": np.stack(steps["action"]),
        "reward": np.asarray(steps["reward"], dtype=np.float32),
        "terminated": np.asarray(steps["terminated"], dtype=bool),
        "truncated": np.asarray(steps["truncated"], dtype=bool),
        "defect": steps["defect"],
    }


def polluted_demonstrations(
    out: str | Path, tasks: list[AvoidingTask], config: AvoidingPollutionConfig, seed: int
) -> Dataset:
    """Write an episode of every demonstrator of ``config`` from every start state of ``tasks`` to ``out`` (see
    the module docstring); episodes are ordered by start state, then demonstrator."""
    family = get_env_family("avoiding")
    obs_space, act_space = family.spaces()
    streams = avoiding_step_streams(DEMONSTRATOR_STREAM, DEFECT_STREAM)
    env = {
        "id": family.name,
        "kwargs": {},
        "expert": "polluted demonstrators (clonekit.experiments.avoiding_pollution)",
        "seed": seed,
        "tasks": [family.task_to_json(t) for t in tasks],
    }
    who_list = config.demonstrators()
    json_config = {k: list(v) if isinstance(v, tuple) else v for k, v in config.__dict__.items()}
    writer = DatasetWriter(
        out,
        streams,
        spaces={"observation": space_to_json(obs_space), "action": space_to_json(act_space)},
        env=env,
        episode_info=("task_index",),
        extra={"pollution": {"demonstrators": who_list, **json_config}},
    )
    with writer:
        for t, task in enumerate(tasks):
            for who in who_list:
                episode = play_episode(task, who.rsplit("_", 1)[0], config, derive_seed(seed, f"pollution:{who}:{t}"))
                episode["demonstrator"] = [who] * len(episode["defect"])
                writer.add_episode(episode, {"task_index": t})
        return writer.close()


def ground_truth(dataset: Dataset) -> dict[str, np.ndarray]:
    """``{defect: (N,) bool}`` per step from the ``defect`` stream, for every name in ``DEFECTS``."""
    defects = np.asarray(dataset.column(DEFECT_STREAM.name), dtype=object)
    return {name: defects == name for name in DEFECTS}


__all__ = [
    "DEFECTS",
    "KINDS",
    "AvoidingPollutionConfig",
    "ground_truth",
    "play_episode",
    "polluted_demonstrations",
]
