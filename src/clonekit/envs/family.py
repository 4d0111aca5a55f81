"""Env families: how tasks are drawn, described and stepped in batches."""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from clonekit.envs import avoiding, babyai, maze, pixels
from clonekit.errors import ConfigError


class VecEnv(Protocol):
    """The batched env interface used by collection and evaluation (one episode per slot)."""

    num_envs: int

    def reset(self, seed: int | None = None) -> np.ndarray: ...

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...


class EnvFamily(Protocol):
    """A family of tasks (e.g. all 16x16 mazes) with seeded, content-disjoint train/test splits.

    Optional attribute ``deterministic_tasks`` (bool, default False): True when a task alone fixes its
    episode (reset's seed is unused and the dynamics have no noise), so evaluation plays a deterministic
    policy once per task (see :func:`clonekit.evaluation.rollout.episodes_to_play`). A family whose answer
    depends on its options has the optional ``tasks_fix_episodes(**kwargs) -> bool`` instead.

    Optional hooks (see :class:`clonekit.envs.gym.GymFamily`): ``with_id(id, kwargs)`` lets ``FAMILY:ID`` name
    one env of the family; ``resolve_kwargs(kwargs)`` returns the full options the env block records;
    ``default_num_tasks(episodes)`` says how many tasks to draw when the user gives no ``--tasks``;
    ``restart(vec, first_obs)`` resets a vec env to the start states of recorded episodes when the task alone
    does not fix them (see :class:`MazeFamily`; used to replay episodes, :mod:`clonekit.quality.recovery`). A vec env
    may have ``step_success()``, ``halt(mask)``, ``policy_inputs()`` and ``close()``.
    """

    name: str

    def spaces(self, **kwargs: Any) -> tuple[gym.Space[Any], gym.Space[Any]]: ...

    def sample_tasks(self, seed: int, split: str, count: int, exclude: set[str], **kwargs: Any) -> list[Any]: ...

    def task_to_json(self, task: Any) -> dict[str, Any]: ...

    def task_from_json(self, data: dict[str, Any], **kwargs: Any) -> Any: ...

    def task_key(self, task: Any) -> str: ...

    def make_vec(self, tasks: list[Any], **kwargs: Any) -> VecEnv: ...


class MazeFamily:
    """Procedurally generated grid mazes (16x16 by default); a task is one maze.

    See :mod:`clonekit.envs.maze`.

    Env kwargs: ``size`` (int, default 16), ``loop_fraction`` (float in [0, 1], default 0.2),
    ``max_steps`` (int, default size*size/2), ``canvas`` (int >= size: observe the maze in the top-left of a
    ``canvas`` x ``canvas`` map padded with wall, so several sizes share one shape) and ``start`` (``"random"``,
    the default: a random free cell each episode; ``"farthest"``: the free cell farthest from the goal).
    ``obs="pixels"`` (default ``"state"``) observes an RGB picture
    with ``cell_pixels`` (default 4) pixels a cell instead (see :mod:`clonekit.envs.pixels`).
    """

    name = "maze"
    KWARGS = ("size", "loop_fraction", "max_steps", "canvas", "start", *pixels.MAZE_OPTIONS)
    action_names = maze.ACTION_NAMES  # shown on the live page's controls

    def tasks_fix_episodes(self, **kwargs: Any) -> bool:
        """Whether a maze alone fixes its episodes with these options: with ``start="farthest"`` (moves have no
        noise); with random start cells (the default) the episode's seed draws the start."""
        return kwargs.get("start", "random") == "farthest"

    def _check(self, kwargs: dict[str, Any]) -> None:
        unknown = set(kwargs) - set(self.KWARGS)
        if unknown:
            raise ConfigError(f"env maze: unknown option(s) {sorted(unknown)}; expected some of {list(self.KWARGS)}")
        pixels.check_options(self.name, kwargs)
        canvas, size = kwargs.get("canvas"), kwargs.get("size", maze.DEFAULT_SIZE)
        if canvas is not None and (not isinstance(canvas, int) or isinstance(canvas, bool) or canvas < size):
            raise ConfigError(f"env maze: canvas: expected an integer >= size ({size}), got {canvas!r}")
        if kwargs.get("start", "random") not in maze.START_RULES:
            raise ConfigError(f"env maze: start: expected one of {list(maze.START_RULES)}, got {kwargs['start']!r}")

    def spaces(self, **kwargs: Any) -> tuple[gym.Space[Any], gym.Space[Any]]:
        self._check(kwargs)
        size = int(kwargs.get("canvas") or kwargs.get("size", maze.DEFAULT_SIZE))
        if pixels.wants_pixels(kwargs):
            cell_pixels = int(kwargs.get("cell_pixels", pixels.DEFAULT_CELL_PIXELS))
            return pixels.maze_pixel_space(size, cell_pixels), gym.spaces.Discrete(maze.NUM_ACTIONS)
        obs = gym.spaces.Box(0, 1, (maze.NUM_CHANNELS, size, size), dtype=np.uint8)
        return obs, gym.spaces.Discrete(maze.NUM_ACTIONS)

    def state_spaces(self, **kwargs: Any) -> tuple[gym.Space[Any], gym.Space[Any]]:
        """The spaces of the state experts read (the grid also when ``obs="pixels"``)."""
        return self.spaces(**pixels.state_kwargs(kwargs))

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

    def make_vec(self, tasks: list[maze.MazeTask], **kwargs: Any) -> maze.MazeVecEnv | pixels.PixelVecEnv:
        self._check(kwargs)
        vec = maze.MazeVecEnv(
            tasks, max_steps=kwargs.get("max_steps"), canvas=kwargs.get("canvas"), start=kwargs.get("start", "random")
        )
        return pixels.maze_pixels(vec, kwargs) if pixels.wants_pixels(kwargs) else vec

    def restart(self, vec: Any, first_obs: np.ndarray) -> np.ndarray:
        """Reset ``vec`` so that every slot starts where a recorded episode started: the agent cell of its first
        observation ``(B, 3, H, W)``; returns the observations. (The start cell is drawn from the reset's seed,
        which a dataset does not record; the first observation shows it.) Grid observations only."""
        if not isinstance(vec, maze.MazeVecEnv):
            raise ConfigError("env maze: a recorded episode can be restarted from grid observations only, not pixels")
        b, _, _, w = first_obs.shape
        flat = first_obs[:, maze.AGENT].reshape(b, -1).argmax(axis=1)
        return vec.reset(starts=np.stack([flat // w, flat % w], axis=1))


class AvoidingFamily:
    """Avoiding: a point agent passes three rows of obstacles to a finish line; a task is a start position.

    See :mod:`clonekit.envs.avoiding`.

    Env kwargs: ``max_steps`` (int, default 80); ``finish_gate`` (float, default none: the precision variant,
    success only through gates of that half-width around the exits) and ``drift`` (float, default 0: a side
    wind moving the agent that much along x per step). ``obs="pixels"`` (default ``"state"``)
    observes an ``image_size`` x ``image_size`` RGB picture (default 64) instead (see :mod:`clonekit.envs.pixels`).
    """

    name = "avoiding"
    KWARGS: tuple[str, ...] = ("max_steps", "finish_gate", "drift", *pixels.AVOIDING_OPTIONS)
    deterministic_tasks = True  # the start state is the task; the dynamics have no noise
    render_size = 128  # pixels a side of the pictures render_obs draws of state observations

    def render_obs(self, obs: np.ndarray) -> np.ndarray:
        """Pictures ``(T, S, S, 3)`` uint8 for the viewer and the live page: state observations ``(T, 2)`` drawn as
        the pixel variant draws them (``render_size`` pixels a side), pixel observations ``(T, 3, S, S)`` as they
        are."""
        obs = np.asarray(obs)
        if obs.ndim == 4:
            return np.ascontiguousarray(obs.transpose(0, 2, 3, 1))
        positions = obs.reshape(len(obs), -1)[:, :2].astype(np.float64)
        return np.ascontiguousarray(pixels.render_avoiding(positions, self.render_size).transpose(0, 2, 3, 1))

    def _check(self, kwargs: dict[str, Any]) -> None:
        unknown = set(kwargs) - set(self.KWARGS)
        if unknown:
            raise ConfigError(
                f"env avoiding: unknown option(s) {sorted(unknown)}; expected some of {list(self.KWARGS)}"
            )
        pixels.check_options(self.name, kwargs)

    def spaces(self, **kwargs: Any) -> tuple[gym.Space[Any], gym.Space[Any]]:
        self._check(kwargs)
        env = avoiding.AvoidingEnv()
        if pixels.wants_pixels(kwargs):
            image_size = int(kwargs.get("image_size", pixels.DEFAULT_IMAGE_SIZE))
            return pixels.avoiding_pixel_space(image_size), env.action_space
        return env.observation_space, env.action_space

    def state_spaces(self, **kwargs: Any) -> tuple[gym.Space[Any], gym.Space[Any]]:
        """The spaces of the state experts read (the position also when ``obs="pixels"``)."""
        return self.spaces(**pixels.state_kwargs(kwargs))

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

    def make_vec(
        self, tasks: list[avoiding.AvoidingTask], **kwargs: Any
    ) -> avoiding.AvoidingVecEnv | pixels.PixelVecEnv:
        self._check(kwargs)
        vec = avoiding.AvoidingVecEnv(
            tasks, kwargs.get("max_steps"), kwargs.get("finish_gate"), float(kwargs.get("drift", 0.0))
        )
        return pixels.avoiding_pixels(vec, kwargs) if pixels.wants_pixels(kwargs) else vec


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
            raise ConfigError(f"{self.name} task: expected 'goal': [x, y], found {data!r}")
        return avoiding.AvoidingTask(task.start, (float(goal[0]), float(goal[1])))


class AvoidingReachFamily(AvoidingGoalFamily):
    """Goal reaching anywhere in the Avoiding arena: a task is a start and a goal point in free space.

    See :class:`clonekit.envs.avoiding.AvoidingReachVecEnv`. Test tasks come from their own seed stream and
    share no key with a training task. Env kwargs: ``max_steps`` (int, default 120).
    """

    name = "avoiding-reach"
    KWARGS: tuple[str, ...] = ("max_steps",)

    def _check(self, kwargs: dict[str, Any]) -> None:
        unknown = set(kwargs) - set(self.KWARGS)
        if unknown:
            raise ConfigError(
                f"env avoiding-reach: unknown option(s) {sorted(unknown)}; expected some of {list(self.KWARGS)}"
            )

    def spaces(self, **kwargs: Any) -> tuple[gym.Space[Any], gym.Space[Any]]:
        self._check(kwargs)
        env = avoiding.AvoidingEnv()
        return env.observation_space, env.action_space

    def sample_tasks(
        self, seed: int, split: str, count: int, exclude: set[str], **kwargs: Any
    ) -> list[avoiding.AvoidingTask]:
        self._check(kwargs)
        return avoiding.sample_reach_tasks(seed, split, count, 1, exclude)

    def make_vec(self, tasks: list[avoiding.AvoidingTask], **kwargs: Any) -> avoiding.AvoidingReachVecEnv:
        self._check(kwargs)
        return avoiding.AvoidingReachVecEnv(tasks, kwargs.get("max_steps"))


class BabyAIFamily:
    """BabyAI levels from minigrid; a task is a level seed.

    See :mod:`clonekit.envs.babyai`.

    Env kwargs: ``level`` (a gymnasium id, default ``BabyAI-UnlockPickup-v0``) and ``max_steps`` (int,
    default: the level's own limit).
    """

    name = "babyai"
    KWARGS = ("level", "max_steps")
    deterministic_tasks = True  # the task is the level seed, which fixes the episode

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
