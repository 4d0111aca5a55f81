"""A live session: a trained policy plays episodes one at a time while a person watches and may take over.

Every step is recorded: the observation, the action that ran, reward, ``terminated``/``truncated``,
``intervention`` (true while the person is in control) and ``expert_action`` (the person's action on those
steps; the policy's own action elsewhere, as the run datasets of :mod:`clonekit.interactive.loop` record it
for demonstrations). The session's directory holds:

* ``journal.jsonl``: one JSON line per step, written and fsynced *before* the step is acknowledged to the page;
  a kill loses no acknowledged step (a torn last line was never acknowledged and is ignored);
* ``data-NNNN/``: a clonekit dataset of the finished episodes, rewritten as a new directory when an episode
  ends (or is ended from the page), and ``live.json``, switched atomically to the newest one with the number
  of journal episodes it holds. Restarting the session on the same directory first moves the journal's
  unfinished episode into the dataset as a truncated episode, then plays on.

Discrete actions come from the page one per step (a button or number key each); continuous (Box, one axis)
actions come as a vector of numbers, clipped to the space's bounds before they run and are saved. A session
may be bounded (``max_episodes``, ``label_budget``): it then finishes, sets :attr:`LiveSession.finished` and
plays no more, which is how an interactive round played by a person ends (:mod:`clonekit.interactive.human`).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from clonekit.data import Dataset, DatasetWriter, array_stream
from clonekit.errors import ConfigError
from clonekit.interactive.browse import draw, encode_png
from clonekit.interactive.interveners import labels_left
from clonekit.io import atomic_write_json
from clonekit.seeding import derive_seed

JOURNAL = "journal.jsonl"
POINTER = "live.json"
STEP_KEYS = ("obs", "action", "reward", "terminated", "truncated", "intervention", "expert_action")


def _encode(array: np.ndarray) -> dict[str, Any]:
    data = base64.b64encode(np.ascontiguousarray(array).tobytes()).decode()  # (ascontiguousarray makes 0-d 1-d)
    return {"dtype": array.dtype.str, "shape": list(array.shape), "b64": data}


def _decode(data: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(data["b64"]), dtype=data["dtype"]).reshape(data["shape"]).copy()


class StepJournal:
    """Append-only JSON lines of acknowledged steps (each fsynced before :meth:`append` returns)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the session

    def append(self, row: dict[str, Any]) -> None:
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def rows(self) -> list[dict[str, Any]]:
        """The complete lines (a torn last line, never acknowledged, is skipped)."""
        rows = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return rows

    def clear(self) -> None:
        self._file.truncate(0)
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


class LiveSession:
    """One env slot played by ``policy`` on ``tasks`` (cycled), with take-over; thread-safe calls.

    Episode ``j`` of the session plays ``tasks[(first_episode + j) % len(tasks)]``, reset with seed ``j`` (or,
    given ``seed``, with ``derive_seed(seed, f"live:{first_episode + j}")``). Bounds, all off by default:
    ``max_episodes`` finishes the session after that many saved episodes; ``max_steps`` cuts every episode after
    that many steps (truncated); ``label_budget`` caps the person's steps (each one label): the step that spends
    the last one ends its episode (truncated unless it terminated) and the session.
    """

    def __init__(
        self,
        policy: Any,
        family: Any,
        env_kwargs: dict[str, Any],
        tasks: list[Any],
        directory: str | Path,
        *,
        max_episodes: int | None = None,
        max_steps: int | None = None,
        first_episode: int = 0,
        seed: int | None = None,
        label_budget: int | None = None,
    ) -> None:
        if not tasks:
            raise ConfigError("live session: no tasks to play")
        self.policy, self.family, self.env_kwargs, self.tasks = policy, family, env_kwargs, tasks
        obs_space, action_space = family.spaces(**env_kwargs)
        self.continuous = isinstance(action_space, gym.spaces.Box)
        if not hasattr(action_space, "n") and not (self.continuous and len(action_space.shape) == 1):
            raise ConfigError(f"live session: expected a Discrete or a one-axis Box action space, found {action_space}")
        self.obs_space, self.action_space = obs_space, action_space
        if self.continuous:
            self.action_names = [f"a{i}" for i in range(action_space.shape[0])]
        else:
            self.action_names = list(getattr(family, "action_names", None) or [str(a) for a in range(action_space.n)])
        self.max_episodes, self.max_steps, self.label_budget = max_episodes, max_steps, label_budget
        self.first_episode, self.seed = first_episode, seed
        self.finished = threading.Event()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        pointer = self._pointer()
        self.committed = int(pointer.get("episodes", 0))
        self.journal = StepJournal(self.directory / JOURNAL)
        self._recover()
        saved = self.dataset()
        self.labels_used = 0 if saved is None else int(np.asarray(saved.column("intervention"), dtype=bool).sum())
        self.human = False
        self.steps: list[dict[str, np.ndarray]] = []
        self.last: dict[str, Any] = {}
        if self._bound_reached():
            self.finished.set()
        else:
            self._start_episode()

    # -- storage ---------------------------------------------------------------------------------------------
    def _pointer(self) -> dict[str, Any]:
        path = self.directory / POINTER
        return json.loads(path.read_text()) if path.exists() else {}

    def dataset(self) -> Dataset | None:
        """The finished episodes so far (None before the first one)."""
        name = self._pointer().get("dataset")
        return Dataset.open(self.directory / name) if name else None

    def _recover(self) -> None:
        """Move the journal's acknowledged steps of episodes not yet in the dataset into it (truncated)."""
        rows = [r for r in self.journal.rows() if r["episode"] >= self.committed]
        if rows:
            steps = {key: np.stack([_decode(r[key]) for r in rows]) for key in STEP_KEYS}
            steps["truncated"][-1] |= not steps["terminated"][-1]
            self._commit(steps)
        self.journal.clear()

    def _commit(self, steps: dict[str, np.ndarray]) -> None:
        old = self.dataset()
        name = f"data-{self.committed + 1:04d}"
        action_dtype, action_shape = self._action_layout()
        streams = [
            array_stream("obs", self.obs_space.dtype, tuple(self.obs_space.shape)),
            array_stream("action", action_dtype, action_shape),
            array_stream("reward", "float32"),
            array_stream("terminated", "bool"),
            array_stream("truncated", "bool"),
            array_stream("intervention", "bool", (), "a person was in control"),
            array_stream("expert_action", action_dtype, action_shape, "the person's action on intervention steps"),
        ]
        spaces = {"observation": self.obs_space, "action": self.action_space}
        env = {"id": self.family.name, "kwargs": self.env_kwargs}
        with DatasetWriter(self.directory / name, streams, spaces=spaces, env=env, overwrite=True) as writer:
            if old is not None:
                for k in range(old.num_episodes):
                    writer.add_episode(old.episode(k))
            writer.add_episode(steps)
        self.committed += 1
        atomic_write_json(self.directory / POINTER, {"dataset": name, "episodes": self.committed})
        if old is not None and old.path.name != name:
            shutil.rmtree(old.path)

    def _action_layout(self) -> tuple[str, tuple[int, ...]]:
        """The dtype and per-step shape of saved actions: int64 scalars, or the Box's dtype and shape."""
        if self.continuous:
            return np.dtype(self.action_space.dtype).str, tuple(self.action_space.shape)
        return "int64", ()

    def _bound_reached(self) -> bool:
        episodes_done = self.max_episodes is not None and self.committed >= self.max_episodes
        return episodes_done or self.labels_left == 0

    @property
    def labels_left(self) -> int | None:
        """Steps the person may still take (None: no limit)."""
        return labels_left(self.labels_used, self.label_budget)

    # -- playing ---------------------------------------------------------------------------------------------
    def _start_episode(self) -> None:
        number = self.first_episode + self.committed
        task = self.tasks[number % len(self.tasks)]
        self.vec = self.family.make_vec([task], **self.env_kwargs)
        reset_seed = self.committed if self.seed is None else derive_seed(self.seed, f"live:{number}")
        self.obs = self.vec.reset(seed=reset_seed)
        self.policy_state = self.policy.initial_state(1)
        self.steps = []
        self.last = {}

    def _policy_action(self) -> tuple[np.ndarray, Any]:
        with torch.inference_mode():
            action, state = self.policy.act({"obs": torch.as_tensor(self.obs)}, self.policy_state)
        dtype, _ = self._action_layout()
        return np.asarray(action)[0].astype(dtype), state

    def _checked(self, human_action: Any) -> np.ndarray:
        """The person's action as the env takes it; continuous ones are clipped to the bounds."""
        if not self.continuous:
            integer = isinstance(human_action, int | np.integer) and not isinstance(human_action, bool)
            if not integer or not 0 <= human_action < self.action_space.n:
                raise ConfigError(f"action: expected an integer in [0, {self.action_space.n}), got {human_action}")
            return np.asarray(human_action, dtype=np.int64)
        size = self.action_space.shape[0]
        numbers = isinstance(human_action, list) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in human_action
        )
        values = np.asarray(human_action if numbers else [], dtype=np.float64)
        if not numbers or values.shape != (size,) or not np.isfinite(values).all():
            raise ConfigError(f"action: expected a list of {size} finite numbers, got {str(human_action)[:80]}")
        low, high = self.action_space.low, self.action_space.high
        return np.clip(values, low, high).astype(self.action_space.dtype)

    def step(self, human_action: Any = None) -> dict[str, Any]:
        """One step: the person's action when given (they are in control), else the policy's. A number for a
        Discrete space, a list of numbers for a Box (clipped to its bounds). After the session finished, a
        policy step does nothing and a person's step is refused."""
        with self._lock:
            if self.finished.is_set():
                if human_action is not None:
                    raise ConfigError("live: this session has finished; there is no episode to act in")
                return self.state()
            chosen = None if human_action is None else self._checked(human_action)
            proposed, state = self._policy_action()
            action = proposed if chosen is None else chosen
            obs = self.obs
            self.obs, reward, terminated, truncated = self.vec.step(action[None])
            self.policy_state = state
            if chosen is not None:
                self.labels_used += 1
            cut = (self.max_steps is not None and len(self.steps) + 1 >= self.max_steps) or self.labels_left == 0
            row = {
                "obs": obs[0],
                "action": action,
                "reward": np.float32(reward[0]),
                "terminated": np.bool_(terminated[0]),
                "truncated": np.bool_(truncated[0] or (cut and not terminated[0])),
                "intervention": np.bool_(chosen is not None),
                "expert_action": action,
            }
            self.journal.append(
                {"episode": self.committed, "t": len(self.steps), **{k: _encode(np.asarray(v)) for k, v in row.items()}}
            )
            self.steps.append({k: np.asarray(v) for k, v in row.items()})
            self.last = {"action": _shown(action), "proposed": _shown(proposed), "reward": float(reward[0])}
            if row["terminated"] or row["truncated"]:
                self._finish()
            return self.state()

    def _finish(self) -> None:
        steps = {key: np.stack([s[key] for s in self.steps]) for key in STEP_KEYS}
        self._commit(steps)
        self.journal.clear()
        if self._bound_reached():
            self.steps = []
            self.finished.set()
        else:
            self._start_episode()

    def end_episode(self) -> dict[str, Any]:
        """End the current episode now (truncated) and start the next one; nothing happens before a step."""
        with self._lock:
            if self.steps and not self.finished.is_set():
                self.steps[-1]["truncated"] = np.asarray(not bool(self.steps[-1]["terminated"]))
                self._finish()
            return self.state()

    def set_control(self, human: bool) -> dict[str, Any]:
        with self._lock:
            self.human = human
            return self.state()

    def state(self) -> dict[str, Any]:
        """What the page shows: the frame, who is in control, counters, the last step."""
        done = self.finished.is_set()
        rgb = None if done else draw(np.asarray(self.obs), self.family)
        frame = None if rgb is None else "data:image/png;base64," + base64.b64encode(encode_png(rgb[0])).decode()
        state = {
            "frame": frame,
            "obs": None if rgb is not None or done else np.asarray(self.obs, dtype=np.float64)[0].round(4).tolist(),
            "control": "human" if self.human else "policy",
            "episode": self.committed,
            "step": len(self.steps),
            "interventions": int(sum(bool(s["intervention"]) for s in self.steps)),
            "episodes_saved": self.committed,
            "action_names": self.action_names,
            "last": self.last,
        }
        if self.continuous:  # an unbounded side goes as null (JSON has no infinity)
            state["action_low"] = [float(v) if np.isfinite(v) else None for v in self.action_space.low]
            state["action_high"] = [float(v) if np.isfinite(v) else None for v in self.action_space.high]
        if done:
            state["finished"] = True
        return state

    def close(self) -> None:
        self.journal.close()


def _shown(action: np.ndarray) -> int | list[float]:
    """An action as the page shows it: an integer, or the vector's values rounded."""
    return int(action) if action.ndim == 0 else [round(float(v), 4) for v in action]


def live_session_for_run(
    run_dir: str | Path, directory: str | Path, split: str = "test", seed: int = 0, num_tasks: int = 20
) -> LiveSession:
    """A session playing the run's final policy on ``num_tasks`` tasks of ``split`` of the run's env."""
    from clonekit.checkpoint import load_policy, load_run_config
    from clonekit.envs import env_block_for_eval, get_env_family
    from clonekit.evaluation import split_tasks

    config = load_run_config(Path(run_dir))
    env_block = env_block_for_eval(config.get("dataset", {}).get("env", {}))
    if not env_block.get("id"):
        raise ConfigError(f"{Path(run_dir) / 'config.json'}: dataset.env has no 'id'; the live page needs the env")
    family = get_env_family(env_block["id"])
    tasks = split_tasks(env_block, split, seed, num_tasks)
    return LiveSession(load_policy(run_dir), family, env_block.get("kwargs", {}), tasks, directory)
