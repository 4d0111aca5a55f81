"""D4RL-style flat HDF5 (one file, via h5py), read and written.

Layout (every dataset has one row per step, all episodes concatenated)::

    observations            stream obs (N, *obs_shape)
    actions                 stream action (N, *action_shape)
    rewards                 stream reward, float32 (N,) (read from (N,) or (N, 1))
    terminals               stream terminated, bool (N,): the episode ended in a terminal state
    timeouts                stream truncated, bool (N,): the episode was cut short (time limit)
    next_observations       stream next_obs, optional
    infos/<name>            every other stream: arrays as they are, text as variable-length UTF-8 strings
    attr clonekit           written by clonekit only: the JSON header (streams, episode_info, extra) plus env, spaces
                            and the episode info values, from which clonekit -> d4rl -> clonekit is exact

Episodes end at every row where ``terminals`` or ``timeouts`` is set. Rows after the last such row form one more
episode that stopped without either flag; it is **kept**, truncated at its last step, with a warning: its steps
are real demonstration data, and "cut short" is exactly what the truncated flag says. A file made elsewhere (no
``clonekit`` attr) is read as: nested ``infos/a/b`` -> stream ``a.b``; other top-level per-step datasets -> a stream
of the same name; anything else (the ``metadata`` group of D4RL files, arrays that are not per-step) is skipped
with a warning. Its spaces are derived from the arrays (``clonekit.data.formats.infer``): ``Discrete(max + 1)`` for
non-negative integer 1-D actions, else the widest Box of the dtype. Missing keys, datasets whose row counts differ
from ``observations`` and non-finite observations, actions, rewards or flags are one-line ``DatasetError``s naming
the file and the key.

Writing refuses a dataset in which an episode does not end with ``terminated`` or ``truncated`` at its last step
(or has either flag before it): the flat layout could not tell where such an episode ends.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clonekit.data.atomic import fsync_file, install, temp_path
from clonekit.data.format import REQUIRED_STREAMS, StreamSpec, array_stream, json_object
from clonekit.data.formats.h5 import H5_ERRORS, check_no_nul, extra_stream_spec, h5_dataset, read_values
from clonekit.data.formats.infer import file_source, storable_dtype
from clonekit.data.formats.source import (
    Episode,
    Source,
    Steps,
    header,
    parse_header,
    parse_header_extras,
    python_scalar,
    require_package,
)
from clonekit.data.messages import one_line
from clonekit.errors import DatasetError

# The top-level datasets every D4RL-style file has, and the stream each one holds.
D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")
_KEY_OF_STREAM = {
    "obs": "observations",
    "action": "actions",
    "reward": "rewards",
    "terminated": "terminals",
    "truncated": "timeouts",
    "next_obs": "next_observations",
}
_INFOS = "infos"
# Streams a NaN or inf would poison; checked while reading so the error names the source file and key.
_FINITE = ("obs", "action", "reward", "next_obs")


@dataclass
class _Layout:
    """Where each stream of a D4RL-style file lives, and where its episodes start and stop."""

    streams: list[StreamSpec]
    keys: dict[str, str]  # stream name -> dataset path in the file
    terminals: np.ndarray  # (N,) bool
    timeouts: np.ndarray  # (N,) bool
    bounds: list[tuple[int, int]]  # [start, stop) rows of each episode
    open_end: bool  # the last episode stops without a terminal or timeout


def read_d4rl(path: Path) -> Source:
    """Open the D4RL-style flat HDF5 file at ``path`` for conversion (written by clonekit or elsewhere)."""
    require_package("h5py", "hdf5")
    import h5py

    warnings: list[str] = []
    info_values: dict[str, list[Any]] = {}
    try:
        with h5py.File(path, "r") as file:
            foreign = "clonekit" not in file.attrs
            if foreign:
                streams, keys = _foreign_streams(path, file, warnings)
                layout = _layout(path, file, streams, keys)
                episode_info: list[str] = []
                env: dict[str, Any] = {}
                spaces: dict[str, Any] = {}
                extra: dict[str, Any] = {"converted_from": {"format": "d4rl"}}
            else:
                where = f"{path}: attr clonekit"
                block = json_object(where, file.attrs["clonekit"])
                streams, episode_info, extra = parse_header(where, block)
                keys = {spec.name: _KEY_OF_STREAM.get(spec.name, f"{_INFOS}/{spec.name}") for spec in streams}
                layout = _layout(path, file, streams, keys)
                env, spaces, info_values = parse_header_extras(where, block, episode_info, len(layout.bounds))
    except H5_ERRORS as e:
        raise DatasetError(f"{path}: cannot read as HDF5: {one_line(e)}") from e

    if layout.open_end:
        start, stop = layout.bounds[-1]
        warnings.append(
            f"{path}: the last {stop - start} rows ({start} to {stop - 1}) end without a terminal or timeout; "
            "kept as an episode truncated at its last step"
        )

    def episodes() -> Iterator[Episode]:
        try:
            with h5py.File(path, "r") as file:
                for index, (start, stop) in enumerate(layout.bounds):
                    info = {
                        name: python_scalar(f"{path}: episode {index}, info {name!r}", info_values[name][index])
                        for name in episode_info
                    }
                    yield _read_episode(path, file, layout, start, stop), info
        except H5_ERRORS as e:
            raise DatasetError(f"{path}: cannot read: {one_line(e)}") from e

    def actions() -> np.ndarray:
        try:
            with h5py.File(path, "r") as file:
                return np.asarray(file["actions"][()])
        except H5_ERRORS as e:
            raise DatasetError(f"{path}: cannot read the actions: {one_line(e)}") from e

    return file_source(
        path, streams, spaces, env, episode_info, extra, episodes, actions, warnings, foreign, f"{path}: attr clonekit"
    )


def write_d4rl(source: Source, dst: Path, overwrite: bool) -> list[str]:
    """Write ``source`` as a D4RL-style flat HDF5 file at ``dst`` (the layout above); nothing is dropped."""
    require_package("h5py", "hdf5")
    import h5py

    info_values: dict[str, list[int | float | str]] = {name: [] for name in source.episode_info}
    tmp = temp_path(dst)
    try:
        with h5py.File(tmp, "w", libver=("v108", "latest")) as file:
            columns: dict[str, Any] = {}
            total = 0
            for i, (steps, info) in enumerate(source.episodes()):
                _check_episode_end(f"{source.path}: episode {i}", steps)
                length = len(steps["action"])
                for spec in source.streams:
                    key = _KEY_OF_STREAM.get(spec.name, f"{_INFOS}/{spec.name}")
                    if spec.name not in columns:
                        dtype = h5py.string_dtype("utf-8") if spec.kind == "text" else np.dtype(spec.dtype)
                        # Resizable along the rows: episodes are appended one at a time, never all in memory.
                        columns[spec.name] = file.create_dataset(
                            key, shape=(0, *spec.shape), maxshape=(None, *spec.shape), dtype=dtype, chunks=True
                        )
                    values: Any = steps[spec.name]
                    if spec.kind == "text":
                        values = [str(text) for text in values]
                        check_no_nul(f"{dst}: episode {i}, stream {spec.name!r}", values)
                    columns[spec.name].resize(total + length, axis=0)
                    columns[spec.name][total : total + length] = values
                for name, value in info.items():
                    info_values[name].append(value)
                total += length
            block = header(source, source.streams) | {
                "env": source.env,
                "spaces": source.spaces,
                "episode_info_values": info_values,
            }
            file.attrs["clonekit"] = json.dumps(block, ensure_ascii=False)
        fsync_file(tmp)
        install(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return []


def _foreign_streams(path: Path, file: Any, warnings: list[str]) -> tuple[list[StreamSpec], dict[str, str]]:
    """Stream specs and dataset paths of a D4RL-style file written elsewhere."""
    import h5py

    for key in D4RL_KEYS:
        if not isinstance(file.get(key), h5py.Dataset):
            found = "a group" if key in file else "nothing"
            raise DatasetError(
                f"{path}: {key}: expected a top-level dataset (a D4RL-style file has {', '.join(D4RL_KEYS)}), "
                f"found {found}"
            )
    num_rows = _num_rows(path, file["observations"], "observations")
    streams, keys = [], {}
    for name in ("obs", "action"):
        key = _KEY_OF_STREAM[name]
        item = file[key]
        dtype = storable_dtype(item.dtype)
        _check_rows(path, key, item, num_rows)
        if dtype is None:
            raise DatasetError(f"{path}: {key}: expected a numeric per-step array, found dtype {item.dtype}")
        streams.append(array_stream(name, dtype, item.shape[1:]))
        keys[name] = key
    streams += [
        array_stream("reward", "float32"),
        array_stream("terminated", "bool"),
        array_stream("truncated", "bool"),
    ]
    keys |= {name: _KEY_OF_STREAM[name] for name in ("reward", "terminated", "truncated")}

    # (stream name, dataset path, dataset): next_obs first, then the rest in the file's (alphabetical) order.
    candidates: list[tuple[str, str, Any]] = []
    if "next_observations" in file:
        candidates.append(("next_obs", "next_observations", file["next_observations"]))
    for key in file:
        item = file[key]
        if key in (*D4RL_KEYS, "next_observations"):
            continue
        if key == _INFOS and isinstance(item, h5py.Group):

            def add_info(sub: str, value: Any) -> None:
                if isinstance(value, h5py.Dataset):  # groups are walked into; only datasets hold streams
                    candidates.append((sub.replace("/", "."), f"{_INFOS}/{sub}", value))

            item.visititems(add_info)
        else:
            candidates.append((key, key, item))
    for name, key, item in candidates:
        taken = name in keys or name in REQUIRED_STREAMS
        spec_or_reason = extra_stream_spec(name, item, taken, num_rows, "observations")
        if isinstance(spec_or_reason, StreamSpec):
            streams.append(spec_or_reason)
            keys[name] = key
            continue
        warnings.append(f"{path}: {key}: skipped: {spec_or_reason}")
    return streams, keys


def _layout(path: Path, file: Any, streams: list[StreamSpec], keys: dict[str, str]) -> _Layout:
    """Check that every stream's dataset exists with one row per step, then split the rows into episodes."""
    num_rows = _num_rows(path, h5_dataset(str(path), file, "observations"), "observations")
    for spec in streams:
        _check_rows(path, keys[spec.name], h5_dataset(str(path), file, keys[spec.name]), num_rows)
    flags: dict[str, np.ndarray] = {}
    for name in ("terminated", "truncated", "reward"):
        key = keys[name]
        item = file[key]
        if math.prod(item.shape) != num_rows:
            raise DatasetError(f"{path}: {key}: expected one value per row, found shape {item.shape}")
        if name != "reward":
            values = np.asarray(item[()]).reshape(num_rows)
            if values.dtype.kind not in "biuf":
                raise DatasetError(f"{path}: {key}: expected bool or numeric flags, found dtype {values.dtype}")
            _check_finite(path, key, values, 0)
            flags[name] = values != 0
    ends = np.flatnonzero(flags["terminated"] | flags["truncated"]) + 1
    open_end = not ends.size or int(ends[-1]) != num_rows
    stops = [*ends.tolist(), num_rows] if open_end else ends.tolist()
    starts = [0, *stops[:-1]]
    return _Layout(
        streams=streams,
        keys=keys,
        terminals=flags["terminated"],
        timeouts=flags["truncated"],
        bounds=list(zip(starts, stops, strict=True)),
        open_end=open_end,
    )


def _read_episode(path: Path, file: Any, layout: _Layout, start: int, stop: int) -> Steps:
    """Rows ``[start, stop)`` of every stream; the flags come from the arrays ``_layout`` already checked."""
    rows = slice(start, stop)
    steps: Steps = {}
    for spec in layout.streams:
        key = layout.keys[spec.name]
        if spec.name == "terminated":
            steps[spec.name] = layout.terminals[rows]
            continue
        if spec.name == "truncated":
            truncated = layout.timeouts[rows].copy()
            if layout.open_end and stop == len(layout.timeouts):
                truncated[-1] = True
            steps[spec.name] = truncated
            continue
        values = read_values(file[key], spec, rows)
        if spec.name == "reward":
            values = np.asarray(values).reshape(stop - start).astype(np.float32)
        if spec.name in _FINITE:
            _check_finite(path, key, np.asarray(values), start)
        steps[spec.name] = values
    return steps


def _check_episode_end(where: str, steps: Steps) -> None:
    """The flat layout finds episode ends from the flags: exactly the last step of an episode must carry one."""
    ends = np.asarray(steps["terminated"], dtype=bool) | np.asarray(steps["truncated"], dtype=bool)
    early = np.flatnonzero(ends[:-1])
    if early.size or not ends[-1]:
        found = f"one at step {early[0]} of {len(ends)}" if early.size else "neither at its last step"
        raise DatasetError(
            f"{where}: cannot be stored in D4RL-style HDF5, which ends an episode at each terminated or truncated "
            f"step: expected one at the last step only, found {found}"
        )


def _num_rows(path: Path, item: Any, key: str) -> int:
    if item.ndim == 0 or item.shape[0] == 0:
        raise DatasetError(f"{path}: {key}: expected a per-step array with at least 1 row, found shape {item.shape}")
    return int(item.shape[0])


def _check_rows(path: Path, key: str, item: Any, num_rows: int) -> None:
    if item.ndim == 0 or item.shape[0] != num_rows:
        found = item.shape[0] if item.ndim else "a scalar"
        raise DatasetError(f"{path}: {key}: expected {num_rows} rows (like 'observations'), found {found}")


def _check_finite(path: Path, key: str, values: np.ndarray, first_row: int) -> None:
    """``DatasetError`` naming the key and the file's row of the first NaN or inf in float ``values``."""
    if values.dtype.kind != "f":
        return
    bad = ~np.isfinite(values.reshape(len(values), -1))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        found = values.reshape(len(values), -1)[row, col]
        raise DatasetError(f"{path}: {key}: expected finite values, found {found} at row {first_row + int(row)}")
