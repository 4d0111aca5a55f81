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

This module holds the schema: the format name and version, stream specs and the rules on well-known streams,
the reading and upgrading of ``meta.json``, and the fingerprint. The rest of the format lives next to it:
``clonekit.data.columns`` (the Arrow files), ``clonekit.data.validate`` (value checks),
``clonekit.data.writer`` (``DatasetWriter``) and ``clonekit.data.dataset`` (``Dataset``), both also importable
from here and from ``clonekit.data``.

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
import importlib
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from clonekit.data.messages import one_line, short_repr
from clonekit.errors import DatasetError

if TYPE_CHECKING:
    from clonekit.data.dataset import Dataset
    from clonekit.data.writer import DEFAULT_ROWS_PER_CHUNK, DatasetWriter

FORMAT_NAME = "clonekit.dataset"
SCHEMA_VERSION = 1
REQUIRED_STREAMS = ("obs", "action", "reward", "terminated", "truncated")

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

# The first columns of episodes.arrow; per-episode info columns follow under their own names.
EPISODE_INDEX_COLUMNS = ("start", "length")

_STREAM_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
_HASH_BLOCK_BYTES = 1 << 20
_FINGERPRINT = re.compile(r"^sha256:[0-9a-f]{64}$")

# Names that lived in this module before the format was split into one module per concern; still importable
# from here. Imported on first use, because those modules import this one.
_MOVED = {
    "Dataset": "clonekit.data.dataset",
    "DatasetWriter": "clonekit.data.writer",
    "DEFAULT_ROWS_PER_CHUNK": "clonekit.data.writer",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
                f"stream name {short_repr(self.name)}: expected 1-100 characters from [A-Za-z0-9_.-], "
                "not starting with '.' or '-'"
            )
        if self.kind not in ("array", "text"):
            raise DatasetError(f"{where} field 'kind': expected 'array' or 'text', found {short_repr(self.kind)}")
        if not isinstance(self.shape, tuple) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in self.shape
        ):
            raise DatasetError(
                f"{where} field 'shape': expected a tuple of positive ints, found {short_repr(self.shape)}"
            )
        # Arrow stores a shaped step as one fixed-size list, whose size is an int32; numpy allows 32 dims.
        if len(self.shape) > MAX_DIMS or math.prod(self.shape) > MAX_STEP_ELEMENTS:
            raise DatasetError(
                f"{where} field 'shape': expected at most {MAX_DIMS} dims and {MAX_STEP_ELEMENTS} elements per "
                f"step, found {short_repr(self.shape)}"
            )
        if self.kind == "array" and self.dtype not in ARRAY_DTYPES:
            raise DatasetError(
                f"{where} field 'dtype': expected one of {', '.join(ARRAY_DTYPES)}, found {short_repr(self.dtype)}"
            )
        if self.kind == "text" and (self.dtype != "string" or self.shape != ()):
            raise DatasetError(
                f"{where}: a text stream has dtype 'string' and shape (), "
                f"found dtype {short_repr(self.dtype)} and shape {self.shape}"
            )
        if not isinstance(self.description, str):
            raise DatasetError(f"{where} field 'description': expected a str, found {short_repr(self.description)}")

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
                f"stream {name!r} field 'shape': expected a list of positive ints, found {short_repr(shape)}"
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


def check_stream_set(streams: Mapping[str, StreamSpec]) -> None:
    """Check that the required streams exist and that well-known streams have the type everyone expects.

    ``action`` alone may be missing: such a dataset is *observation-only* (e.g. demonstrations from video),
    valid input for ``clonekit label``, which fills the stream from an inverse dynamics model; training a
    policy on it is refused (``Dataset.require_streams``).
    """
    missing = [name for name in REQUIRED_STREAMS if name not in streams and name != "action"]
    if missing:
        raise DatasetError(
            f"streams: missing required stream(s) {', '.join(repr(n) for n in missing)} (found: {', '.join(streams)})"
        )
    expected = {
        "reward": array_stream("reward", "float32"),
        "terminated": array_stream("terminated", "bool"),
        "truncated": array_stream("truncated", "bool"),
        "intervention": array_stream("intervention", "bool"),
    }
    if "action" in streams:
        expected["expert_action"] = streams["action"]
    elif "expert_action" in streams:
        raise DatasetError("stream 'expert_action': expected an 'action' stream of the same type, found none")
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


def json_object(where: str, value: Any) -> dict[str, Any]:
    """``value`` as a plain JSON object, or a ``DatasetError`` that starts with ``where``.

    ``value`` is a mapping (``env``, ``extra``, a ``spaces`` entry), kept if it survives a JSON round trip, or
    JSON text (``str`` or UTF-8 ``bytes``, as stored in an HDF5 attribute) that must parse to an object.
    """
    if isinstance(value, Mapping):
        try:
            return dict(json.loads(json.dumps(dict(value), allow_nan=False)))
        except (TypeError, ValueError) as e:
            raise DatasetError(f"{where}: not JSON-serializable: {one_line(e)}") from e
    if not isinstance(value, (str, bytes)):
        raise DatasetError(f"{where}: expected a JSON object (mapping or JSON text), found {type(value).__name__}")
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
    try:
        parsed = json.loads(text)
    except ValueError as e:
        raise DatasetError(f"{where}: not valid JSON: {one_line(e)}") from e
    if not isinstance(parsed, dict):
        raise DatasetError(f"{where}: expected a JSON object, found {type(parsed).__name__}")
    return parsed


# ---------------------------------------------------------------------------------------------------------
# meta.json.


# Readers for older schema versions: UPGRADES[v] turns a version-v meta.json (already parsed) into version v + 1.
# They run in memory when a dataset is opened; the files on disk are never rewritten. The column and episode
# index files must stay readable as they are, so a schema change that touches them ships a converter instead.
UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def upgrade_meta(meta_path: Path, meta: dict[str, Any], version: int) -> dict[str, Any]:
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
                f"{meta_path}: cannot upgrade schema_version {version} to {version + 1}: {one_line(e)}"
            ) from e
        version += 1
        meta["schema_version"] = version
    return meta


def read_meta(meta_path: Path) -> dict[str, Any]:
    """Load ``meta.json``, upgrade it to ``SCHEMA_VERSION`` and check its header fields.

    The stream specs under ``streams`` are checked by the caller (``StreamSpec.from_json``, ``check_stream_set``).
    """
    if not meta_path.is_file():
        raise DatasetError(f"{meta_path}: missing; not a clonekit dataset directory")
    try:
        text = meta_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{meta_path}: cannot read it as UTF-8 text: {one_line(e)}") from e
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as e:
        # ValueError covers JSONDecodeError and integers too long to parse; RecursionError, absurd nesting.
        raise DatasetError(f"{meta_path}: not valid JSON: {one_line(e)}") from e
    if not isinstance(meta, dict):
        raise DatasetError(f"{meta_path}: expected a JSON object, found {type(meta).__name__}")
    if meta.get("format") != FORMAT_NAME:
        raise DatasetError(f"{meta_path}: format: expected {FORMAT_NAME!r}, found {short_repr(meta.get('format'))}")
    version = meta.get("schema_version")
    if "schema_version" not in meta:
        raise DatasetError(f"{meta_path}: missing key 'schema_version'")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise DatasetError(f"{meta_path}: schema_version: expected a positive int, found {short_repr(version)}")
    if version > SCHEMA_VERSION:
        raise DatasetError(
            f"{meta_path}: schema_version {version} is newer than this clonekit supports ({SCHEMA_VERSION}); "
            "upgrade clonekit"
        )
    meta = upgrade_meta(meta_path, meta, version)
    missing = [key for key in META_KEYS if key not in meta]
    if missing:
        raise DatasetError(f"{meta_path}: missing key(s) {', '.join(repr(k) for k in missing)}")
    for key in ("num_steps", "num_episodes"):
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DatasetError(f"{meta_path}: {key}: expected an int >= 1, found {short_repr(value)}")
    for key in ("streams", "spaces", "env", "extra"):
        if not isinstance(meta[key], dict):
            raise DatasetError(f"{meta_path}: {key}: expected a JSON object, found {short_repr(meta[key])}")
    info = meta["episode_info"]
    if not isinstance(info, list) or not all(isinstance(name, str) for name in info) or len(set(info)) != len(info):
        raise DatasetError(f"{meta_path}: episode_info: expected a list of unique names, found {short_repr(info)}")
    if not isinstance(meta["fingerprint"], str) or not _FINGERPRINT.match(meta["fingerprint"]):
        raise DatasetError(
            f"{meta_path}: fingerprint: expected 'sha256:<64 hex digits>', found {short_repr(meta['fingerprint'])}"
        )
    if not isinstance(meta["created_by"], str):
        raise DatasetError(f"{meta_path}: created_by: expected a str, found {short_repr(meta['created_by'])}")
    return meta


def fingerprint(root: Path, stream_names: Iterable[str], *, fsync: bool) -> str:
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
            raise DatasetError(f"{root / name}: cannot read for the fingerprint: {one_line(e)}") from e
    return f"sha256:{digest.hexdigest()}"


__all__ = [
    "ARRAY_DTYPES",
    "DEFAULT_ROWS_PER_CHUNK",
    "EPISODE_INDEX_COLUMNS",
    "FINITE_STREAMS",
    "FORMAT_NAME",
    "MAX_DIMS",
    "MAX_STEP_ELEMENTS",
    "META_KEYS",
    "REQUIRED_STREAMS",
    "SCHEMA_VERSION",
    "UPGRADES",
    "Dataset",
    "DatasetWriter",
    "StreamSpec",
    "array_stream",
    "check_stream_set",
    "fingerprint",
    "json_object",
    "read_meta",
    "text_stream",
    "upgrade_meta",
]
