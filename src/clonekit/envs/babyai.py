"""BabyAI levels (from ``minigrid``, the optional extra ``clonekit[minigrid]``) as a batched env.

A task is one level generator and one seed: the seed fixes the layout, the objects, the agent's start and
the mission, so a task replays exactly. Train and test tasks are disjoint seed ranges.

Observations are one flat ``uint8`` vector per step, suited to a small recurrent network:

* ``[0, 147)``: the agent's 7x7 egocentric partial view, 3 symbolic channels per cell (object type, colour,
  state; minigrid's encoding), row-major ``(7, 7, 3)``;
* ``147``: the agent's direction (0..3);
* ``[148, 148 + MISSION_LEN)``: the mission as word ids of :data:`MISSION_WORDS` (0 pads, 1 is unknown).

minigrid prints "Sampling rejected: ..." while generating some levels; those prints are kept out of the
user's output (see :func:`quiet`).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from clonekit.errors import ConfigError
from clonekit.seeding import derive_seed

VIEW = 7
VIEW_SIZE = VIEW * VIEW * 3
MISSION_LEN = 24
OBS_SIZE = VIEW_SIZE + 1 + MISSION_LEN
NUM_ACTIONS = 7  # left, right, forward, pickup, drop, toggle, done
ACTION_NAMES = ("left", "right", "forward", "pickup", "drop", "toggle", "done")
PICKUP, DROP, TOGGLE = 3, 4, 5
NUM_OBJECT_TYPES, NUM_COLORS, NUM_STATES = 11, 6, 3
DEFAULT_LEVEL = "BabyAI-UnlockPickup-v0"

# Every word of the BabyAI mission grammar; ids start at 2 (0 pads, 1 is an unknown word).
MISSION_WORDS = (
    *("go", "to", "the", "a", "pick", "up", "open", "put", "next", "then", "after", "you", "and"),
    *("in", "front", "of", "behind", "on", "your", "left", "right"),
    *("door", "key", "ball", "box", "object", "red", "green", "blue", "purple", "yellow", "grey", ","),
)
_MISSION_IDS = {word: i + 2 for i, word in enumerate(MISSION_WORDS)}

_SPLIT_RANGES = {"train": (0, 2**30), "test": (2**30, 2**31 - 1)}


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallow what minigrid prints to stdout (its "Sampling rejected" messages) while generating levels."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def require_minigrid() -> Any:
    """Import minigrid (registering the BabyAI levels) or say how to install it."""
    try:
        import minigrid
    except ImportError as err:
        raise ConfigError(
            "env babyai needs the optional dependency minigrid: pip install 'clonekit[minigrid]'"
        ) from err
    return minigrid


def encode_mission(mission: str) -> np.ndarray:
    """``(MISSION_LEN,)`` uint8 word ids of ``mission`` (cut to ``MISSION_LEN`` words, 0-padded)."""
    words = mission.lower().replace(",", " , ").split()[:MISSION_LEN]
    ids = np.zeros(MISSION_LEN, dtype=np.uint8)
    ids[: len(words)] = [_MISSION_IDS.get(w, 1) for w in words]
    return ids


def encode_obs(obs: dict[str, Any]) -> np.ndarray:
    """A minigrid observation dict as the flat ``(OBS_SIZE,)`` uint8 vector described in the module docstring."""
    return np.concatenate(
        [
            np.asarray(obs["image"], dtype=np.uint8).reshape(-1),
            np.array([obs["direction"]], dtype=np.uint8),
            encode_mission(obs["mission"]),
        ]
    )


@dataclass(frozen=True)
class BabyAITask:
    """One BabyAI episode: the level generator (a gymnasium id) and the seed that fixes its layout."""

    level: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.level}:{self.seed}"


def sample_tasks(
    seed: int, split: str, count: int, level: str, exclude: set[str] | frozenset[str] = frozenset()
) -> list[BabyAITask]:
    """``count`` distinct tasks of ``level`` for ``split``; train and test seeds come from disjoint ranges."""
    if split not in _SPLIT_RANGES:
        raise ConfigError(f"split: expected one of {list(_SPLIT_RANGES)}, got {split!r}")
    low, high = _SPLIT_RANGES[split]
    rng = np.random.default_rng(derive_seed(seed, f"babyai-tasks:{split}:{level}"))
    tasks: list[BabyAITask] = []
    seen = set(exclude)
    while len(tasks) < count:
        task = BabyAITask(level, int(rng.integers(low, high)))
        if task.key not in seen:
            seen.add(task.key)
            tasks.append(task)
    return tasks


def make_level(level: str, max_steps: int | None = None) -> Any:
    """The unwrapped minigrid env of ``level`` (wrappers only add per-step checks we do not need)."""
    require_minigrid()
    import gymnasium as gym

    kwargs: dict[str, Any] = {} if max_steps is None else {"max_steps": int(max_steps)}
    try:
        return gym.make(level, **kwargs).unwrapped
    except gym.error.Error as err:
        raise ConfigError(f"env babyai: level {level!r} is not a registered minigrid level ({err})") from err


def object_name(obj: Any) -> str:
    """ "red ball", "grey door": how the bot's thoughts and the unsafe-object checks name a world object."""
    return f"{obj.color} {obj.type}"


class BabyAIVecEnv:
    """Many BabyAI episodes stepped together, one per slot (a plain loop over minigrid envs).

    A finished slot is not stepped again: it keeps its last observation. :meth:`halt` stops slots before
    their next action executes (pre-crime halting): the next :meth:`step` ignores their action and ends
    them as ``truncated`` with reward 0. After every :meth:`step`, ``interactions[i]`` names the object
    slot ``i`` picked up or toggled in that step (``""`` when none).
    """

    def __init__(self, tasks: list[BabyAITask], max_steps: int | None = None) -> None:
        self.tasks = list(tasks)
        self.num_envs = len(tasks)
        self.envs = [make_level(t.level, max_steps) for t in tasks]
        self.done = np.zeros(self.num_envs, dtype=bool)
        self.halted = np.zeros(self.num_envs, dtype=bool)
        self._halt_next = np.zeros(self.num_envs, dtype=bool)
        self.interactions = [""] * self.num_envs
        self._obs = np.zeros((self.num_envs, OBS_SIZE), dtype=np.uint8)
        self.missions = [""] * self.num_envs

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start every slot's task (the task's seed fixes the episode; ``seed`` is not needed)."""
        with quiet():
            for i, (env, task) in enumerate(zip(self.envs, self.tasks, strict=True)):
                obs, _ = env.reset(seed=task.seed)
                self._obs[i] = encode_obs(obs)
                self.missions[i] = obs["mission"]
        self.done[:] = False
        self.halted[:] = False
        self._halt_next[:] = False
        return self._obs.copy()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Step every unfinished slot; ``(obs, reward, terminated, truncated)`` each ``(B, ...)``."""
        b = self.num_envs
        reward = np.zeros(b, dtype=np.float32)
        terminated = np.zeros(b, dtype=bool)
        truncated = np.zeros(b, dtype=bool)
        self.interactions = [""] * b
        stopping = self._halt_next & ~self.done
        truncated[stopping] = True
        self.halted |= stopping
        self.done |= stopping
        self._halt_next[:] = False
        for i in np.flatnonzero(~self.done):
            env = self.envs[i]
            action = int(actions[i])
            front = env.grid.get(*env.front_pos)
            self.interactions[i] = object_name(front) if action in (PICKUP, TOGGLE) and front is not None else ""
            obs, r, term, trunc, _ = env.step(action)
            self._obs[i] = encode_obs(obs)
            reward[i], terminated[i], truncated[i] = r, term, trunc
            self.done[i] = term or trunc
        return self._obs.copy(), reward, terminated, truncated

    def halt(self, mask: np.ndarray) -> None:
        """Stop the slots in ``mask``: the next :meth:`step` does not execute their action and ends them."""
        self._halt_next |= np.asarray(mask, dtype=bool) & ~self.done

    def render(self, slot: int, tile_size: int = 12) -> np.ndarray:
        """RGB frame ``(H, W, 3)`` of slot ``slot``'s full grid, with the agent's view highlighted."""
        return np.asarray(self.envs[slot].get_frame(highlight=True, tile_size=tile_size))
