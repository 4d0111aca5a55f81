"""Episode slots: gymnasium envs that each play one episode, stepped in this process or in worker processes.

clonekit plays one episode per slot and freezes a slot once its episode ends (see
:class:`clonekit.envs.gym.GymVecEnv`). gymnasium's vector envs are built for training loops instead: they step
every sub-env on every call, reset finished ones, merge the info dicts and stack the observations through the
space's generic helpers. Here a step touches only the live slots, writes each observation straight into one
preallocated array (shared memory when the slots run in workers), and keeps of the info dict only what clonekit
reads: whether the env reports ``success`` / ``is_success`` and its value.

* :class:`SlotGroup` steps its envs in this process (``vector: "sync"``).
* :class:`ProcessSlots` spreads the slots over processes in contiguous blocks (``vector: "async"``): this
  process steps the first block itself while worker processes step the others, one message per worker per
  step. gymnasium's ``AsyncVectorEnv`` runs one process per env and sends one message per env per step while
  the caller waits idle; with more slots than cores (8 MuJoCo envs on 2 cores) the round trips and the
  contention for the cores eat the gain. Workers start with the platform's default method (``fork`` on Linux,
  as gymnasium does), so an env registered at run time in this process exists in them.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import gymnasium
import numpy as np

SUCCESS_KEYS = ("success", "is_success")
# (reward, terminated, truncated, reported, success): per-slot results of one step, each (B,)
StepArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
Converter = Callable[[Any], np.ndarray] | None


class SlotGroup:
    """``count`` envs made by ``make``, each playing the episode its reset seed starts, in this process.

    ``obs`` is the ``(count, *shape)`` array the observations are written into (a view of shared memory in a
    worker); ``convert`` turns one raw observation into its recorded form (``None``: assign it as it is, numpy
    casts to ``obs``'s dtype).
    """

    def __init__(
        self, make: Callable[[], gymnasium.Env[Any, Any]], count: int, obs: np.ndarray, convert: Converter
    ) -> None:
        self.envs = [make() for _ in range(count)]
        self.num_envs = count
        self.obs = obs
        self.convert = convert
        self.closed = False

    def _write(self, i: int, raw: Any) -> None:
        self.obs[i] = raw if self.convert is None else self.convert(raw)

    def reset(self, seeds: list[int]) -> None:
        """Reset env ``i`` with ``seeds[i]``; the observations land in ``obs``."""
        for i, (env, seed) in enumerate(zip(self.envs, seeds, strict=True)):
            raw, _ = env.reset(seed=seed)
            self._write(i, raw)

    def step(self, actions: np.ndarray, live: np.ndarray) -> StepArrays:
        """Step the envs where ``live`` is true with their row of ``actions``; the others are not touched
        (reward 0, flags false, ``obs`` rows kept)."""
        n = self.num_envs
        reward: list[Any] = [0.0] * n
        terminated: list[Any] = [False] * n
        truncated: list[Any] = [False] * n
        reported = np.zeros(n, dtype=bool)
        success = np.zeros(n, dtype=bool)
        envs, obs, convert = self.envs, self.obs, self.convert
        for i in np.flatnonzero(live).tolist():
            raw, r, term, trunc, info = envs[i].step(actions[i])
            obs[i] = raw if convert is None else convert(raw)
            reward[i], terminated[i], truncated[i] = r, term, trunc
            if info:
                for key in SUCCESS_KEYS:
                    if key in info:
                        reported[i] = True
                        success[i] |= bool(info[key])
        return (
            np.asarray(reward, dtype=np.float64),
            np.asarray(terminated, dtype=bool),
            np.asarray(truncated, dtype=bool),
            reported,
            success,
        )

    def close(self) -> None:
        self.closed = True
        for env in self.envs:
            env.close()


def default_workers(num_envs: int) -> int:
    """One stepping process per core (this one included), never more than there are slots."""
    return max(1, min(num_envs, os.cpu_count() or 1))


def _serve(
    conn: Connection,
    make: Callable[[], gymnasium.Env[Any, Any]],
    count: int,
    buffer: Any,
    dtype: str,
    shape: tuple[int, ...],
    start: int,
    convert: Converter,
) -> None:
    """A worker: owns slots ``start .. start + count`` of the shared observation array; answers each message
    with ``("ok", result)`` or ``("error", one line)``."""
    group = None
    try:
        rows = np.frombuffer(buffer, dtype=dtype).reshape(-1, *shape)[start : start + count]
        group = SlotGroup(make, count, rows, convert)
        conn.send(("ok", None))
        while True:
            command, args = conn.recv()
            if command == "close":
                break
            if command == "reset":
                group.reset(*args)
                conn.send(("ok", None))
            else:
                conn.send(("ok", group.step(*args)))
    except KeyboardInterrupt:
        pass
    except Exception as err:  # any env error goes back to the parent as one line
        conn.send(("error", f"{type(err).__name__}: {' '.join(str(err).split())}"))
    finally:
        if group is not None:
            group.close()
        conn.close()


def _shutdown(conns: list[Connection], processes: list[Any]) -> None:
    for conn in conns:
        with contextlib.suppress(BrokenPipeError, OSError):
            conn.send(("close", ()))
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.terminate()
            process.join()
    for conn in conns:
        conn.close()


class ProcessSlots:
    """``num_envs`` slots spread in contiguous blocks over ``workers`` processes (this one steps the first block,
    ``workers - 1`` worker processes the others); same calls as :class:`SlotGroup`. Observations are written
    into one shared-memory array (``obs``)."""

    def __init__(
        self,
        make: Callable[[], gymnasium.Env[Any, Any]],
        num_envs: int,
        shape: tuple[int, ...],
        dtype: np.dtype[Any],
        convert: Converter,
        workers: int | None = None,
    ) -> None:
        self.num_envs = num_envs
        count = default_workers(num_envs) if workers is None else max(1, min(workers, num_envs))
        context = multiprocessing.get_context()
        dtype = np.dtype(dtype)
        buffer = context.RawArray("b", max(1, num_envs * int(np.prod(shape, dtype=np.int64)) * dtype.itemsize))
        self.obs = np.frombuffer(buffer, dtype=dtype)[: num_envs * int(np.prod(shape, dtype=np.int64))]
        self.obs = self.obs.reshape(num_envs, *shape)
        blocks = [(int(b[0]), int(b[-1]) + 1) for b in np.array_split(np.arange(num_envs), count)]
        self.local_end = blocks[0][1]
        self.blocks = blocks[1:]  # the workers' blocks
        self.conns: list[Connection] = []
        self.processes: list[Any] = []
        for lo, hi in self.blocks:
            parent, child = context.Pipe()
            process = context.Process(
                target=_serve,
                args=(child, make, hi - lo, buffer, dtype.str, tuple(shape), lo, convert),
                name=f"clonekit-env-{lo}-{hi}",
                daemon=True,
            )
            process.start()
            child.close()
            self.conns.append(parent)
            self.processes.append(process)
        self._finalizer = weakref.finalize(self, _shutdown, self.conns, self.processes)
        try:
            self.local = SlotGroup(make, self.local_end, self.obs[: self.local_end], convert)
        finally:
            self._gather(self.conns)

    def _gather(self, conns: list[Connection]) -> list[Any]:
        results = []
        for conn in conns:
            try:
                status, payload = conn.recv()
            except EOFError:
                self.close()
                raise RuntimeError("an env worker process exited unexpectedly") from None
            if status == "error":
                self.close()
                raise RuntimeError(f"env worker: {payload}")
            results.append(payload)
        return results

    def reset(self, seeds: list[int]) -> None:
        for conn, (lo, hi) in zip(self.conns, self.blocks, strict=True):
            conn.send(("reset", (seeds[lo:hi],)))
        self.local.reset(seeds[: self.local_end])
        self._gather(self.conns)

    def step(self, actions: np.ndarray, live: np.ndarray) -> StepArrays:
        busy = [(conn, lo, hi) for conn, (lo, hi) in zip(self.conns, self.blocks, strict=True) if live[lo:hi].any()]
        for conn, lo, hi in busy:
            conn.send(("step", (actions[lo:hi], live[lo:hi])))
        out = (
            np.zeros(self.num_envs, dtype=np.float64),
            np.zeros(self.num_envs, dtype=bool),
            np.zeros(self.num_envs, dtype=bool),
            np.zeros(self.num_envs, dtype=bool),
            np.zeros(self.num_envs, dtype=bool),
        )
        end = self.local_end
        try:
            local = self.local.step(actions[:end], live[:end])
        except BaseException:
            self.close()  # the workers' answers to this step are never read: stop them
            raise
        for array, part in zip(out, local, strict=True):
            array[:end] = part
        for (_, lo, hi), result in zip(busy, self._gather([conn for conn, _, _ in busy]), strict=True):
            for array, part in zip(out, result, strict=True):
                array[lo:hi] = part
        return out

    def close(self) -> None:
        """Close this process's envs and stop the workers (they close theirs)."""
        self._finalizer()
        if hasattr(self, "local"):
            self.local.close()
