"""Meta-World manipulation tasks (from ``metaworld``, the optional extra ``clonekit[metaworld]``) as a batched env.

A *task* is one Meta-World environment name (e.g. ``"assembly-v3"``) and one reset seed. The seed fixes
where the objects and the goal are (Meta-World's "goal-observable" construction: the seed draws the
environment's random reset vector, redrawn until the positions are valid), so a task replays exactly and the
scripted policies solve it the same way every time. Train and test seeds come from disjoint ranges, so the
``test`` split places objects and goals where no demonstration had them.

Observations are Meta-World's 39 state features (hand position, gripper opening, object poses, the same of the
previous step, and the goal position: the goal is observable, as in Meta-World's MT benchmarks), as float32.
When one env serves several task names, a one-hot task id of ``len(tasks)`` entries is appended (MT10/MT50
style), so one policy can tell the tasks apart; a single task gets no one-hot. Actions are ``(4,)`` in
[-1, 1]: hand displacement ``(dx, dy, dz)`` and the gripper effort, clipped to [-1, 1] before stepping.

An episode ends as ``terminated`` once ``info["success"]`` is true (Meta-World itself never terminates; ending
here saves the evaluation the remaining steps) and as ``truncated`` after ``max_steps`` steps. The reward is
Meta-World's shaped reward (in [0, 10]); success is read from :meth:`MetaWorldVecEnv.step_success`.

Building a Meta-World env loads its MuJoCo model (about 0.2 s and 25 MB each), so envs are kept in a small
per-process pool: a vec env takes idle envs of its task names from the pool, moves each to its task's seed,
and hands them back when it is garbage collected.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from clonekit.errors import ConfigError
from clonekit.seeding import derive_seed

BASE_OBS_SIZE = 39
ACTION_SIZE = 4
DEFAULT_TASK = "reach-v3"
DEFAULT_MAX_STEPS = 500  # Meta-World's own episode limit
INSTALL_HINT = "metaworld is not installed: pip install 'clonekit[metaworld]'"
# Idle envs kept per task name (each holds a MuJoCo model, about 25 MB).
POOL_PER_TASK = 32

_SPLIT_RANGES = {"train": (0, 2**30), "test": (2**30, 2**31 - 1)}


def require_metaworld() -> Any:
    """Import metaworld or say, in one line, how to install it."""
    try:
        import metaworld
    except ImportError as err:
        raise ConfigError(INSTALL_HINT) from err
    return metaworld


def task_names() -> list[str]:
    """Every Meta-World (v3) environment name, e.g. ``"assembly-v3"``."""
    require_metaworld()
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return list(ALL_V3_ENVIRONMENTS)


def check_task_names(names: Any) -> list[str]:
    """``names`` as a non-empty list of distinct Meta-World environment names, or a ConfigError naming the bad one."""
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"env metaworld: task_names: expected a non-empty list of names, got {names!r}")
    if len(set(names)) != len(names):
        raise ConfigError(f"env metaworld: task_names: expected distinct names, got {names!r}")
    known = task_names()
    for name in names:
        if name not in known:
            raise ConfigError(
                f"env metaworld: task {name!r} is not a Meta-World v3 environment; expected one of {known}"
            )
    return list(names)


@dataclass(frozen=True)
class MetaWorldTask:
    """One Meta-World episode: the environment ``name`` and the ``seed`` that places its objects and goal."""

    name: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.name}:{self.seed}"


def sample_tasks(
    seed: int, split: str, count: int, names: list[str], exclude: set[str] | frozenset[str] = frozenset()
) -> list[MetaWorldTask]:
    """``count`` distinct tasks for ``split``, cycling over ``names`` (task ``i`` is ``names[i % len(names)]``).

    Each name draws its seeds from its own stream of ``seed`` (adding a name leaves the others' seeds alone);
    train and test seeds come from disjoint ranges, and no task's key is in ``exclude``.
    """
    if split not in _SPLIT_RANGES:
        raise ConfigError(f"split: expected one of {list(_SPLIT_RANGES)}, got {split!r}")
    low, high = _SPLIT_RANGES[split]
    rngs = [np.random.default_rng(derive_seed(seed, f"metaworld-tasks:{split}:{name}")) for name in names]
    tasks: list[MetaWorldTask] = []
    seen = set(exclude)
    for i in range(count):
        j = i % len(names)
        while True:
            task = MetaWorldTask(names[j], int(rngs[j].integers(low, high)))
            if task.key not in seen:
                break
        seen.add(task.key)
        tasks.append(task)
    return tasks


def make_env(name: str, seed: int) -> Any:
    """A fresh goal-observable Meta-World env of ``name`` with its objects and goal placed by ``seed``."""
    require_metaworld()
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE

    env_cls: Any = ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[f"{name}-goal-observable"]  # its __init__ takes seed
    return env_cls(seed=seed)


def place(env: Any, seed: int) -> None:
    """Move a goal-observable env to the object and goal positions of ``seed``.

    Repeats what Meta-World's goal-observable constructor does after loading the model (draw the reset
    vector from numpy's global generator seeded with ``seed``, redrawing until valid, then freeze it), so a
    pooled env behaves exactly as ``make_env(name, seed)`` (checked in tests/test_metaworld.py).
    """
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        env._freeze_rand_vec = False  # Meta-World has no public call to re-seed the positions
        env.reset()
        env._freeze_rand_vec = True
        env.seed(seed)
    finally:
        np.random.set_state(state)


class _EnvPool:
    """Idle Meta-World envs by task name, reused across vec envs of one process (see module docstring)."""

    def __init__(self) -> None:
        self.idle: dict[str, list[Any]] = {}

    def take(self, task: MetaWorldTask) -> Any:
        idle = self.idle.get(task.name)
        if not idle:
            return make_env(task.name, task.seed)
        env = idle.pop()
        place(env, task.seed)
        return env

    def give_back(self, names: list[str], envs: list[Any]) -> None:
        for name, env in zip(names, envs, strict=True):
            idle = self.idle.setdefault(name, [])
            if len(idle) < POOL_PER_TASK:
                idle.append(env)


_POOL = _EnvPool()


class MetaWorldVecEnv:
    """Many Meta-World episodes stepped together, one per slot (a plain loop over Meta-World envs).

    ``names`` are the task names of the env family (their order fixes the one-hot task id, appended when
    there are several). A finished slot is not stepped again: it keeps its last observation and reports
    reward 0, ``terminated=truncated=False``.
    """

    def __init__(self, tasks: list[MetaWorldTask], names: list[str], max_steps: int = DEFAULT_MAX_STEPS) -> None:
        if not tasks:
            raise ValueError("MetaWorldVecEnv needs at least one task")
        for task in tasks:
            if task.name not in names:
                raise ConfigError(f"metaworld task {task.key}: name {task.name!r} is not among the env's tasks {names}")
        self.tasks = list(tasks)
        self.names = list(names)
        self.num_envs = len(tasks)
        self.max_steps = int(max_steps)
        self.obs_size = obs_size(len(names))
        self.envs = [_POOL.take(task) for task in self.tasks]
        for env in self.envs:
            env.max_path_length = max(self.max_steps, DEFAULT_MAX_STEPS)  # Meta-World refuses steps beyond it
        weakref.finalize(self, _POOL.give_back, [t.name for t in self.tasks], self.envs)
        self.steps = np.zeros(self.num_envs, dtype=np.int64)
        self.done = np.zeros(self.num_envs, dtype=bool)
        self.succeeded = np.zeros(self.num_envs, dtype=bool)
        self._last_success = np.zeros(self.num_envs, dtype=bool)
        self._obs = np.zeros((self.num_envs, self.obs_size), dtype=np.float32)
        if len(names) > 1:
            ids = [names.index(t.name) for t in self.tasks]
            self._obs[np.arange(self.num_envs), BASE_OBS_SIZE + np.asarray(ids)] = 1.0

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start every slot's task; ``(B, D)`` float32. The task's seed fixes the episode; ``seed`` is unused."""
        for i, env in enumerate(self.envs):
            obs, _ = env.reset()
            self._obs[i, :BASE_OBS_SIZE] = obs
        self.steps[:] = 0
        self.done[:] = False
        self.succeeded[:] = False
        self._last_success[:] = False
        return self._obs.copy()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Step every unfinished slot with ``actions`` ``(B, 4)``; ``(obs, reward, terminated, truncated)``."""
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape != (self.num_envs, ACTION_SIZE) or not np.isfinite(actions).all():
            raise ValueError(
                f"actions: expected finite values of shape ({self.num_envs}, {ACTION_SIZE}), got {actions.shape}"
            )
        actions = actions.clip(-1.0, 1.0)
        b = self.num_envs
        reward = np.zeros(b, dtype=np.float32)
        terminated = np.zeros(b, dtype=bool)
        truncated = np.zeros(b, dtype=bool)
        self._last_success[:] = False
        for i in np.flatnonzero(~self.done):
            obs, r, _, _, info = self.envs[i].step(actions[i])
            self._obs[i, :BASE_OBS_SIZE] = obs
            self.steps[i] += 1
            reward[i] = r
            success = bool(info["success"])
            self._last_success[i] = success
            terminated[i] = success
            truncated[i] = not success and self.steps[i] >= self.max_steps
        self.succeeded |= self._last_success
        self.done |= terminated | truncated
        return self._obs.copy(), reward, terminated, truncated

    def step_success(self) -> np.ndarray:
        """``(B,)`` bool: the slots whose last step succeeded (Meta-World's ``info["success"]``)."""
        return self._last_success.copy()


def obs_size(num_names: int) -> int:
    """Observation length: 39 state features, plus a one-hot task id when there are several task names."""
    return BASE_OBS_SIZE + (num_names if num_names > 1 else 0)


class MetaWorldFamily:
    """Meta-World tasks: a task is an environment name and a seed that places its objects and goal.

    Env kwargs: ``task_names`` (a list of Meta-World v3 names, e.g. ``["assembly-v3", "reach-v3"]``) or ``task``
    (one name; default ``"reach-v3"``), and ``max_steps`` (int, default 500, Meta-World's limit). With
    several names, tasks cycle over them and observations carry a one-hot task id (see module docstring).
    Needs ``clonekit[metaworld]``; without it, using the family is a one-line error.
    """

    name = "metaworld"
    deterministic_tasks = True  # the seed fixes the positions; the simulation has no noise
    # Not "tasks": make_vec and sample_tasks take the task list under that name.
    KWARGS = ("task", "task_names", "max_steps")

    def names(self, kwargs: dict[str, Any]) -> list[str]:
        """The task names the env kwargs ask for (checked)."""
        unknown = set(kwargs) - set(self.KWARGS)
        if unknown:
            raise ConfigError(
                f"env metaworld: unknown option(s) {sorted(unknown)}; expected some of {list(self.KWARGS)}"
            )
        if "task" in kwargs and "task_names" in kwargs:
            raise ConfigError("env metaworld: give 'task' (one name) or 'task_names' (a list), not both")
        max_steps = kwargs.get("max_steps", DEFAULT_MAX_STEPS)
        if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 1:
            raise ConfigError(f"env metaworld: max_steps: expected an integer >= 1, got {max_steps!r}")
        if "task_names" in kwargs:
            return check_task_names(kwargs["task_names"])
        return check_task_names([kwargs.get("task", DEFAULT_TASK)])

    def spaces(self, **kwargs: Any) -> tuple[gym.Space[Any], gym.Space[Any]]:
        size = obs_size(len(self.names(kwargs)))
        obs = gym.spaces.Box(-np.inf, np.inf, (size,), dtype=np.float32)
        return obs, gym.spaces.Box(-1.0, 1.0, (ACTION_SIZE,), dtype=np.float32)

    def sample_tasks(self, seed: int, split: str, count: int, exclude: set[str], **kwargs: Any) -> list[MetaWorldTask]:
        return sample_tasks(seed, split, count, self.names(kwargs), exclude)

    def task_to_json(self, task: MetaWorldTask) -> dict[str, Any]:
        return {"task": task.name, "seed": task.seed}

    def task_from_json(self, data: dict[str, Any], **kwargs: Any) -> MetaWorldTask:
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("task"), str)
            or not isinstance(data.get("seed"), int)
            or isinstance(data.get("seed"), bool)
        ):
            raise ConfigError(f"metaworld task: expected an object with 'task' (str) and 'seed' (int), found {data!r}")
        names = self.names(kwargs)
        if data["task"] not in names:
            raise ConfigError(f"metaworld task: {data['task']!r} is not among the env's tasks {names}")
        return MetaWorldTask(data["task"], data["seed"])

    def task_key(self, task: MetaWorldTask) -> str:
        return task.key

    def make_vec(self, tasks: list[MetaWorldTask], **kwargs: Any) -> MetaWorldVecEnv:
        names = self.names(kwargs)
        return MetaWorldVecEnv(tasks, names, kwargs.get("max_steps", DEFAULT_MAX_STEPS))
