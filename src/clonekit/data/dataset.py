"""``Dataset``: a clonekit dataset opened read-only, every numeric column memory-mapped (layout in
``clonekit.data.format``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from clonekit.data.columns import ArrayColumn, TextColumn, group_by_chunk, read_column, read_episode_index
from clonekit.data.format import StreamSpec, check_stream_set, fingerprint, read_meta
from clonekit.data.messages import with_prefix
from clonekit.data.spaces import space_from_json
from clonekit.data.validate import first_bad_value
from clonekit.errors import ConfigError, DatasetError

# Rows scanned at once by ``Dataset.check_values`` are capped at about this many elements (bounded memory).
_VALUE_SCAN_ELEMENTS = 1 << 22


class Dataset:
    """A dataset opened read-only, with every numeric column memory-mapped.

    Open with ``Dataset.open(path)``; every problem with the files raises a one-line ``DatasetError``.
    Arrays returned by ``column()`` and ``episode()`` may be read-only views on the mapped files; ``gather()``
    and ``sample()`` return fresh copies.
    """

    path: Path
    meta: dict[str, Any]
    streams: dict[str, StreamSpec]
    num_steps: int
    num_episodes: int
    fingerprint: str
    env: dict[str, Any]
    spaces: dict[str, Any]
    extra: dict[str, Any]
    episode_starts: np.ndarray
    episode_lengths: np.ndarray

    def __init__(self, path: str | Path) -> None:
        """Same as ``Dataset.open(path)``."""
        self.path = Path(path)
        if not self.path.exists():
            raise DatasetError(f"{self.path}: no such dataset directory")
        if not self.path.is_dir():
            raise DatasetError(f"{self.path}: expected a dataset directory, found a file")
        meta_path = self.path / "meta.json"
        self.meta = read_meta(meta_path)
        self.num_steps = self.meta["num_steps"]
        self.num_episodes = self.meta["num_episodes"]
        self.fingerprint = self.meta["fingerprint"]
        self.env = self.meta["env"]
        self.spaces = self.meta["spaces"]
        self.extra = self.meta["extra"]
        self.streams = {}
        for name, spec_json in self.meta["streams"].items():
            self.streams[name] = with_prefix(f"{meta_path}: streams", StreamSpec.from_json, name, spec_json)
        with_prefix(str(meta_path), check_stream_set, self.streams)
        self._gym_spaces = {name: _space_from_meta(meta_path, name, d) for name, d in self.spaces.items()}

        self._columns: dict[str, ArrayColumn | TextColumn] = {
            name: read_column(self.path / "columns" / f"{name}.arrow", spec, self.num_steps)
            for name, spec in self.streams.items()
        }
        self.episode_starts, self.episode_lengths, self._episode_info = read_episode_index(
            self.path / "episodes.arrow", self.meta
        )
        self._episode_index: np.ndarray | None = None

    @classmethod
    def open(cls, path: str | Path) -> Dataset:
        """Open and validate the dataset directory at ``path`` (nothing on disk is modified)."""
        return cls(path)

    def __len__(self) -> int:
        return self.num_steps

    def __repr__(self) -> str:
        return (
            f"Dataset({str(self.path)!r}, num_steps={self.num_steps}, num_episodes={self.num_episodes}, "
            f"streams=[{', '.join(self.streams)}])"
        )

    @property
    def observation_only(self) -> bool:
        """True when the dataset has no ``action`` stream (e.g. demonstrations from video): ``clonekit label``
        fills one from an inverse dynamics model; no policy trains on it before."""
        return "action" not in self.streams

    def episode_info(self, name: str) -> np.ndarray:
        """``(num_episodes,)`` per-episode info column: int64, float64, or object (str)."""
        if name not in self._episode_info:
            known = ", ".join(self._episode_info) or "none"
            raise DatasetError(f"{self.path}: no episode info {name!r} (episode_info: {known})")
        return self._episode_info[name]

    def episode_index(self) -> np.ndarray:
        """``(num_steps,)`` int64 episode id of every step (computed on first use, then cached)."""
        if self._episode_index is None:
            index = np.repeat(np.arange(self.num_episodes, dtype=np.int64), self.episode_lengths)
            index.flags.writeable = False
            self._episode_index = index
        return self._episode_index

    def column(self, name: str) -> np.ndarray | list[str]:
        """Whole stream: ``(num_steps, *shape)`` array, or ``list[str]`` for text.

        A single-chunk array column is returned as the read-only zero-copy view of the mapped file; a
        multi-chunk one is concatenated, which copies it (read a large one with ``column_chunks`` instead).
        """
        return self._column(name).full()

    def column_chunks(self, name: str) -> Iterator[np.ndarray]:
        """An array stream's chunks in step order: read-only zero-copy views ``(chunk_rows, *shape)`` of the
        mapped file, together the whole column, so it can be read without copying it (e.g. to fit statistics).
        """
        column = self._column(name)
        if not isinstance(column, ArrayColumn):
            raise DatasetError(f"{self.path}: stream {name!r} is text; expected an array stream for column_chunks")
        return iter(column.chunks)

    def gather(
        self, indices: np.ndarray | Sequence[int], streams: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Rows ``indices`` (shape ``(N,)``, ints in ``[0, num_steps)``) of each stream (default: all).

        Arrays come back as fresh ``(N, *shape)`` copies; text as an ``(N,)`` object array of str.
        """
        index = _as_step_indices(indices, self.num_steps)
        names = list(self.streams) if streams is None else list(streams)
        groups: dict[bytes, list[tuple[int, np.ndarray, np.ndarray]]] = {}  # columns chunked alike share one
        out = {}
        for name in names:
            column = self._column(name)
            if len(column.chunks) == 1:
                out[name] = column.take(index, None)
                continue
            key = column.starts.tobytes()
            if key not in groups:
                groups[key] = list(group_by_chunk(column.starts, index))
            out[name] = column.take(index, groups[key])
        return out

    def sample(
        self, batch_size: int, generator: torch.Generator, streams: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """``batch_size`` uniformly random steps as CPU tensors ``(batch_size, *shape)``.

        Indices come from ``torch.randint(num_steps, (batch_size,), generator=generator)``, so the batch is
        determined by the generator's state. Default streams: every array stream (text is skipped); bool
        streams become ``torch.bool``.
        """
        if streams is None:
            names = [name for name, spec in self.streams.items() if spec.kind == "array"]
        else:
            names = list(streams)
            for name in names:
                if self._spec(name).kind == "text":
                    raise DatasetError(f"{self.path}: text stream {name!r} cannot be sampled into a tensor")
        index = torch.randint(self.num_steps, (batch_size,), generator=generator)
        batch = self.gather(index.numpy(), names)
        return {name: torch.from_numpy(values) for name, values in batch.items()}

    def episode(self, i: int) -> dict[str, np.ndarray | list[str]]:
        """Every stream of episode ``i`` (negative counts from the end): ``(T, *shape)`` arrays, text as list.

        Arrays are read-only views when the episode lies within one chunk.
        """
        if not -self.num_episodes <= i < self.num_episodes:
            raise IndexError(f"episode {i} out of range for a dataset with {self.num_episodes} episodes")
        i %= self.num_episodes
        start = int(self.episode_starts[i])
        stop = start + int(self.episode_lengths[i])
        return {name: column.slice(start, stop) for name, column in self._columns.items()}

    def require_streams(self, names: Iterable[str], needed_by: str) -> None:
        """``DatasetError`` unless every stream in ``names`` exists; ``needed_by`` names who needs them."""
        missing = [name for name in names if name not in self.streams]
        if not missing:
            return
        what = "stream" if len(missing) == 1 else "streams"
        listed = ", ".join(repr(name) for name in missing)
        if "action" in missing and self.observation_only:
            raise DatasetError(
                f"{self.path}: {needed_by} needs {what} {listed}, but this dataset is observation-only (no "
                f"'action' stream); label it first: clonekit label {self.path} --idm RUN --out LABELLED"
            )
        raise DatasetError(
            f"{self.path}: {needed_by} needs {what} {listed}, which this dataset does not have "
            f"(streams: {', '.join(self.streams)})"
        )

    def verify(self) -> None:
        """Full check: re-hash the files against ``meta.json``, then scan every value (``check_values``).

        ``DatasetError`` if the files were changed since they were written or hold a value no writer
        would have accepted. Reads the whole dataset once; ``open`` alone checks only the structure.
        """
        actual = fingerprint(self.path, list(self.streams), fsync=False)
        if actual != self.fingerprint:
            raise DatasetError(
                f"{self.path}: fingerprint mismatch: meta.json has {self.fingerprint}, "
                f"files hash to {actual}; the dataset was modified or corrupted"
            )
        self.check_values()

    def check_values(self, streams: Sequence[str] | None = None) -> None:
        """Scan the values of ``streams`` (default: all array streams); ``DatasetError`` at the first bad one.

        Checks: bool streams hold only 0/1; ``obs``, ``action``, ``reward`` and ``expert_action`` are finite;
        ``action`` and ``expert_action`` lie in ``meta.json`` ``spaces['action']`` (Discrete range or Box
        bounds). The message names the stream, the step and the value. Memory stays bounded: rows are
        scanned in blocks of about ``_VALUE_SCAN_ELEMENTS`` elements.
        """
        names = [n for n, spec in self.streams.items() if spec.kind == "array"] if streams is None else list(streams)
        action_space = None
        for name in names:
            spec = self._spec(name)
            if spec.kind != "array":
                continue
            if name in ("action", "expert_action") and "action" in self._gym_spaces:
                action_space = self._gym_spaces["action"]
            column = self._columns[name]
            assert isinstance(column, ArrayColumn)
            block = max(1, _VALUE_SCAN_ELEMENTS // max(1, math.prod(spec.shape)))
            for start in range(0, self.num_steps, block):
                values = column.slice(start, min(start + block, self.num_steps))
                problem = first_bad_value(spec, values, action_space if name in ("action", "expert_action") else None)
                if problem is not None:
                    row, found, expected = problem
                    raise DatasetError(f"{self.path}: stream {name!r}, step {start + row}: {expected}, found {found}")

    def space(self, name: str) -> gym.spaces.Space:
        """The gymnasium space ``meta.json["spaces"][name]`` (e.g. ``"observation"``, ``"action"``)."""
        if name not in self._gym_spaces:
            raise DatasetError(f"{self.path}: no space {name!r} (spaces: {', '.join(self._gym_spaces) or 'none'})")
        return self._gym_spaces[name]

    def summary(self) -> dict[str, Any]:
        """JSON-able overview: size, streams, env, episode lengths, mean return, fraction terminated."""
        reward = np.asarray(self.column("reward"), dtype=np.float64)
        terminated = np.asarray(self.column("terminated"))
        returns = np.add.reduceat(reward, self.episode_starts)
        last_steps = self.episode_starts + self.episode_lengths - 1
        return {
            "path": str(self.path),
            "format": self.meta["format"],
            "schema_version": self.meta["schema_version"],
            "num_steps": self.num_steps,
            "num_episodes": self.num_episodes,
            "fingerprint": self.fingerprint,
            "streams": {name: spec.to_json() for name, spec in self.streams.items()},
            "env": self.env,
            "episode_length": {
                "min": int(self.episode_lengths.min()),
                "mean": float(self.episode_lengths.mean()),
                "max": int(self.episode_lengths.max()),
            },
            "return_mean": float(returns.mean()),
            "terminated_fraction": float(terminated[last_steps].mean()),
        }

    def _spec(self, name: str) -> StreamSpec:
        if name not in self.streams:
            raise DatasetError(f"{self.path}: no stream {name!r} (streams: {', '.join(self.streams)})")
        return self.streams[name]

    def _column(self, name: str) -> ArrayColumn | TextColumn:
        self._spec(name)
        return self._columns[name]


def _as_step_indices(indices: np.ndarray | Sequence[int], num_steps: int) -> np.ndarray:
    """``(N,)`` int64 copy of ``indices``, checked to lie in ``[0, num_steps)``."""
    index = np.asarray(indices)
    if index.size == 0:
        index = index.astype(np.int64)
    if index.ndim != 1 or index.dtype.kind not in "iu":
        raise IndexError(f"step indices: expected a 1-D integer array, found {index.dtype} shape {index.shape}")
    index = index.astype(np.int64)
    if index.size and (index.min() < 0 or index.max() >= num_steps):
        bad = index[(index < 0) | (index >= num_steps)][0]
        raise IndexError(f"step index {bad} out of range for a dataset with {num_steps} steps")
    return index


def _space_from_meta(meta_path: Path, name: str, d: Any) -> gym.spaces.Space:
    try:
        return space_from_json(d)
    except ConfigError as e:
        raise DatasetError(f"{meta_path}: spaces[{name!r}]: {e}") from e
