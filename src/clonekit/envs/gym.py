"""The ``gym`` env family: any gymnasium env, one episode per slot, stepped in batches.

A *task* is a reset seed. Training and test seeds come from disjoint ranges (``seed_ranges``, recorded in
the env block), each drawn from the user's seed, so the test split never replays a training seed and another
``--seed`` gives other test seeds.

Env options (the env block's ``kwargs``; :meth:`GymFamily.resolve_kwargs` fills in what it records):

* ``id``: a registered gymnasium id (``CartPole-v1``) or ``module:ID`` (gymnasium's convention: the module
  is imported, which registers ``ID``).
* ``make_kwargs``: keyword arguments for ``gymnasium.make``. Given flat on the command line, every key that
  is not one of these options goes here (``--env-kwargs '{"max_episode_steps": 50}'``).
* ``vector``: ``"sync"`` (the default: the slots step in this process) or ``"async"`` (worker processes, each
  stepping a block of slots per message: for envs whose step is slow, e.g. MuJoCo). See
  :mod:`clonekit.envs.slots`.
* ``workers``: for ``"async"``, the number of processes that step slots, this one included (default: one per
  core, at most one per slot).
* ``success_threshold``: the return at which an episode counts as a success. Default: the ``reward_threshold``
  of the env's registration (CartPole-v1: 475), else ``None``. Success is ``info["success"]`` or
  ``info["is_success"]`` when the env reports one (true at any step); otherwise the episode's return reaching
  ``success_threshold`` when it ends; otherwise ending ``terminated`` with a positive reward. (CartPole ends
  ``terminated`` with reward 1 when the pole *falls*, hence the threshold.)
* ``obs_keys``: the order in which a Dict or Tuple observation is flattened (nested keys joined by ``.``; a
  Tuple item's key is its index), recorded from the env's observation space: a Tuple's items in index order, a
  Dict's leaves sorted as Minari imports are; ``None`` for array observations.
* ``seed_ranges``: ``{"train": [lo, hi], "test": [lo, hi]}``, half-open, disjoint.
* ``transpose_images``: ``true`` when the env's image observations are channel-last ``(H, W, C)`` and are
  recorded channel-first ``(C, H, W)``, as the image encoders read them; ``"auto"`` (the default) decides from
  the observation space (a 3-dimensional uint8 Box whose last axis has at most 4 entries and its first more),
  and the decision is recorded. A dataset imported from elsewhere records ``false`` (its images are kept as the
  file has them).

Observations: a ``uint8`` Box (images) is kept as it is (channel-last images moved to channel-first, see
``transpose_images``); other Boxes become float32 (integer Boxes keep their
dtype); a Dict or Tuple is flattened to float32 in ``obs_keys`` order (its leaves Box, Discrete, MultiDiscrete or
MultiBinary); a Discrete observation becomes ``(1,)`` float32, a MultiDiscrete or MultiBinary one a float32 vector.
Actions: Discrete, Box, MultiDiscrete or MultiBinary spaces. A Box of more than one dimension (e.g. ``(2, 3)``) is
recorded flattened to ``(6,)`` (C order), as the policies act in vectors; a MultiDiscrete or MultiBinary space as
one Discrete over its joint values (``MultiDiscrete([2, 3])`` as ``Discrete(6)``, at most ``MAX_JOINT_ACTIONS``).
The vec env turns each action back into the env's own before its ``step`` (:func:`env_actions`); an outside expert
may answer in either form (:mod:`clonekit.experts.outside`).
"""

from __future__ import annotations

import json
import math
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import gymnasium
import numpy as np

from clonekit.envs.slots import ProcessSlots, SlotGroup
from clonekit.errors import ConfigError
from clonekit.seeding import derive_seed

VECTOR_MODES = ("sync", "async")
OPTIONS = (
    "id",
    "make_kwargs",
    "vector",
    "workers",
    "success_threshold",
    "obs_keys",
    "seed_ranges",
    "transpose_images",
)
# A channel-last image: a uint8 Box (H, W, C) with C <= MAX_CHANNELS < H.
MAX_CHANNELS = 4
# A MultiDiscrete or MultiBinary action space is recorded as one Discrete over at most this many joint actions.
MAX_JOINT_ACTIONS = 4096
ACTION_SPACES = (
    gymnasium.spaces.Box,
    gymnasium.spaces.Discrete,
    gymnasium.spaces.MultiDiscrete,
    gymnasium.spaces.MultiBinary,
)
# Reset seeds stay below 2**31 (some envs keep seeds in int32); train and test take one half each.
DEFAULT_SEED_RANGES: dict[str, list[int]] = {"train": [0, 2**30], "test": [2**30, 2**31]}
IDLE_SLOT_GROUPS = 2  # per options and size: rollout makes the next wave's env before the last one is freed


@dataclass(frozen=True)
class GymTask:
    """One reset seed of a gymnasium env."""

    seed: int

    @property
    def key(self) -> str:
        return str(self.seed)


@dataclass(frozen=True)
class GymOptions:
    """The checked options of one gymnasium env (see the module docstring)."""

    id: str
    make_kwargs: dict[str, Any]
    vector: str
    workers: int | None
    success_threshold: float | None
    obs_keys: list[str] | None
    seed_ranges: dict[str, list[int]]
    transpose_images: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "make_kwargs": dict(self.make_kwargs),
            "vector": self.vector,
            "workers": self.workers,
            "success_threshold": self.success_threshold,
            "obs_keys": None if self.obs_keys is None else list(self.obs_keys),
            "seed_ranges": {split: list(r) for split, r in self.seed_ranges.items()},
            "transpose_images": self.transpose_images,
        }


def make_env(env_id: str, make_kwargs: Mapping[str, Any]) -> gymnasium.Env[Any, Any]:
    """``gymnasium.make(env_id, **make_kwargs)``; an unknown id or bad kwargs is a one-line ``ConfigError``."""
    try:
        return gymnasium.make(env_id, **make_kwargs)
    except (gymnasium.error.Error, ImportError, TypeError, AttributeError) as err:
        detail = " ".join(str(err).split())
        raise ConfigError(f"env gym: cannot make gymnasium env {env_id!r} with {dict(make_kwargs)}: {detail}") from err


NESTED = (gymnasium.spaces.Dict, gymnasium.spaces.Tuple)
# Leaves of a nested observation, and observation spaces of their own, recorded as float32 vectors.
VECTOR_LEAVES = (gymnasium.spaces.Discrete, gymnasium.spaces.MultiDiscrete, gymnasium.spaces.MultiBinary)


def _flat_keys(space: gymnasium.spaces.Dict | gymnasium.spaces.Tuple, prefix: str = "") -> list[tuple[str, Any]]:
    """``(dotted key, leaf space)`` of a (nested) Dict or Tuple space: a Tuple's items in index order (an item's
    key is its index), a Dict's leaves in sorted order of their dotted keys (as Minari imports sort them)."""
    leaves: list[tuple[str, Any]] = []
    items = space.spaces.items() if isinstance(space, gymnasium.spaces.Dict) else enumerate(space.spaces)
    for key, sub in items:
        if isinstance(sub, NESTED):
            leaves.extend(_flat_keys(sub, f"{prefix}{key}."))
        else:
            leaves.append((f"{prefix}{key}", sub))
    return leaves if isinstance(space, gymnasium.spaces.Tuple) else sorted(leaves, key=lambda leaf: leaf[0])


def _leaf_bounds(space: gymnasium.Space[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Flattened float32 bounds of a Box, Discrete, MultiDiscrete or MultiBinary space (a leaf of a Dict or Tuple
    observation, or a vector-leaf observation of its own)."""
    if isinstance(space, gymnasium.spaces.Box):
        return space.low.astype(np.float32).ravel(), space.high.astype(np.float32).ravel()
    if isinstance(space, gymnasium.spaces.Discrete):
        return np.array([space.start], np.float32), np.array([space.start + space.n - 1], np.float32)
    if isinstance(space, gymnasium.spaces.MultiDiscrete):
        return space.start.astype(np.float32).ravel(), (space.start + space.nvec - 1).astype(np.float32).ravel()
    assert isinstance(space, gymnasium.spaces.MultiBinary), space
    return np.zeros(int(np.prod(space.shape)), np.float32), np.ones(int(np.prod(space.shape)), np.float32)


def channel_last_image(space: gymnasium.Space[Any]) -> bool:
    """True for a uint8 Box that looks like a channel-last image ``(H, W, C)``: ``C <= 4 < H``."""
    return (
        isinstance(space, gymnasium.spaces.Box)
        and space.dtype == np.uint8
        and len(space.shape) == 3
        and space.shape[2] <= MAX_CHANNELS < space.shape[0]
    )


def observation_space(
    space: gymnasium.Space[Any], obs_keys: list[str] | None, transpose_images: bool = False
) -> gymnasium.spaces.Box:
    """The space of the observations clonekit records for an env with observation space ``space`` (images
    ``(H, W, C)`` as ``(C, H, W)`` with ``transpose_images``)."""
    if transpose_images:
        assert isinstance(space, gymnasium.spaces.Box) and len(space.shape) == 3
        return gymnasium.spaces.Box(space.low.transpose(2, 0, 1), space.high.transpose(2, 0, 1), dtype=space.dtype)
    if isinstance(space, NESTED):
        leaves = dict(_flat_keys(space))
        missing = [key for key in obs_keys or [] if key not in leaves]
        if obs_keys is None or missing:
            raise ConfigError(
                f"env gym: obs_keys: expected keys of the observation space {sorted(leaves)}, found {obs_keys}"
            )
        usable = [key for key, leaf in leaves.items() if isinstance(leaf, (gymnasium.spaces.Box, *VECTOR_LEAVES))]
        for key in obs_keys:
            if key not in usable:
                raise ConfigError(
                    f"env gym: observation key {key!r}: expected a Box, Discrete, MultiDiscrete or MultiBinary space, "
                    f"found {type(leaves[key]).__name__}; choose the keys to record with --env-kwargs "
                    f"'{{\"obs_keys\": {json.dumps(usable)}}}'"
                )
        bounds = [_leaf_bounds(leaves[key]) for key in obs_keys]
        low = np.concatenate([lo for lo, _ in bounds])
        high = np.concatenate([hi for _, hi in bounds])
        return gymnasium.spaces.Box(low, high, dtype=np.float32)
    if isinstance(space, VECTOR_LEAVES):
        low, high = _leaf_bounds(space)
        return gymnasium.spaces.Box(low, high, dtype=np.float32)
    if isinstance(space, gymnasium.spaces.Box):
        if space.dtype == np.uint8 or np.issubdtype(space.dtype, np.integer) or space.dtype == np.bool_:
            return space
        return gymnasium.spaces.Box(space.low.astype(np.float32), space.high.astype(np.float32), dtype=np.float32)
    raise ConfigError(
        f"env gym: observation space: expected Box, Dict, Tuple, Discrete, MultiDiscrete or MultiBinary, found {space}"
    )


def _joint_sizes(space: gymnasium.spaces.MultiDiscrete | gymnasium.spaces.MultiBinary) -> tuple[int, ...]:
    """The number of values of each component of a MultiDiscrete or MultiBinary action, flattened."""
    if isinstance(space, gymnasium.spaces.MultiBinary):
        return (2,) * int(np.prod(space.shape))
    return tuple(int(n) for n in np.asarray(space.nvec).ravel())


def action_space(space: gymnasium.Space[Any]) -> gymnasium.Space[Any]:
    """The space of the actions clonekit records for an env with action space ``space``: a Box of more than one
    dimension flattened (C order); a MultiDiscrete or MultiBinary space as one Discrete over its joint values (at
    most ``MAX_JOINT_ACTIONS``; the first component varies slowest); any other space as it is."""
    if isinstance(space, gymnasium.spaces.Box) and len(space.shape) > 1:
        return gymnasium.spaces.Box(space.low.ravel(), space.high.ravel(), dtype=space.dtype)
    if isinstance(space, gymnasium.spaces.MultiDiscrete | gymnasium.spaces.MultiBinary):
        joint = int(np.prod(_joint_sizes(space), dtype=np.float64))
        if joint > MAX_JOINT_ACTIONS:
            raise ConfigError(
                f"env gym: action space {space}: expected at most {MAX_JOINT_ACTIONS} joint actions (recorded as one "
                f"Discrete), found {joint}"
            )
        return gymnasium.spaces.Discrete(joint)
    return space


def env_actions(actions: np.ndarray, space: gymnasium.Space[Any]) -> np.ndarray:
    """Recorded actions ``(B, ...)`` (see :func:`action_space`) as the env with action space ``space`` takes them."""
    actions = np.asarray(actions)
    if isinstance(space, gymnasium.spaces.MultiDiscrete | gymnasium.spaces.MultiBinary):
        parts = np.stack(np.unravel_index(actions.astype(np.int64).ravel(), _joint_sizes(space)), axis=-1)
        if isinstance(space, gymnasium.spaces.MultiDiscrete):
            parts = parts + np.asarray(space.start).ravel()
        return parts.reshape(len(actions), *space.shape).astype(space.dtype)
    if isinstance(space, gymnasium.spaces.Box) and len(space.shape) > 1:
        return actions.reshape(len(actions), *space.shape)
    return actions


def recorded_actions(actions: np.ndarray, space: gymnasium.Space[Any]) -> np.ndarray:
    """Actions ``(B, *space.shape)`` in the env's own action space ``space`` as clonekit records them (the inverse
    of :func:`env_actions`)."""
    actions = np.asarray(actions)
    if isinstance(space, gymnasium.spaces.MultiDiscrete | gymnasium.spaces.MultiBinary):
        parts = actions.reshape(len(actions), -1).astype(np.int64)
        if isinstance(space, gymnasium.spaces.MultiDiscrete):
            parts = parts - np.asarray(space.start).ravel()
        return np.asarray(np.ravel_multi_index(tuple(parts.T), _joint_sizes(space)), dtype=np.int64)
    return actions.reshape(len(actions), -1) if isinstance(space, gymnasium.spaces.Box) else actions


def flatten_obs(
    obs: Any, space: gymnasium.Space[Any], obs_keys: list[str] | None, batch: int, transpose_images: bool = False
) -> np.ndarray:
    """A batch of raw vector-env observations as the ``(B, *shape)`` array clonekit records."""
    if transpose_images:  # (B, H, W, C) -> (B, C, H, W)
        return np.ascontiguousarray(np.asarray(obs).reshape(batch, *space.shape or ()).transpose(0, 3, 1, 2))
    if isinstance(space, NESTED):
        assert obs_keys is not None
        parts = []
        for key in obs_keys:
            value = obs
            for part in key.split("."):
                value = value[int(part)] if isinstance(value, tuple) else value[part]
            parts.append(np.asarray(value, dtype=np.float32).reshape(batch, -1))
        return np.concatenate(parts, axis=1)
    if isinstance(space, VECTOR_LEAVES):
        return np.asarray(obs, dtype=np.float32).reshape(batch, -1)
    array = np.asarray(obs)
    if array.dtype == np.uint8 or np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
        return array
    return array.astype(np.float32, copy=False)


class RecordObs:
    """One raw observation of an env whose observations are not recorded as they come (a Dict, Tuple, Discrete,
    MultiDiscrete or MultiBinary space, or a channel-last image) as the array clonekit records (a module-level
    class, so a worker process can receive it)."""

    def __init__(
        self, space: gymnasium.Space[Any], obs_keys: list[str] | None, shape: tuple[int, ...], transpose_images: bool
    ) -> None:
        self.space, self.obs_keys, self.shape, self.transpose_images = space, obs_keys, shape, transpose_images

    def __call__(self, raw: Any) -> np.ndarray:
        return flatten_obs(raw, self.space, self.obs_keys, 1, self.transpose_images).reshape(self.shape)


Slots = SlotGroup | ProcessSlots


def make_slots(options: GymOptions, num_envs: int, raw_space: gymnasium.Space[Any]) -> Slots:
    """``num_envs`` episode slots of the env (raw observation space ``raw_space``): in this process
    (``vector="sync"``) or in worker processes (``"async"``)."""
    make = partial(make_env, options.id, options.make_kwargs)
    transpose = options.transpose_images
    space = observation_space(raw_space, options.obs_keys, transpose)
    as_is = isinstance(raw_space, gymnasium.spaces.Box) and not transpose
    convert = None if as_is else RecordObs(raw_space, options.obs_keys, space.shape, transpose)
    if options.vector == "async":
        return ProcessSlots(make, num_envs, space.shape, space.dtype, convert, options.workers)
    return SlotGroup(make, num_envs, np.zeros((num_envs, *space.shape), dtype=space.dtype), convert)


class GymVecEnv:
    """``num_envs`` episodes of one gymnasium env, one per slot, each reset with its task's seed.

    A slot whose episode ended is frozen: it is not stepped again, keeps its last observation and reports
    reward 0 and ``terminated = truncated = False``. ``halt(mask)`` ends slots the same way.
    """

    def __init__(
        self,
        tasks: list[GymTask],
        options: GymOptions,
        spaces: tuple[gymnasium.Space[Any], gymnasium.Space[Any]],
        slots: Slots | None = None,
    ) -> None:
        if not tasks:
            raise ValueError("GymVecEnv needs at least one task")
        self.tasks = list(tasks)
        self.num_envs = len(tasks)
        self.options = options
        raw_space, self.raw_action_space = spaces
        self.action_space = action_space(self.raw_action_space)
        self.slots = slots if slots is not None else make_slots(options, self.num_envs, raw_space)
        self.raw_observation_space = raw_space
        self.observation_space = observation_space(raw_space, options.obs_keys, options.transpose_images)
        self.done = np.zeros(self.num_envs, dtype=bool)
        self.returns = np.zeros(self.num_envs, dtype=np.float64)
        self._reports_success = np.zeros(self.num_envs, dtype=bool)
        self._last_success = np.zeros(self.num_envs, dtype=bool)
        self.closed = False

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset every slot with its task's seed (``seed`` is not used: the tasks are the seeds)."""
        self.slots.reset([task.seed for task in self.tasks])
        self.done[:] = False
        self.returns[:] = 0.0
        self._reports_success[:] = False
        self._last_success[:] = False
        return self.slots.obs.copy()

    def halt(self, mask: np.ndarray) -> None:
        """End the slots in ``mask`` now (they are not stepped again)."""
        self.done |= np.asarray(mask, dtype=bool)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Apply ``actions`` ``(B, ...)`` to the live slots; returns ``(obs, reward, terminated, truncated)``."""
        live = ~self.done
        actions = np.asarray(actions)
        if self.action_space is not self.raw_action_space:  # recorded otherwise than the env takes them
            actions = env_actions(actions, self.raw_action_space)
        reward, terminated, truncated, reported, success = self.slots.step(actions, live)
        reward32 = reward.astype(np.float32)
        self.returns += reward32
        ended = terminated | truncated
        threshold = self.options.success_threshold
        fallback = ended & (self.returns >= threshold) if threshold is not None else terminated & (reward32 > 0)
        self._reports_success |= reported
        self._last_success = np.where(self._reports_success, reported & success, fallback) & live
        self.done |= ended
        return self.slots.obs.copy(), reward32, terminated, truncated

    def step_success(self) -> np.ndarray:
        """``(B,)`` bool: the slots whose last step counts as success (see the module docstring)."""
        return self._last_success.copy()

    def close(self) -> None:
        """Close the envs (and stop the worker processes of ``vector="async"``)."""
        self.closed = True
        self.slots.close()


class GymFamily:
    """Any gymnasium env (gym:ID); a task is a reset seed, train and test seeds from disjoint ranges.

    See :mod:`clonekit.envs.gym` for the options.
    """

    name = "gym"
    deterministic_tasks = False  # an env may draw noise beyond its reset seed; play every episode

    def __init__(self) -> None:
        # (observation space, action space, reward_threshold of the registration) per id and make kwargs
        self._made: dict[str, tuple[gymnasium.Space[Any], gymnasium.Space[Any], float | None]] = {}
        # Idle in-process slot groups per (options, num_envs), reused by make_vec: rollout makes a vec env per wave
        # and building 64 gymnasium envs can take as long as playing a short episode with them. A GymVecEnv gives
        # its slots back when it is garbage collected (unless closed); reset reseeds every env.
        self._idle: dict[tuple[str, int], list[SlotGroup]] = {}

    def with_id(self, env_id: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The options for ``gym:ENV_ID`` given on the command line with ``kwargs`` (``--env-kwargs``)."""
        return {**kwargs, "id": env_id}

    def default_num_tasks(self, episodes: int) -> int:
        """One reset seed per episode unless the user asks for fewer."""
        return episodes

    def resolve_kwargs(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The full options recorded in the env block: flat gymnasium kwargs moved under ``make_kwargs``, the
        observation flattening order read from the env, default seed ranges."""
        return self.options(kwargs).to_json()

    def options(self, kwargs: Mapping[str, Any]) -> GymOptions:
        """Checked :class:`GymOptions` from an env block's kwargs (flat gymnasium kwargs allowed)."""
        env_id = kwargs.get("id")
        if not isinstance(env_id, str) or not env_id:
            raise ConfigError(f"env gym: id: expected a gymnasium env id such as 'CartPole-v1', got {env_id!r}")
        make_kwargs = kwargs.get("make_kwargs", {})
        if not isinstance(make_kwargs, dict):
            raise ConfigError(f"env gym: make_kwargs: expected a JSON object, got {make_kwargs!r}")
        make_kwargs = {**make_kwargs, **{k: v for k, v in kwargs.items() if k not in OPTIONS}}
        vector = kwargs.get("vector", "sync")
        if vector not in VECTOR_MODES:
            raise ConfigError(f"env gym: vector: expected one of {list(VECTOR_MODES)}, got {vector!r}")
        workers = kwargs.get("workers")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ConfigError(f"env gym: workers: expected a positive integer or null, got {workers!r}")
        raw_obs_space, _, spec_threshold = self._describe(env_id, make_kwargs)
        threshold = kwargs.get("success_threshold", spec_threshold)
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold)
        ):
            raise ConfigError(f"env gym: success_threshold: expected a finite number or null, got {threshold!r}")
        ranges = self._seed_ranges(kwargs.get("seed_ranges", DEFAULT_SEED_RANGES))
        obs_keys = kwargs.get("obs_keys")
        if obs_keys is None and isinstance(raw_obs_space, NESTED):
            obs_keys = [key for key, _ in _flat_keys(raw_obs_space)]
        if obs_keys is not None and (not isinstance(obs_keys, list) or not all(isinstance(k, str) for k in obs_keys)):
            raise ConfigError(f"env gym: obs_keys: expected a list of strings or null, got {obs_keys!r}")
        transpose = kwargs.get("transpose_images", "auto")
        if transpose == "auto":
            transpose = channel_last_image(raw_obs_space)
        if not isinstance(transpose, bool):
            raise ConfigError(f"env gym: transpose_images: expected true, false or 'auto', got {transpose!r}")
        if transpose and not (isinstance(raw_obs_space, gymnasium.spaces.Box) and len(raw_obs_space.shape) == 3):
            raise ConfigError(
                f"env gym {env_id}: transpose_images: expected a 3-dimensional Box observation space (H, W, C), "
                f"found {raw_obs_space}"
            )
        return GymOptions(
            id=env_id,
            make_kwargs=make_kwargs,
            vector=vector,
            workers=workers,
            success_threshold=None if threshold is None else float(threshold),
            obs_keys=obs_keys,
            seed_ranges=ranges,
            transpose_images=transpose,
        )

    @staticmethod
    def _seed_ranges(value: Any) -> dict[str, list[int]]:
        def valid(r: Any) -> bool:
            return (
                isinstance(r, list)
                and len(r) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in r)
                and 0 <= r[0] < r[1] <= 2**63
            )

        if not isinstance(value, dict) or set(value) != {"train", "test"} or not all(map(valid, value.values())):
            raise ConfigError(
                f"env gym: seed_ranges: expected {{'train': [lo, hi], 'test': [lo, hi]}} with 0 <= lo < hi, "
                f"got {value!r}"
            )
        (a, b), (c, d) = value["train"], value["test"]
        if a < d and c < b:
            raise ConfigError(f"env gym: seed_ranges: the train and test ranges must not overlap, got {value!r}")
        return {"train": [a, b], "test": [c, d]}

    def _describe(
        self, env_id: str, make_kwargs: dict[str, Any]
    ) -> tuple[gymnasium.Space[Any], gymnasium.Space[Any], float | None]:
        """The env's own observation and action spaces and its registered ``reward_threshold`` (the env is
        made once per id and kwargs)."""
        key = json.dumps([env_id, make_kwargs], sort_keys=True, default=str)
        if key not in self._made:
            env = make_env(env_id, make_kwargs)
            try:
                threshold = env.spec.reward_threshold if env.spec is not None else None
                self._made[key] = (env.observation_space, env.action_space, threshold)
            finally:
                env.close()
        return self._made[key]

    def spaces(self, **kwargs: Any) -> tuple[gymnasium.Space[Any], gymnasium.Space[Any]]:
        options = self.options(kwargs)
        raw_obs, action, _ = self._describe(options.id, options.make_kwargs)
        if not isinstance(action, ACTION_SPACES):
            raise ConfigError(
                f"env gym {options.id}: action space: expected Box, Discrete, MultiDiscrete or MultiBinary, "
                f"found {action}"
            )
        return observation_space(raw_obs, options.obs_keys, options.transpose_images), action_space(action)

    def sample_tasks(self, seed: int, split: str, count: int, exclude: set[str], **kwargs: Any) -> list[GymTask]:
        """``count`` distinct reset seeds of ``split``'s range, drawn from ``seed``, none of them in ``exclude``."""
        options = self.options(kwargs)
        if split not in options.seed_ranges:
            raise ConfigError(f"env gym: split: expected 'train' or 'test', got {split!r}")
        lo, hi = options.seed_ranges[split]
        if count > hi - lo - len(exclude):
            raise ConfigError(f"env gym: {count} {split} seeds asked for, the range [{lo}, {hi}) has too few")
        rng = np.random.default_rng(derive_seed(seed, f"gym-tasks:{split}"))
        seeds: list[int] = []
        seen = set(exclude)
        while len(seeds) < count:
            value = int(rng.integers(lo, hi))
            if str(value) not in seen:
                seen.add(str(value))
                seeds.append(value)
        return [GymTask(s) for s in seeds]

    def task_to_json(self, task: GymTask) -> dict[str, Any]:
        return {"seed": task.seed}

    def task_from_json(self, data: dict[str, Any], **kwargs: Any) -> GymTask:
        seed = data.get("seed") if isinstance(data, dict) else None
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"gym task: expected an object with a non-negative integer 'seed', found {data!r}")
        return GymTask(seed)

    def task_key(self, task: GymTask) -> str:
        return task.key

    def make_vec(self, tasks: list[GymTask], **kwargs: Any) -> GymVecEnv:
        options = self.options(kwargs)
        raw_obs, action, _ = self._describe(options.id, options.make_kwargs)
        if options.vector != "sync":  # worker processes are not kept around
            return GymVecEnv(tasks, options, (raw_obs, action))
        key = (json.dumps(options.to_json(), sort_keys=True, default=str), len(tasks))
        idle = self._idle.setdefault(key, [])
        env = GymVecEnv(tasks, options, (raw_obs, action), idle.pop() if idle else None)
        weakref.finalize(env, self._release, idle, env.slots)
        return env

    @staticmethod
    def _release(idle: list[SlotGroup], slots: Slots) -> None:
        if isinstance(slots, SlotGroup) and not slots.closed and len(idle) < IDLE_SLOT_GROUPS:
            idle.append(slots)


def env_block_for_gym_id(env_id: str, minari: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """A gym env block for a dataset that names a registered gymnasium id but no clonekit env (a Minari
    import); ``None`` when gymnasium does not know the id. The kwargs of the recorded ``env_spec`` are kept."""
    if env_id not in gymnasium.registry:
        return None
    make_kwargs: dict[str, Any] = {}
    spec = (minari or {}).get("env_spec")
    if isinstance(spec, str):
        try:
            recorded = json.loads(spec)
        except json.JSONDecodeError:
            recorded = {}
        if isinstance(recorded, dict) and isinstance(recorded.get("kwargs"), dict):
            make_kwargs = dict(recorded["kwargs"])
        if isinstance(recorded, dict) and isinstance(recorded.get("max_episode_steps"), int):
            make_kwargs["max_episode_steps"] = recorded["max_episode_steps"]
    # The imported observations are kept as the file has them, so the env must give them the same way.
    return {"id": "gym", "kwargs": {"id": env_id, "make_kwargs": make_kwargs, "transpose_images": False}}
