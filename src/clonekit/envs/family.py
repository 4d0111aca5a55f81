"""Env families: how tasks are drawn, described and stepped in batches."""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from clonekit.envs import avoiding, babyai, maze
from clonekit.errors import ConfigError


class VecEnv(Protocol):
    """The batched env interface used by collection and evaluation (one episode per slot)."""

    num_envs: int

    def reset(self, seed: int | None = None) -> np.ndarray: ...

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...


class EnvFamily(Protocol):
    """A family of tasks (e.g. all 16x16 mazes) with seeded, content-disjoint train/test splits."""

    name: str

    def spaces(self, **kwargs: Any) -> tuple[gym.Space[Any], gym.Space[Any]]: ...

    def sample_tasks(self, seed: int, split: str, count: int, exclude: set[str], **kwargs: Any) -> list[Any]: ...

    def task_to_json(self, task: Any) -> dict[str, Any]: ...

    def task_from_json(self, data: dict[str, Any], **kwargs: Any) -> Any: ...

    def task_key(self, task: Any) -> str: ...

    def make_vec(self, tasks: list[Any], **kwargs: Any) -> VecEnv: ...


class MazeFamily:
    """16x16 procedurally generated mazes (see :mod:`clonekit.envs.maze`).

    Env kwargs: ``size`` (int, default 16), ``loop_fraction`` (float in [0, 1], default 0.2) and
    ``max_steps`` (int, default size*size/2).
    """

    name = "maze"
    KWARGS = ("size", "loop_fraction", "max_steps")

    def _check(self, kwargs: dict[str, Any]) -> None:
        unknown = set(kwargs) - set(self.KWARGS)
        if unknown:
            raise ConfigError(f"env maze: unknown option(s) {sorted(unknown)}; expected some of {list(self.KWARGS)}")

    def spaces(self, **kwargs: Any) -> tuple[gym.Space[Any], gym.Space[Any]]:
        self._check(kwargs)
        size = int(kwargs.get("size", maze.DEFAULT_SIZE))
        obs = gym.spaces.Box(0, 1, (maze.NUM_CHANNELS, size, size), dtype=np.uint8)
        return obs, gym.spaces.Discrete(maze.NUM_ACTIONS)

    def _maze_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        self._check(kwargs)
        return {k: kwargs[k] for k in ("size", "loop_fraction") if k in kwargs}

    def sample_tasks(self, seed: int, split: str, count: int, exclude: set[str], **kwargs: Any) -> list[maze.MazeTask]:
        return maze.sample_tasks(seed, split, count, exclude_layouts=exclude, **self._maze_kwargs(kwargs))

    def task_to_json(self, task: maze.MazeTask) -> dict[str, Any]:
        return {"maze_seed": task.maze_seed, "layout": task.layout_hash}

    def task_from_json(self, data: dict[str, Any], **kwargs: Any) -> maze.MazeTask:
        if not isinstance(data, dict) or not isinstance(data.get("maze_seed"), int):
            raise ConfigError(f"maze task: expected an object with an integer 'maze_seed', found {data!r}")
        task = maze.generate_maze(data["maze_seed"], **self._maze_kwargs(kwargs))
        if "layout" in data and data["layout"] != task.layout_hash:
            raise ConfigError(
                f"maze task {data['maze_seed']}: layout hash {data['layout']} recorded, but this clonekit "
                f"generates {task.layout_hash}; the maze generator changed"
            )
        return task

    def task_key(self, task: maze.MazeTask) -> str:
        return task.layout_hash

    def make_vec(self, tasks: list[maze.MazeTask], **kwargs: Any) -> maze.MazeVecEnv:
        self._check(kwargs)
        return maze.MazeVecEnv(tasks, max_steps=kwargs.get("max_steps"))


class AvoidingFamily:
    """Avoiding: start positions below three rows of obstacles (see :mod:`clonekit.envs.avoiding`).

    Env kwargs: ``max_steps`` (int, default 80).
    """

    name = "avoiding"
    KWARGS = ("max_steps",)

    def _check(self, kwargs: dict[str, Any]) -> None:
        unknown = set(kwargs) - set(self.KWARGS)
        if unknown:
            raise ConfigError(
                f"env avoiding: unknown option(s) {sorted(unknown)}; expected some of {list(self.KWARGS)}"
            )

    def spaces(self, **kwargs: Any) -> tuple[gym.Space[Any], gym.Space[Any]]:
        self._check(kwargs)
        env = avoiding.AvoidingEnv()
        return env.observation_space, env.action_space

    def sample_tasks(
        self, seed: int, split: str, count: int, exclude: set[str], **kwargs: Any
    ) -> list[avoiding.AvoidingTask]:
        self._check(kwargs)
        return avoiding.sample_tasks(seed, split, count, exclude)

    def task_to_json(self, task: avoiding.AvoidingTask) -> dict[str, Any]:
        return {"start": list(task.start)}

    def task_from_json(self, data: dict[str, Any], **kwargs: Any) -> avoiding.AvoidingTask:
        start = data.get("start") if isinstance(data, dict) else None
        if (
            not isinstance(start, list)
            or len(start) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in start)
        ):
            raise ConfigError(f"avoiding task: expected an object with 'start': [x, y], found {data!r}")
        return avoiding.AvoidingTask((float(start[0]), float(start[1])))

    def task_key(self, task: avoiding.AvoidingTask) -> str:
        return task.key

    def make_vec(self, tasks: list[avoiding.AvoidingTask], **kwargs: Any) -> avoiding.AvoidingVecEnv:
        self._check(kwargs)
        return avoiding.AvoidingVecEnv(tasks, max_steps=kwargs.get("max_steps"))


class AvoidingGoalFamily(AvoidingFamily):
    """Goal-reaching Avoiding: a start position and one of 4 exits to cross the finish line at.

    Test tasks start from start positions no training task uses (with goals drawn anew). Env kwargs as
    :class:`AvoidingFamily`.
    """

    name = "avoiding-goal"

    def sample_tasks(
        self, seed: int, split: str, count: int, exclude: set[str], **kwargs: Any
    ) -> list[avoiding.AvoidingTask]:
        self._check(kwargs)
        return avoiding.sample_goal_tasks(seed, split, count, exclude)

    def task_to_json(self, task: avoiding.AvoidingTask) -> dict[str, Any]:
        return {"start": list(task.start), "goal": list(task.goal or ())}

    def task_from_json(self, data: dict[str, Any], **kwargs: Any) -> avoiding.AvoidingTask:
        task = super().task_from_json(data, **kwargs)
        goal = data.get("goal")
        if (
            not isinstance(goal, list)
            or len(goal) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in goal)
        ):
            raise ConfigError(f"avoiding-goal task: expected 'goal': [x, y], found {data!r}")
        return avoiding.AvoidingTask(task.start, (float(goal[0]), float(goal[1])))


class BabyAIFamily:
    """BabyAI levels from minigrid (see :mod:`clonekit.envs.babyai`); a task is a level seed.

    Env kwargs: ``level`` (a gymnasium id, default ``BabyAI-UnlockPickup-v0``) and ``max_steps`` (int,
    default: the level's own limit).
    """

    name = "babyai"
    KWARGS = ("level", "max_steps")

    def _check(self, kwargs: dict[str, Any]) -> None:
        unknown = set(kwargs) - set(self.KWARGS)
        if unknown:
            raise ConfigError(f"env babyai: unknown option(s) {sorted(unknown)}; expected some of {list(self.KWARGS)}")
        level = kwargs.get("level", babyai.DEFAULT_LEVEL)
        if not isinstance(level, str) or not level.startswith("BabyAI-"):
            raise ConfigError(f"env babyai: level: expected a BabyAI level id such as 'BabyAI-Synth-v0', got {level!r}")

    def spaces(self, **kwargs: Any) -> tuple[gym.Space[Any], gym.Space[Any]]:
        self._check(kwargs)
        obs = gym.spaces.Box(0, 255, (babyai.OBS_SIZE,), dtype=np.uint8)
        return obs, gym.spaces.Discrete(babyai.NUM_ACTIONS)

    def sample_tasks(
        self, seed: int, split: str, count: int, exclude: set[str], **kwargs: Any
    ) -> list[babyai.BabyAITask]:
        self._check(kwargs)
        return babyai.sample_tasks(seed, split, count, kwargs.get("level", babyai.DEFAULT_LEVEL), exclude)

    def task_to_json(self, task: babyai.BabyAITask) -> dict[str, Any]:
        return {"level": task.level, "seed": task.seed}

    def task_from_json(self, data: dict[str, Any], **kwargs: Any) -> babyai.BabyAITask:
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("seed"), int)
            or not isinstance(data.get("level"), str)
        ):
            raise ConfigError(f"babyai task: expected an object with 'level' (str) and 'seed' (int), found {data!r}")
        return babyai.BabyAITask(data["level"], data["seed"])

    def task_key(self, task: babyai.BabyAITask) -> str:
        return task.key

    def make_vec(self, tasks: list[babyai.BabyAITask], **kwargs: Any) -> babyai.BabyAIVecEnv:
        self._check(kwargs)
        return babyai.BabyAIVecEnv(tasks, max_steps=kwargs.get("max_steps"))
