"""The clonekit dataset format: a directory of memory-mapped Arrow columns plus a JSON header.

Layout::

    DATA/
      meta.json               format, schema_version, num_steps, num_episodes, streams, spaces, env,
                              episode_info, fingerprint, created_by, extra
      columns/<stream>.arrow  one uncompressed Arrow IPC file per step stream, one column named "data"
      episodes.arrow          episode index: "start" (int64), "length" (int64), then per-episode info columns

A *stream* is one per-step quantity (``obs``, ``action``, ``thought``, ...) described by a ``StreamSpec``.
Array streams with per-step shape ``()`` are stored as a primitive Arrow column, array streams with a shape
as a ``FixedSizeList`` of the flattened values (the shape lives in ``meta.json``), text as ``large_string``.
Arrow packs booleans into bits, which numpy cannot view, so bool streams are stored as ``uint8`` and viewed
as ``np.bool_`` on read. The writer emits record batches of at most ``rows_per_chunk`` rows, so a column can
have several chunks; the reader keeps one zero-copy numpy view per chunk.

``fingerprint`` is ``"sha256:" + hexdigest`` of the bytes of ``columns/<stream>.arrow`` for every stream
and of ``episodes.arrow``, concatenated in the order of their relative POSIX paths sorted as strings (so
all column files first, by stream name, then ``episodes.arrow``). ``meta.json`` itself is not hashed.

Typical use::

    streams = [array_stream("obs", "uint8", (3, 16, 16)), array_stream("action", "int64"),
               array_stream("reward", "float32"), array_stream("terminated", "bool"),
               array_stream("truncated", "bool"), text_stream("thought")]
    with DatasetWriter("data/maze", streams, env={"id": "Maze-v0"}) as writer:
        writer.add_episode({"obs": obs, "action": actions, ...})
    dataset = Dataset.open("data/maze")
    batch = dataset.sample(256, generator)  # {"obs": (256, 3, 16, 16) uint8 tensor, ...}
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import pyarrow as pa
import torch

from clonekit import __version__
from clonekit.data.spaces import space_from_json, space_to_json
from clonekit.errors import ConfigError, DatasetError
from clonekit.io import fsync_dir

FORMAT_NAME = "clonekit.dataset"
SCHEMA_VERSION = 1
REQUIRED_STREAMS = ("obs", "action", "reward", "terminated", "truncated")
DEFAULT_ROWS_PER_CHUNK = 65536

ARRAY_DTYPES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float32",
    "float64",
)
# Keys every meta.json has (the writer writes exactly these).
META_KEYS = (
    "format",
    "schema_version",
    "num_steps",
    "num_episodes",
    "streams",
    "spaces",
    "env",
    "episode_info",
    "fingerprint",
    "created_by",
    "extra",
)
# Float streams that models consume directly; a NaN or inf in them silently poisons training.
FINITE_STREAMS = ("obs", "action", "reward", "expert_action")

# Largest per-step shape: an Arrow fixed-size list holds at most 2**31 - 1 values, numpy at most 32 dims.
MAX_DIMS = 32
MAX_STEP_ELEMENTS = 2**31 - 1
# Rows scanned at once by ``Dataset.check_values`` are capped at about this many elements (bounded memory).
_VALUE_SCAN_ELEMENTS = 1 << 22

_STREAM_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
_EPISODE_INDEX_COLUMNS = ("start", "length")
_HASH_BLOCK_BYTES = 1 << 20
_FINGERPRINT = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class StreamSpec:
    """What one per-step stream holds.

    ``kind="array"``: each step is a numpy array of ``dtype`` (one of ``ARRAY_DTYPES``) and ``shape``
    (``()`` for scalars); the whole stream reads back as ``(num_steps, *shape)``.
    ``kind="text"``: each step is a ``str``; ``dtype`` is ``"string"`` and ``shape`` is ``()``.
    """

    name: str
    kind: Literal["array", "text"]
    dtype: str
    shape: tuple[int, ...]
    description: str = ""

    def __post_init__(self) -> None:
        where = f"stream {self.name!r}"
        if not isinstance(self.name, str) or not _STREAM_NAME.match(self.name):
            raise DatasetError(
                f"stream name {_short_repr(self.name)}: expected 1-100 characters from [A-Za-z0-9_.-], "
                "not starting with '.' or '-'"
            )
        if self.kind not in ("array", "text"):
            raise DatasetError(f"{where} field 'kind': expected 'array' or 'text', found {_short_repr(self.kind)}")
        if not isinstance(self.shape, tuple) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in self.shape
        ):
            raise DatasetError(
                f"{where} field 'shape': expected a tuple of positive ints, found {_short_repr(self.shape)}"
            )
        # Arrow stores a shaped step as one fixed-size list, whose size is an int32; numpy allows 32 dims.
        if len(self.shape) > MAX_DIMS or math.prod(self.shape) > MAX_STEP_ELEMENTS:
            raise DatasetError(
                f"{where} field 'shape': expected at most {MAX_DIMS} dims and {MAX_STEP_ELEMENTS} elements per "
                f"step, found {_short_repr(self.shape)}"
            )
        if self.kind == "array" and self.dtype not in ARRAY_DTYPES:
            raise DatasetError(
                f"{where} field 'dtype': expected one of {', '.join(ARRAY_DTYPES)}, found {_short_repr(self.dtype)}"
            )
        if self.kind == "text" and (self.dtype != "string" or self.shape != ()):
            raise DatasetError(
                f"{where}: a text stream has dtype 'string' and shape (), "
                f"found dtype {_short_repr(self.dtype)} and shape {self.shape}"
            )
        if not isinstance(self.description, str):
            raise DatasetError(f"{where} field 'description': expected a str, found {_short_repr(self.description)}")

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored under ``meta.json["streams"][name]`` (the name is the key, not a field)."""
        return {
            "kind": self.kind,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "description": self.description,
        }

    @classmethod
    def from_json(cls, name: str, d: Any) -> StreamSpec:
        """Parse and validate ``meta.json["streams"][name]``; ``DatasetError`` naming the bad field."""
        if not isinstance(d, dict):
            raise DatasetError(f"stream {name!r}: expected a JSON object, found {type(d).__name__}")
        for field in ("kind", "dtype", "shape"):
            if field not in d:
                raise DatasetError(f"stream {name!r}: missing field {field!r}")
        shape = d["shape"]
        if not isinstance(shape, list):
            raise DatasetError(
                f"stream {name!r} field 'shape': expected a list of positive ints, found {_short_repr(shape)}"
            )
        return cls(
            name=name,
            kind=d["kind"],
            dtype=d["dtype"],
            shape=tuple(shape),
            description=d.get("description", ""),
        )

    def describe(self) -> str:
        """Short human form for error messages, e.g. ``"array uint8 (3, 16, 16)"`` or ``"text"``."""
        return "text" if self.kind == "text" else f"array {self.dtype} {self.shape}"


def array_stream(name: str, dtype: str | np.dtype, shape: tuple[int, ...] = (), description: str = "") -> StreamSpec:
    """Spec of an array stream; each step is an array of ``dtype`` and ``shape`` (``()`` for a scalar)."""
    try:
        dtype_name = np.dtype(dtype).name
    except TypeError as e:
        raise DatasetError(f"stream {name!r} field 'dtype': {dtype!r} is not a numpy dtype") from e
    return StreamSpec(name, "array", dtype_name, tuple(int(n) for n in shape), description)


def text_stream(name: str, description: str = "") -> StreamSpec:
    """Spec of a text stream; each step is a ``str`` (possibly empty)."""
    return StreamSpec(name, "text", "string", (), description)


def _check_stream_set(streams: Mapping[str, StreamSpec]) -> None:
    """Check that the required streams exist and that well-known streams have the type everyone expects."""
    missing = [name for name in REQUIRED_STREAMS if name not in streams]
    if missing:
        raise DatasetError(
            f"streams: missing required stream(s) {', '.join(repr(n) for n in missing)} (found: {', '.join(streams)})"
        )
    expected = {
        "reward": array_stream("reward", "float32"),
        "terminated": array_stream("terminated", "bool"),
        "truncated": array_stream("truncated", "bool"),
        "intervention": array_stream("intervention", "bool"),
        "expert_action": streams["action"],
    }
    for name, want in expected.items():
        spec = streams.get(name)
        if spec is not None and (spec.kind, spec.dtype, spec.shape) != (want.kind, want.dtype, want.shape):
            raise DatasetError(f"stream {name!r}: expected {want.describe()}, found {spec.describe()}")
    for name in ("obs", "action", "procedure", "goal"):
        spec = streams.get(name)
        if spec is not None and spec.kind != "array":
            raise DatasetError(f"stream {name!r}: expected an array stream, found {spec.describe()}")
    thought = streams.get("thought")
    if thought is not None and thought.kind != "text":
        raise DatasetError(f"stream 'thought': expected text, found {thought.describe()}")
    for name in ("demonstrator", "style"):
        spec = streams.get(name)
        if spec is not None and spec.kind == "array" and (spec.dtype, spec.shape) != ("int64", ()):
            raise DatasetError(f"stream {name!r}: expected text or array int64 (), found {spec.describe()}")


class DatasetWriter:
    """Write a dataset episode by episode, atomically.

    Everything goes into a hidden temp directory next to ``path`` (``.<name>.tmp-<pid>-<random>``), and only
    ``close()`` renames it into place, so a crash or an exception never leaves a half-written dataset at
    ``path``. Columns are streamed to disk: at most ``rows_per_chunk`` rows per stream are buffered.

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
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        if isinstance(rows_per_chunk, bool) or not isinstance(rows_per_chunk, int) or rows_per_chunk < 1:
            raise DatasetError(f"{self.path}: rows_per_chunk: expected an int >= 1, found {rows_per_chunk!r}")
        self.rows_per_chunk = rows_per_chunk

        self.streams: dict[str, StreamSpec] = {}
        for spec in streams:
            if not isinstance(spec, StreamSpec):
                raise DatasetError(f"{self.path}: streams: expected StreamSpec objects, found {spec!r}")
            if spec.name in self.streams:
                raise DatasetError(f"{self.path}: streams: stream {spec.name!r} is declared twice")
            self.streams[spec.name] = spec
        _with_prefix(f"{self.path}", _check_stream_set, self.streams)

        self.episode_info_names = list(episode_info)
        for name in self.episode_info_names:
            if not isinstance(name, str) or not name or name in _EPISODE_INDEX_COLUMNS:
                raise DatasetError(
                    f"{self.path}: episode_info: expected non-empty names other than 'start' and 'length', "
                    f"found {name!r}"
                )
        if len(set(self.episode_info_names)) != len(self.episode_info_names):
            raise DatasetError(f"{self.path}: episode_info: names must be unique, found {self.episode_info_names}")

        self.spaces = {key: _space_entry_to_json(self.path, key, value) for key, value in (spaces or {}).items()}
        self.env = _json_object(self.path, "env", env)
        self.extra = _json_object(self.path, "extra", extra)

        _check_target(self.path, overwrite)
        self._tmp_dir = self.path.parent / f".{self.path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        self._state: Literal["open", "closed", "aborted"] = "open"
        self._num_steps = 0
        self._episode_lengths: list[int] = []
        self._info_values: dict[str, list[int | float | str]] = {name: [] for name in self.episode_info_names}
        self._info_kinds: dict[str, type] = {}
        self._columns: dict[str, _ColumnWriter] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        (self._tmp_dir / "columns").mkdir(parents=True)
        try:
            for name, spec in self.streams.items():
                file = self._tmp_dir / "columns" / f"{name}.arrow"
                self._columns[name] = _ColumnWriter(file, spec, rows_per_chunk)
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
                values: np.ndarray | list[str] = _text_steps(f"{where}, stream {name!r}", steps[name])
            else:
                values = _array_steps(f"{where}, stream {name!r}", spec, steps[name])
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
            self._write_episode_index()
            stream_names = list(self.streams)
            fingerprint = _fingerprint(self._tmp_dir, stream_names, fsync=True)
            meta = {
                "format": FORMAT_NAME,
                "schema_version": SCHEMA_VERSION,
                "num_steps": self.num_steps,
                "num_episodes": self.num_episodes,
                "streams": {name: spec.to_json() for name, spec in self.streams.items()},
                "spaces": self.spaces,
                "env": self.env,
                "episode_info": self.episode_info_names,
                "fingerprint": fingerprint,
                "created_by": f"clonekit {__version__}",
                "extra": self.extra,
            }
            with open(self._tmp_dir / "meta.json", "w", encoding="utf-8") as f:
                f.write(json.dumps(meta, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
            fsync_dir(self._tmp_dir / "columns")
            fsync_dir(self._tmp_dir)
            self._install()
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

    def _write_episode_index(self) -> None:
        lengths = np.asarray(self._episode_lengths, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        arrays = [pa.array(starts, type=pa.int64()), pa.array(lengths, type=pa.int64())]
        fields = [
            pa.field("start", pa.int64(), nullable=False),
            pa.field("length", pa.int64(), nullable=False),
        ]
        for name in self.episode_info_names:
            arrow_type = _INFO_ARROW_TYPES[self._info_kinds[name]]
            arrays.append(pa.array(self._info_values[name], type=arrow_type))
            fields.append(pa.field(name, arrow_type, nullable=False))
        schema = pa.schema(fields)
        with (
            pa.OSFile(str(self._tmp_dir / "episodes.arrow"), "wb") as sink,
            pa.ipc.new_file(sink, schema) as out,
        ):
            out.write_batch(pa.record_batch(arrays, schema=schema))

    def _install(self) -> None:
        """Rename the finished temp directory to ``path``, replacing an old dataset if allowed."""
        _check_target(self.path, self.overwrite)
        if not (self.path.exists() or self.path.is_symlink()):
            os.rename(self._tmp_dir, self.path)
            fsync_dir(self.path.parent)
            return
        old = self.path.parent / f".{self.path.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
        os.rename(self.path, old)
        try:
            os.rename(self._tmp_dir, self.path)
        except BaseException:
            os.rename(old, self.path)  # put the previous dataset back before reporting the failure
            raise
        fsync_dir(self.path.parent)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()


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
        self.meta = _read_meta(meta_path)
        self.num_steps = self.meta["num_steps"]
        self.num_episodes = self.meta["num_episodes"]
        self.fingerprint = self.meta["fingerprint"]
        self.env = self.meta["env"]
        self.spaces = self.meta["spaces"]
        self.extra = self.meta["extra"]
        self.streams = {}
        for name, spec_json in self.meta["streams"].items():
            self.streams[name] = _with_prefix(f"{meta_path}: streams", StreamSpec.from_json, name, spec_json)
        _with_prefix(str(meta_path), _check_stream_set, self.streams)
        self._gym_spaces = {name: _space_from_meta(meta_path, name, d) for name, d in self.spaces.items()}

        self._columns: dict[str, _ArrayColumn | _TextColumn] = {
            name: _read_column(self.path / "columns" / f"{name}.arrow", spec, self.num_steps)
            for name, spec in self.streams.items()
        }
        self.episode_starts, self.episode_lengths, self._episode_info = _read_episode_index(
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
        multi-chunk one is concatenated, which copies it.
        """
        return self._column(name).full()

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
                groups[key] = list(_group_by_chunk(column.starts, index))
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
        raise DatasetError(
            f"{self.path}: {needed_by} needs {what} {listed}, which this dataset does not have "
            f"(streams: {', '.join(self.streams)})"
        )

    def verify(self) -> None:
        """Full check: re-hash the files against ``meta.json``, then scan every value (``check_values``).

        ``DatasetError`` if the files were changed since they were written or hold a value no writer
        would have accepted. Reads the whole dataset once; ``open`` alone checks only the structure.
        """
        actual = _fingerprint(self.path, list(self.streams), fsync=False)
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
            assert isinstance(column, _ArrayColumn)
            block = max(1, _VALUE_SCAN_ELEMENTS // max(1, math.prod(spec.shape)))
            for start in range(0, self.num_steps, block):
                values = column.slice(start, min(start + block, self.num_steps))
                problem = _bad_value(spec, values, action_space if name in ("action", "expert_action") else None)
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

    def _column(self, name: str) -> _ArrayColumn | _TextColumn:
        self._spec(name)
        return self._columns[name]


# ---------------------------------------------------------------------------------------------------------
# Columns in memory: a list of per-chunk pieces plus the step index at which each chunk starts.


class _ArrayColumn:
    """An array stream as zero-copy numpy views ``(chunk_rows, *shape)``, one per Arrow record batch."""

    def __init__(self, chunks: list[np.ndarray], empty: np.ndarray) -> None:
        self.chunks = chunks
        self.empty = empty  # (0, *shape) of the right dtype, for columns and slices without rows
        # (num_chunks + 1,): chunk c holds steps [starts[c], starts[c + 1]).
        self.starts = np.cumsum([0] + [len(chunk) for chunk in chunks], dtype=np.int64)

    def full(self) -> np.ndarray:
        if len(self.chunks) == 1:
            return self.chunks[0]
        return np.concatenate(self.chunks) if self.chunks else self.empty

    def take(self, index: np.ndarray, groups: list[tuple[int, np.ndarray, np.ndarray]] | None) -> np.ndarray:
        """Rows ``index``; ``groups`` is ``_group_by_chunk(self.starts, index)`` when there are several chunks."""
        if len(self.chunks) == 1:
            return self.chunks[0][index]
        out = np.empty((len(index), *self.empty.shape[1:]), dtype=self.empty.dtype)
        for chunk, positions, local in groups if groups is not None else _group_by_chunk(self.starts, index):
            out[positions] = self.chunks[chunk][local]
        return out

    def slice(self, start: int, stop: int) -> np.ndarray:
        pieces = [self.chunks[c][lo:hi] for c, lo, hi in _chunk_ranges(self.starts, start, stop)]
        if len(pieces) == 1:
            return pieces[0]
        return np.concatenate(pieces) if pieces else self.empty


class _TextColumn:
    """A text stream as its Arrow ``large_string`` chunks (strings are decoded only when asked for)."""

    def __init__(self, chunks: list[pa.Array]) -> None:
        self.chunks = chunks
        self.starts = np.cumsum([0] + [len(chunk) for chunk in chunks], dtype=np.int64)

    def full(self) -> list[str]:
        return [text for chunk in self.chunks for text in chunk.to_pylist()]

    def take(self, index: np.ndarray, groups: list[tuple[int, np.ndarray, np.ndarray]] | None) -> np.ndarray:
        out = np.empty(len(index), dtype=object)
        for chunk, positions, local in groups if groups is not None else _group_by_chunk(self.starts, index):
            out[positions] = self.chunks[chunk].take(pa.array(local)).to_numpy(zero_copy_only=False)
        return out

    def slice(self, start: int, stop: int) -> list[str]:
        return [
            text
            for c, lo, hi in _chunk_ranges(self.starts, start, stop)
            for text in self.chunks[c].slice(lo, hi - lo).to_pylist()
        ]


def _group_by_chunk(starts: np.ndarray, index: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Split step indices by chunk: yields ``(chunk, positions in index, row indices within the chunk)``.

    One argsort groups all indices, so the work per call is vectorized and the Python loop runs once per
    chunk touched, never once per index.
    """
    chunk_of = np.searchsorted(starts, index, side="right") - 1
    order = np.argsort(chunk_of, kind="stable")
    chunks, first = np.unique(chunk_of[order], return_index=True)
    bounds = np.append(first, len(order))
    for chunk, lo, hi in zip(chunks.tolist(), bounds[:-1], bounds[1:], strict=True):
        positions = order[lo:hi]
        yield chunk, positions, index[positions] - starts[chunk]


def _chunk_ranges(starts: np.ndarray, start: int, stop: int) -> Iterator[tuple[int, int, int]]:
    """``(chunk, lo, hi)`` row ranges within chunks covering steps ``[start, stop)``, in order."""
    first = int(np.searchsorted(starts, start, side="right")) - 1
    for chunk in range(max(first, 0), len(starts) - 1):
        chunk_start, chunk_stop = int(starts[chunk]), int(starts[chunk + 1])
        if chunk_start >= stop:
            break
        yield chunk, max(start, chunk_start) - chunk_start, min(stop, chunk_stop) - chunk_start


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


# ---------------------------------------------------------------------------------------------------------
# Writing.

_INFO_ARROW_TYPES: dict[type, Any] = {int: pa.int64(), float: pa.float64(), str: pa.large_string()}


class _ColumnWriter:
    """Streams one column to an Arrow IPC file in record batches of exactly ``rows_per_chunk`` rows."""

    def __init__(self, file: Path, spec: StreamSpec, rows_per_chunk: int) -> None:
        self.spec = spec
        self.rows_per_chunk = rows_per_chunk
        self.schema = pa.schema([pa.field("data", _arrow_type(spec), nullable=False)])
        self.pending: list[Any] = []  # numpy arrays in storage dtype, or lists of str
        self.pending_rows = 0
        self.sink = pa.OSFile(str(file), "wb")
        self.writer = pa.ipc.new_file(self.sink, self.schema)

    def append(self, values: np.ndarray | list[str]) -> None:
        self.pending.append(values)
        self.pending_rows += len(values)
        if self.pending_rows >= self.rows_per_chunk:
            self._flush(final=False)

    def close(self) -> None:
        self._flush(final=True)
        self.writer.close()
        self.sink.close()

    def discard(self) -> None:
        """Release the file handles without finishing the file (the caller deletes it)."""
        self.pending = []
        if not self.sink.closed:
            self.sink.close()

    def _flush(self, final: bool) -> None:
        if self.pending_rows == 0:
            return
        if self.spec.kind == "text":
            rows: Any = [text for piece in self.pending for text in piece]
        else:
            rows = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending)
        written = 0
        while self.pending_rows - written >= self.rows_per_chunk or (final and written < self.pending_rows):
            size = min(self.rows_per_chunk, self.pending_rows - written)
            self.writer.write_batch(
                pa.record_batch([self._to_arrow(rows[written : written + size])], schema=self.schema)
            )
            written += size
        # Copy the remainder so the big concatenated buffer can be freed.
        remainder = rows[written:]
        self.pending = [remainder if isinstance(remainder, list) else remainder.copy()] if len(remainder) else []
        self.pending_rows -= written

    def _to_arrow(self, rows: Any) -> pa.Array:
        if self.spec.kind == "text":
            return pa.array(rows, type=pa.large_string())
        values = pa.array(np.ascontiguousarray(rows).reshape(-1))
        if self.spec.shape == ():
            return values
        return pa.FixedSizeListArray.from_arrays(values, math.prod(self.spec.shape))


def _array_steps(where: str, spec: StreamSpec, value: Any) -> np.ndarray:
    """Check one episode of an array stream and convert it to the storage dtype, ``(T, *shape)``."""
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise DatasetError(f"{where}: expected numeric or bool values, found dtype {array.dtype}")
    if array.ndim != 1 + len(spec.shape) or array.shape[1:] != spec.shape:
        expected = ", ".join(["T", *map(str, spec.shape)])
        raise DatasetError(f"{where}: expected shape ({expected}), found {array.shape}")
    if len(array) == 0:
        raise DatasetError(f"{where}: expected at least 1 step, found 0")
    target = np.dtype(spec.dtype)
    if not np.can_cast(array.dtype, target, "same_kind"):
        raise DatasetError(f"{where}: expected values castable to {target} (same kind), found dtype {array.dtype}")
    if target.kind in "iu" and not np.can_cast(array.dtype, target, "safe"):
        info = np.iinfo(target)
        low, high = array.min(), array.max()
        if low < info.min or high > info.max:
            raise DatasetError(
                f"{where}: expected values in [{info.min}, {info.max}] for {target}, found range [{low}, {high}]"
            )
    stored = np.ascontiguousarray(array, dtype=target)
    if target.kind == "f" and spec.name in FINITE_STREAMS and not np.isfinite(stored).all():
        bad = np.argwhere(~np.isfinite(stored))[0]
        raise DatasetError(f"{where}: expected finite values, found {stored[tuple(bad)]} at step {bad[0]}")
    return stored.view(np.uint8) if target == np.bool_ else stored


def _space_from_meta(meta_path: Path, name: str, d: Any) -> gym.spaces.Space:
    try:
        return space_from_json(d)
    except ConfigError as e:
        raise DatasetError(f"{meta_path}: spaces[{name!r}]: {e}") from e


def _bad_value(
    spec: StreamSpec, values: np.ndarray, action_space: gym.spaces.Space | None
) -> tuple[int, Any, str] | None:
    """First bad row of ``values`` ``(rows, *shape)`` as ``(row, value found, what was expected)``, or None."""
    rows = values.reshape(len(values), -1)
    if spec.dtype == "bool":
        raw = rows.view(np.uint8)
        bad = raw > 1
        if bad.any():
            row, col = np.argwhere(bad)[0]
            return int(row), int(raw[row, col]), "expected 0 or 1 (bool)"
        return None
    if rows.dtype.kind == "f" and spec.name in FINITE_STREAMS:
        bad = ~np.isfinite(rows)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            return int(row), rows[row, col], "expected finite values"
    if isinstance(action_space, gym.spaces.Discrete):
        low = int(action_space.start)
        high = low + int(action_space.n) - 1
        bad = (rows < low) | (rows > high)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            found = rows[row, col]
            return int(row), found, f"expected values in [{low}, {high}] (meta.json spaces['action'] Discrete)"
    elif isinstance(action_space, gym.spaces.Box) and action_space.shape == spec.shape:
        box_low = action_space.low.reshape(1, -1)
        box_high = action_space.high.reshape(1, -1)
        bad = (rows < box_low) | (rows > box_high)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            return (
                int(row),
                rows[row, col],
                f"expected values within the bounds of meta.json spaces['action'] "
                f"([{box_low[0, col]}, {box_high[0, col]}] at element {col})",
            )
    return None


def _text_steps(where: str, value: Any) -> list[str]:
    """Check one episode of a text stream: a sequence (not a single str) of ``T >= 1`` str."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise DatasetError(f"{where}: expected a sequence of str (one per step), found {type(value).__name__}")
    texts = list(value)
    for step, text in enumerate(texts):
        if not isinstance(text, str):
            raise DatasetError(f"{where}: expected str at every step, found {type(text).__name__} at step {step}")
    if not texts:
        raise DatasetError(f"{where}: expected at least 1 step, found 0")
    return [str(text) for text in texts]


def _check_target(path: Path, overwrite: bool) -> None:
    """Refuse an existing ``path`` unless ``overwrite``, and never replace something that is not a dataset."""
    if not (path.exists() or path.is_symlink()):
        return
    if not overwrite:
        raise DatasetError(f"{path}: already exists; pass overwrite=True to replace it")
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
    return _json_object(path, f"spaces[{key!r}]", value)


def _json_object(path: Path, field: str, value: Mapping[str, Any] | None) -> dict[str, Any]:
    """``value`` as a plain dict after checking it survives a JSON round trip."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise DatasetError(f"{path}: {field}: expected a JSON object (mapping), found {type(value).__name__}")
    try:
        return dict(json.loads(json.dumps(dict(value), allow_nan=False)))
    except (TypeError, ValueError) as e:
        raise DatasetError(f"{path}: {field}: not JSON-serializable: {_one_line(e)}") from e


# ---------------------------------------------------------------------------------------------------------
# Reading and validating.


# Readers for older schema versions: UPGRADES[v] turns a version-v meta.json (already parsed) into version v + 1.
# They run in memory when a dataset is opened; the files on disk are never rewritten. The column and episode
# index files must stay readable as they are, so a schema change that touches them ships a converter instead.
UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def _upgrade_meta(meta_path: Path, meta: dict[str, Any], version: int) -> dict[str, Any]:
    """Bring a parsed meta.json of ``version`` up to ``SCHEMA_VERSION`` through ``UPGRADES``."""
    while version < SCHEMA_VERSION:
        upgrade = UPGRADES.get(version)
        if upgrade is None:
            raise DatasetError(
                f"{meta_path}: schema_version {version} is no longer readable by this clonekit "
                f"(it reads {min([*UPGRADES, SCHEMA_VERSION])} to {SCHEMA_VERSION})"
            )
        try:
            meta = upgrade(dict(meta))
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetError(
                f"{meta_path}: cannot upgrade schema_version {version} to {version + 1}: {_one_line(e)}"
            ) from e
        version += 1
        meta["schema_version"] = version
    return meta


def _read_meta(meta_path: Path) -> dict[str, Any]:
    """Load ``meta.json`` and check its header fields (streams are checked by the caller)."""
    if not meta_path.is_file():
        raise DatasetError(f"{meta_path}: missing; not a clonekit dataset directory")
    try:
        text = meta_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{meta_path}: cannot read it as UTF-8 text: {_one_line(e)}") from e
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as e:
        # ValueError covers JSONDecodeError and integers too long to parse; RecursionError, absurd nesting.
        raise DatasetError(f"{meta_path}: not valid JSON: {_one_line(e)}") from e
    if not isinstance(meta, dict):
        raise DatasetError(f"{meta_path}: expected a JSON object, found {type(meta).__name__}")
    if meta.get("format") != FORMAT_NAME:
        raise DatasetError(f"{meta_path}: format: expected {FORMAT_NAME!r}, found {_short_repr(meta.get('format'))}")
    version = meta.get("schema_version")
    if "schema_version" not in meta:
        raise DatasetError(f"{meta_path}: missing key 'schema_version'")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise DatasetError(f"{meta_path}: schema_version: expected a positive int, found {_short_repr(version)}")
    if version > SCHEMA_VERSION:
        raise DatasetError(
            f"{meta_path}: schema_version {version} is newer than this clonekit supports ({SCHEMA_VERSION}); "
            "upgrade clonekit"
        )
    meta = _upgrade_meta(meta_path, meta, version)
    missing = [key for key in META_KEYS if key not in meta]
    if missing:
        raise DatasetError(f"{meta_path}: missing key(s) {', '.join(repr(k) for k in missing)}")
    for key in ("num_steps", "num_episodes"):
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DatasetError(f"{meta_path}: {key}: expected an int >= 1, found {_short_repr(value)}")
    for key in ("streams", "spaces", "env", "extra"):
        if not isinstance(meta[key], dict):
            raise DatasetError(f"{meta_path}: {key}: expected a JSON object, found {_short_repr(meta[key])}")
    info = meta["episode_info"]
    if not isinstance(info, list) or not all(isinstance(name, str) for name in info) or len(set(info)) != len(info):
        raise DatasetError(f"{meta_path}: episode_info: expected a list of unique names, found {_short_repr(info)}")
    if not isinstance(meta["fingerprint"], str) or not _FINGERPRINT.match(meta["fingerprint"]):
        raise DatasetError(
            f"{meta_path}: fingerprint: expected 'sha256:<64 hex digits>', found {_short_repr(meta['fingerprint'])}"
        )
    if not isinstance(meta["created_by"], str):
        raise DatasetError(f"{meta_path}: created_by: expected a str, found {_short_repr(meta['created_by'])}")
    return meta


def _read_arrow_file(file: Path) -> tuple[pa.Schema, list[pa.RecordBatch]]:
    """Memory-map an Arrow IPC file read-only and return its schema and record batches.

    The batches' buffers point into the mapping; Arrow keeps the mapping alive for as long as any buffer
    (or numpy view of one) exists, so the file handle itself can be closed here.
    """
    if not file.is_file():
        raise DatasetError(f"{file}: missing; expected an Arrow IPC file")
    try:
        source = pa.memory_map(str(file), "r")
        try:
            reader = pa.ipc.open_file(source)
            schema = reader.schema
            batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
            for batch in batches:
                # Full validation walks every string offset (cheap for text, and a bad offset would otherwise
                # crash later); numeric columns only need the structural check.
                batch.validate(full=any(pa.types.is_large_string(t) or pa.types.is_string(t) for t in schema.types))
        finally:
            source.close()
    except (pa.ArrowException, OSError) as e:
        raise DatasetError(f"{file}: not a readable Arrow IPC file: {_one_line(e)}") from e
    return schema, batches


def _read_column(file: Path, spec: StreamSpec, num_steps: int) -> _ArrayColumn | _TextColumn:
    """Map one column file and check its Arrow type, nulls and row count against the spec."""
    schema, batches = _read_arrow_file(file)
    expected = _arrow_type(spec)
    if schema.names != ["data"]:
        raise DatasetError(f"{file}: expected one column named 'data', found columns {schema.names}")
    found = schema.field("data").type
    # Compare lists by size and value type only: the child field's name ("item", "element") is immaterial.
    same_list = (
        pa.types.is_fixed_size_list(found)
        and pa.types.is_fixed_size_list(expected)
        and (found.list_size, found.value_type) == (expected.list_size, expected.value_type)
    )
    if found != expected and not same_list:
        raise DatasetError(
            f"{file}: expected Arrow type {expected} for stream {spec.name!r} ({spec.describe()}), found {found}"
        )
    rows = sum(batch.num_rows for batch in batches)
    if rows != num_steps:
        raise DatasetError(f"{file}: expected {num_steps} rows (meta.json num_steps), found {rows}")
    arrays = [batch.column(0) for batch in batches if batch.num_rows > 0]
    for array in arrays:
        nulls = array.null_count + (array.values.null_count if spec.shape else 0)
        if nulls:
            raise DatasetError(f"{file}: expected no nulls, found {nulls}")
    if spec.kind == "text":
        return _TextColumn(arrays)

    dtype = np.dtype(spec.dtype)
    chunks = []
    for array in arrays:
        try:
            if spec.shape:
                # .values ignores a parent offset, so slice the children explicitly (offset is 0 in our files).
                size = math.prod(spec.shape)
                flat = array.values.slice(array.offset * size, len(array) * size)
            else:
                flat = array
            values = flat.to_numpy(zero_copy_only=True).reshape(len(array), *spec.shape)
        except (pa.ArrowException, ValueError) as e:
            # Arrow's structural validation passed, so this is a layout numpy cannot view without a copy.
            raise DatasetError(f"{file}: cannot map stream {spec.name!r} ({spec.describe()}): {_one_line(e)}") from e
        chunks.append(values.view(np.bool_) if dtype == np.bool_ else values)
    return _ArrayColumn(chunks, np.empty((0, *spec.shape), dtype=dtype))


def _read_episode_index(file: Path, meta: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Read ``episodes.arrow`` and check that episodes tile ``[0, num_steps)`` contiguously and in order."""
    schema, batches = _read_arrow_file(file)
    info_names = list(meta["episode_info"])
    expected_names = [*_EPISODE_INDEX_COLUMNS, *info_names]
    if sorted(schema.names) != sorted(expected_names):
        raise DatasetError(
            f"{file}: expected columns {expected_names} (start, length + meta.json episode_info), found {schema.names}"
        )
    table = pa.Table.from_batches(batches, schema=schema)
    if table.num_rows != meta["num_episodes"]:
        raise DatasetError(
            f"{file}: expected {meta['num_episodes']} rows (meta.json num_episodes), found {table.num_rows}"
        )
    for name in expected_names:
        found = schema.field(name).type
        allowed = [pa.int64()] if name in _EPISODE_INDEX_COLUMNS else list(_INFO_ARROW_TYPES.values())
        if found not in allowed:
            raise DatasetError(
                f"{file}: column {name!r}: expected Arrow type {' or '.join(map(str, allowed))}, found {found}"
            )
        if table.column(name).null_count:
            raise DatasetError(f"{file}: column {name!r}: expected no nulls, found {table.column(name).null_count}")

    starts = table.column("start").to_numpy().astype(np.int64)
    lengths = table.column("length").to_numpy().astype(np.int64)
    # Bounding each length by num_steps first keeps the cumulative sums below from overflowing int64.
    wrong_length = np.flatnonzero((lengths < 1) | (lengths > meta["num_steps"]))
    if wrong_length.size:
        i = int(wrong_length[0])
        raise DatasetError(
            f"{file}: episode {i}: expected length in [1, {meta['num_steps']}] (meta.json num_steps), "
            f"found {lengths[i]}"
        )
    expected_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    wrong = np.flatnonzero(starts != expected_starts)
    if wrong.size:
        i = int(wrong[0])
        because = "episodes start at step 0" if i == 0 else f"start[{i - 1}] + length[{i - 1}]"
        raise DatasetError(f"{file}: episode {i}: expected start {expected_starts[i]} ({because}), found {starts[i]}")
    if int(lengths.sum()) != meta["num_steps"]:
        raise DatasetError(
            f"{file}: expected episode lengths summing to {meta['num_steps']} (meta.json num_steps), "
            f"found {int(lengths.sum())}"
        )

    info = {name: table.column(name).to_numpy() for name in info_names}
    for array in (starts, lengths, *info.values()):
        array.flags.writeable = False
    return starts, lengths, info


def _arrow_type(spec: StreamSpec) -> Any:
    """The Arrow type a stream is stored as (bool as uint8, shaped arrays as a fixed-size list)."""
    if spec.kind == "text":
        return pa.large_string()
    value_type = pa.uint8() if spec.dtype == "bool" else pa.from_numpy_dtype(np.dtype(spec.dtype))
    if spec.shape == ():
        return value_type
    return pa.list_(value_type, math.prod(spec.shape))


def _fingerprint(root: Path, stream_names: Iterable[str], *, fsync: bool) -> str:
    """sha256 over the column files and ``episodes.arrow``, sorted by relative path, read in 1 MiB blocks.

    With ``fsync=True`` each file is also flushed to stable storage while it is open for hashing.
    """
    relative = sorted([f"columns/{name}.arrow" for name in stream_names] + ["episodes.arrow"])
    digest = hashlib.sha256()
    for name in relative:
        try:
            with open(root / name, "rb") as f:
                while block := f.read(_HASH_BLOCK_BYTES):
                    digest.update(block)
                if fsync:
                    os.fsync(f.fileno())
        except OSError as e:
            raise DatasetError(f"{root / name}: cannot read for the fingerprint: {_one_line(e)}") from e
    return f"sha256:{digest.hexdigest()}"


def _with_prefix(prefix: str, check: Any, *args: Any) -> Any:
    """Call ``check(*args)``, re-raising its ``DatasetError`` with ``prefix`` (the file or owner) in front."""
    try:
        return check(*args)
    except DatasetError as e:
        raise DatasetError(f"{prefix}: {e}") from e


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _short_repr(value: Any, limit: int = 120) -> str:
    """``repr(value)`` cut to ``limit`` characters, so junk from a file cannot flood an error line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
