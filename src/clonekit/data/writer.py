"""``DatasetWriter``: write a clonekit dataset episode by episode, atomically (layout in ``clonekit.data.format``)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from clonekit import __version__
from clonekit.data.atomic import install, temp_path
from clonekit.data.columns import ColumnWriter, chunk_rows, write_episode_index
from clonekit.data.dataset import Dataset
from clonekit.data.format import (
    EPISODE_INDEX_COLUMNS,
    FORMAT_NAME,
    SCHEMA_VERSION,
    StreamSpec,
    check_stream_set,
    fingerprint,
    json_object,
)
from clonekit.data.messages import with_prefix
from clonekit.data.spaces import space_to_json
from clonekit.data.validate import array_steps, text_steps
from clonekit.errors import ConfigError, DatasetError
from clonekit.io import fsync_dir

DEFAULT_ROWS_PER_CHUNK = 65536
# A record batch (chunk) of an array stream holds at most this many bytes: 64 MiB is ~5,400 pictures of
# 3x64x64 uint8, against 768 MiB for DEFAULT_ROWS_PER_CHUNK of them (the buffer the writer holds per stream).
DEFAULT_MAX_CHUNK_BYTES = 64 << 20


class DatasetWriter:
    """Write a dataset episode by episode, atomically.

    Everything goes into a hidden temp directory next to ``path`` (``.<name>.tmp-<pid>-<random>``), and only
    ``close()`` renames it into place, so a crash or an exception never leaves a half-written dataset at
    ``path``. Columns are streamed to disk in record batches (chunks) of at most ``rows_per_chunk`` rows and,
    for array streams, at most ``max_chunk_bytes`` bytes (at least one row); about one chunk per stream is
    buffered. Chunking is part of the file layout (so of the fingerprint, a hash of the files), not of the
    content read back.

    Use it as a context manager: on an exception the temp directory is deleted and the exception re-raised;
    on a clean exit the dataset is closed (``close()`` may also be called inside the block to get the
    ``Dataset``).
    """

    def __init__(
        self,
        path: str | Path,
        streams: Sequence[StreamSpec],
        *,
        spaces: Mapping[str, Any] | None = None,
        env: Mapping[str, Any] | None = None,
        episode_info: Sequence[str] = (),
        extra: Mapping[str, Any] | None = None,
        rows_per_chunk: int = DEFAULT_ROWS_PER_CHUNK,
        max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        if isinstance(rows_per_chunk, bool) or not isinstance(rows_per_chunk, int) or rows_per_chunk < 1:
            raise DatasetError(f"{self.path}: rows_per_chunk: expected an int >= 1, found {rows_per_chunk!r}")
        self.rows_per_chunk = rows_per_chunk
        if isinstance(max_chunk_bytes, bool) or not isinstance(max_chunk_bytes, int) or max_chunk_bytes < 1:
            raise DatasetError(f"{self.path}: max_chunk_bytes: expected an int >= 1, found {max_chunk_bytes!r}")
        self.max_chunk_bytes = max_chunk_bytes

        self.streams: dict[str, StreamSpec] = {}
        for spec in streams:
            if not isinstance(spec, StreamSpec):
                raise DatasetError(f"{self.path}: streams: expected StreamSpec objects, found {spec!r}")
            if spec.name in self.streams:
                raise DatasetError(f"{self.path}: streams: stream {spec.name!r} is declared twice")
            self.streams[spec.name] = spec
        with_prefix(f"{self.path}", check_stream_set, self.streams)

        self.episode_info_names = list(episode_info)
        for name in self.episode_info_names:
            if not isinstance(name, str) or not name or name in EPISODE_INDEX_COLUMNS:
                raise DatasetError(
                    f"{self.path}: episode_info: expected non-empty names other than 'start' and 'length', "
                    f"found {name!r}"
                )
        if len(set(self.episode_info_names)) != len(self.episode_info_names):
            raise DatasetError(f"{self.path}: episode_info: names must be unique, found {self.episode_info_names}")

        self.spaces = {key: _space_entry_to_json(self.path, key, value) for key, value in (spaces or {}).items()}
        self.env = {} if env is None else json_object(f"{self.path}: env", env)
        self.extra = {} if extra is None else json_object(f"{self.path}: extra", extra)

        _check_target(self.path, overwrite)
        self._tmp_dir = temp_path(self.path)
        self._state: Literal["open", "closed", "aborted"] = "open"
        self._num_steps = 0
        self._episode_lengths: list[int] = []
        self._info_values: dict[str, list[int | float | str]] = {name: [] for name in self.episode_info_names}
        self._info_kinds: dict[str, type] = {}
        self._columns: dict[str, ColumnWriter] = {}
        (self._tmp_dir / "columns").mkdir(parents=True)
        try:
            for name, spec in self.streams.items():
                file = self._tmp_dir / "columns" / f"{name}.arrow"
                self._columns[name] = ColumnWriter(file, spec, chunk_rows(spec, rows_per_chunk, max_chunk_bytes))
        except BaseException:
            self.abort()
            raise

    @property
    def num_steps(self) -> int:
        """Steps added so far."""
        return self._num_steps

    @property
    def num_episodes(self) -> int:
        """Episodes added so far."""
        return len(self._episode_lengths)

    def add_episode(self, steps: Mapping[str, Any], info: Mapping[str, int | float | str] | None = None) -> None:
        """Append one episode of ``T >= 1`` steps.

        ``steps[name]`` is given for every declared stream: for array streams an array-like ``(T, *shape)``
        whose dtype casts to the stream's dtype within its kind (float64 -> float32 is fine, float -> int is
        not; integers must fit the target range); for text streams a sequence of ``T`` str. ``info`` holds one
        int, float or str per declared ``episode_info`` name. Everything is checked before anything is
        written, so after a ``DatasetError`` the writer is unchanged and still usable.
        """
        self._require_open()
        where = f"{self.path}: episode {self.num_episodes}"
        missing = [name for name in self.streams if name not in steps]
        if missing:
            raise DatasetError(f"{where}: missing stream {missing[0]!r} (declared: {', '.join(self.streams)})")
        extra = [name for name in steps if name not in self.streams]
        if extra:
            raise DatasetError(f"{where}: stream {extra[0]!r} is not declared (declared: {', '.join(self.streams)})")

        converted: dict[str, np.ndarray | list[str]] = {}
        length_source = ""
        length = 0
        for name, spec in self.streams.items():
            if spec.kind == "text":
                values: np.ndarray | list[str] = text_steps(f"{where}, stream {name!r}", steps[name])
            else:
                values = array_steps(f"{where}, stream {name!r}", spec, steps[name])
            if not length_source:
                length_source, length = name, len(values)
            elif len(values) != length:
                raise DatasetError(
                    f"{where}, stream {name!r}: expected {length} steps (like stream {length_source!r}), "
                    f"found {len(values)}"
                )
            converted[name] = values
        info_row = self._check_info(where, info)

        for name, values in converted.items():
            self._columns[name].append(values)
        for name, value in info_row.items():
            self._info_values[name].append(value)
        self._episode_lengths.append(length)
        self._num_steps += length

    def close(self) -> Dataset:
        """Finish the files, fingerprint them, write ``meta.json`` last, fsync, then rename into ``path``.

        With ``overwrite=True`` an existing dataset at ``path`` is renamed away first and deleted only after
        the new one is in place. On any failure the temp directory is deleted. Returns ``Dataset.open(path)``.
        """
        self._require_open()
        try:
            if self.num_episodes == 0:
                raise DatasetError(f"{self.path}: no episodes were added; a dataset needs at least one")
            for column in self._columns.values():
                column.close()
            write_episode_index(
                self._tmp_dir / "episodes.arrow",
                self._episode_lengths,
                self.episode_info_names,
                self._info_values,
                self._info_kinds,
            )
            stream_names = list(self.streams)
            meta = {
                "format": FORMAT_NAME,
                "schema_version": SCHEMA_VERSION,
                "num_steps": self.num_steps,
                "num_episodes": self.num_episodes,
                "streams": {name: spec.to_json() for name, spec in self.streams.items()},
                "spaces": self.spaces,
                "env": self.env,
                "episode_info": self.episode_info_names,
                "fingerprint": fingerprint(self._tmp_dir, stream_names, fsync=True),
                "created_by": f"clonekit {__version__}",
                "extra": self.extra,
            }
            with open(self._tmp_dir / "meta.json", "w", encoding="utf-8") as f:
                f.write(json.dumps(meta, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
            fsync_dir(self._tmp_dir / "columns")
            fsync_dir(self._tmp_dir)
            # Checked again: something may have appeared at path while the episodes were written.
            _check_target(self.path, self.overwrite)
            install(self._tmp_dir, self.path)
        except BaseException:
            self.abort()
            raise
        self._state = "closed"
        return Dataset.open(self.path)

    def abort(self) -> None:
        """Discard everything written so far (delete the temp directory). Safe to call more than once."""
        if self._state == "closed":
            return
        self._state = "aborted"
        for column in self._columns.values():
            column.discard()
        if self._tmp_dir.exists():
            shutil.rmtree(self._tmp_dir)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
            return
        if self._state == "open":
            self.close()

    def _require_open(self) -> None:
        if self._state != "open":
            raise DatasetError(f"{self.path}: this DatasetWriter is already {self._state}")

    def _check_info(self, where: str, info: Mapping[str, Any] | None) -> dict[str, int | float | str]:
        """Validate one episode's info against the declared names and the types fixed by episode 0."""
        info = dict(info or {})
        declared = set(self.episode_info_names)
        if set(info) != declared:
            raise DatasetError(f"{where}: info keys: expected {sorted(declared)} (episode_info), found {sorted(info)}")
        row: dict[str, int | float | str] = {}
        for name in self.episode_info_names:
            value = info[name]
            if isinstance(value, (bool, np.bool_)):
                raise DatasetError(f"{where}, info {name!r}: expected an int, float or str, found bool {value!r}")
            if isinstance(value, (int, np.integer)):
                row[name] = int(value)
            elif isinstance(value, (float, np.floating)):
                row[name] = float(value)
            elif isinstance(value, str):
                row[name] = str(value)
            else:
                raise DatasetError(
                    f"{where}, info {name!r}: expected an int, float or str, found {type(value).__name__}"
                )
            kind = self._info_kinds.get(name, type(row[name]))
            if kind is float and isinstance(row[name], int):
                row[name] = float(row[name])  # an int in a float column is exact enough to accept
            if not isinstance(row[name], kind):
                raise DatasetError(
                    f"{where}, info {name!r}: expected {kind.__name__} (fixed by episode 0), "
                    f"found {type(row[name]).__name__}"
                )
        for name, value in row.items():
            self._info_kinds.setdefault(name, type(value))
        return row


def _check_target(path: Path, overwrite: bool) -> None:
    """Refuse an existing ``path`` unless ``overwrite``, and never replace something that is not a dataset."""
    if not (path.exists() or path.is_symlink()):
        return
    if not overwrite:
        raise DatasetError(f"{path}: already exists; pass overwrite=True (command line: --overwrite) to replace it")
    if not path.is_dir() or not ((path / "meta.json").is_file() or not any(path.iterdir())):
        raise DatasetError(
            f"{path}: exists and is not a clonekit dataset (no meta.json); refusing to replace it with overwrite=True"
        )


def _space_entry_to_json(path: Path, key: str, value: Any) -> Any:
    """A ``spaces`` entry as JSON: gymnasium spaces are converted, JSON objects are kept as they are."""
    if isinstance(value, gym.spaces.Space):
        try:
            return space_to_json(value)
        except ConfigError as e:
            raise DatasetError(f"{path}: spaces[{key!r}]: {e}") from e
    if value is None:
        return {}
    return json_object(f"{path}: spaces[{key!r}]", value)
