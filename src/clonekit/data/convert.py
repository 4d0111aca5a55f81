"""Convert demonstration datasets between clonekit, Minari and robomimic-style HDF5.

``convert(src, dst, to)`` detects the format of ``src``, writes ``dst`` in format ``to`` (``"clonekit"``,
``"minari"`` or ``"hdf5"``) and returns warnings, one line each, about everything it had to drop or make up.
``src`` is only read. ``dst`` is written to a hidden temp path next to it and renamed into place at the end, so a
failure never leaves half a dataset at ``dst``.

    warnings = convert("data/maze", "maze.hdf5", to="hdf5")

Every conversion goes through the same two steps: a reader turns ``src`` into a ``_Source`` (the clonekit header:
streams, spaces, env, episode info, extra, plus an iterator over episodes) and a writer turns that into ``dst``.

**clonekit** (a directory with ``meta.json``; see ``clonekit.data.format``): holds everything, exactly.

**robomimic-style HDF5** (one file, via h5py)::

    data                          attrs: total (steps), env_args (JSON: env_name, env_kwargs, env = the clonekit
                                  env block, spaces = the clonekit spaces), clonekit (JSON header: the streams in
                                  order with their specs, episode_info names, extra)
    data/demo_{i}                 episode i; attrs: num_samples (T) and episode_info/<name> per episode info column
    data/demo_{i}/obs/obs         stream obs (T, *obs_shape)
    data/demo_{i}/next_obs/obs    stream next_obs, when the dataset has it
    data/demo_{i}/actions         stream action
    data/demo_{i}/rewards         stream reward (float32)
    data/demo_{i}/dones           stream terminated (bool)
    data/demo_{i}/truncated       stream truncated (bool)
    data/demo_{i}/<name>          every other stream: arrays as they are, text as variable-length UTF-8 strings

Nothing is dropped, so clonekit -> hdf5 -> clonekit is exact. Refused with a ``DatasetError``: annotation streams
named ``actions``, ``rewards`` or ``dones`` (robomimic's own names) and text with a NUL character (HDF5 strings end
at NUL). A robomimic file written elsewhere (no ``clonekit`` attr) is read as: demos in order of their number; one
obs key -> ``obs``; several obs keys -> each flattened to (T, -1) float32 and concatenated along the last axis in
sorted key order (a warning lists the order); a ``next_obs`` group the same way -> ``next_obs``; ``dones`` != 0 ->
``terminated``, and without ``dones`` nothing terminates (warning); without ``truncated`` an episode is truncated
at its last step unless it terminated there; without ``rewards`` rewards are 0 (warning); every other per-step
dataset -> an annotation stream of the same name (anything else is skipped with a warning). Its spaces are derived
from the arrays: ``Box(-inf, inf)`` (integer dtypes: their full range) and ``Discrete(max + 1)`` for non-negative
integer scalar actions.

**Minari** (a directory ``DST/data/`` with ``metadata.json`` and ``main_data.hdf5``, written with minari's own
``MinariStorage``: HDF5 backend, no JPEG encoding so images stay exact)::

    observations      the obs of every step, then the final observation: next_obs[-1] when the dataset has a
                      next_obs stream, else a copy of the last obs (warning). next_obs itself is not stored: it
                      is the observations shifted by one.
    actions, rewards, terminations, truncations  <- action, reward, terminated, truncated
    infos/<name>      every other array stream, T + 1 rows aligned with observations (the last row repeats step
                      T - 1). Text streams cannot be held and are dropped, one warning each.
    episode attrs     id = the episode index; seed = the episode info ``seed`` when it holds integers
    metadata.json     dataset_id, minari_version, the gymnasium spaces (from meta.json, else derived as above), the
                      env_spec and descriptive keys of a dataset that came from Minari, and a ``clonekit`` block
                      (stream specs, env, spaces, extra, episode info values) from which clonekit -> minari ->
                      clonekit restores the header exactly.

The dataset id is ``DST``'s name when it already reads ``name-vN``, so ``minari.load_dataset(name)`` finds the
dataset with ``MINARI_DATASETS_PATH`` set to ``DST``'s parent; otherwise it is that name with characters other than
letters, digits, ``-`` and ``_`` replaced by ``_``, plus ``-v0`` (with a warning). ``minari.MinariDataset(DST /
"data")`` opens it either way. A Minari dataset made elsewhere (``src`` is its directory, or its ``data``
directory) is read as: obs = observations[:-1] and next_obs = observations[1:], so the final observation of each
episode is kept; Dict observations flattened like several robomimic obs keys; numeric infos (nested keys joined by
``.``) -> annotation streams of their first T rows; episode seeds -> episode info ``seed`` (as str when one does
not fit int64); env = ``{"id": env id or None, "minari": {dataset_id, env_spec, author, ...}}``. Episode options
and per-episode metadata other than seeds are not imported.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from clonekit.data.format import (
    ARRAY_DTYPES,
    REQUIRED_STREAMS,
    Dataset,
    DatasetWriter,
    StreamSpec,
    array_stream,
    text_stream,
)
from clonekit.data.spaces import space_from_json, space_to_json
from clonekit.errors import ConfigError, DatasetError
from clonekit.io import fsync_dir

FORMATS = ("clonekit", "minari", "hdf5")
# The JSON header that HDF5 files (attr data.clonekit) and Minari datasets (metadata.json "clonekit") carry.
HEADER_FORMAT = "clonekit.convert"
HEADER_VERSION = 1

Steps = dict[str, np.ndarray | list[str]]  # one episode: stream name -> (T, *shape) array or T str
EpisodeInfo = dict[str, int | float | str]
Episode = tuple[Steps, EpisodeInfo]

# Where each clonekit stream lives inside data/demo_{i}; any other stream sits under its own name.
_HDF5_PATHS = {
    "obs": "obs/obs",
    "next_obs": "next_obs/obs",
    "action": "actions",
    "reward": "rewards",
    "terminated": "dones",
    "truncated": "truncated",
}
_HDF5_TAKEN_NAMES = ("actions", "rewards", "dones")
_HDF5_INFO_ATTR = "episode_info/"
_DEMO_NAME = re.compile(r"^demo_(\d+)$")
_MINARI_ID = re.compile(r"^[-_\w]+-v\d+$")
# Minari metadata that says where a dataset came from; kept in the env block so it survives a round trip.
_MINARI_KEPT_METADATA = (
    "env_spec",
    "eval_env_spec",
    "algorithm_name",
    "author",
    "author_email",
    "code_permalink",
    "description",
    "requirements",
    "ref_min_score",
    "ref_max_score",
    "num_episodes_average_score",
)
_INT64 = np.iinfo(np.int64)


@dataclass
class _Source:
    """A dataset opened for conversion: the clonekit header, and a way to read its episodes one at a time.

    ``spaces`` is the JSON stored in ``meta.json`` (copied verbatim to clonekit and HDF5 outputs);
    ``gym_spaces()`` gives the observation and action spaces as gymnasium objects, deriving missing ones from the
    data (with warnings), which only a Minari output needs.
    """

    path: Path
    streams: list[StreamSpec]
    spaces: dict[str, Any]
    env: dict[str, Any]
    episode_info: list[str]
    extra: dict[str, Any]
    episodes: Callable[[], Iterator[Episode]]
    gym_spaces: Callable[[], tuple[gym.spaces.Space, gym.spaces.Space, list[str]]]
    warnings: list[str]


def convert(src: str | Path, dst: str | Path, to: str, *, overwrite: bool = False) -> list[str]:
    """Convert the dataset at ``src`` (clonekit, Minari or robomimic-style HDF5) to format ``to`` at ``dst``.

    Args:
        src: a clonekit dataset directory, a Minari dataset directory (or its ``data`` directory), or an HDF5 file
            with a top-level ``data`` group. Never modified.
        dst: where to write: a directory for ``"clonekit"`` and ``"minari"``, a file for ``"hdf5"``.
        to: ``"clonekit"``, ``"minari"`` or ``"hdf5"``.
        overwrite: replace an existing ``dst`` of the same format (anything else at ``dst`` is never replaced).

    Returns:
        Warnings, one line each, about what was dropped, flattened or made up (the module docstring lists them).

    Raises:
        ConfigError: unknown ``to``, or the package a format needs is not installed.
        DatasetError: ``src`` is missing, of no known format or unreadable; ``dst`` exists (without
            ``overwrite``) or overlaps ``src``; the data cannot be stored in format ``to``.
    """
    if to not in FORMATS:
        raise ConfigError(f"to: expected one of {', '.join(FORMATS)}, found {to!r}")
    src_path, dst_path = Path(src), Path(dst)
    source_format = detect_format(src_path)
    _check_destination(src_path, dst_path, to, overwrite)
    source = _READERS[source_format](src_path)
    written = _WRITERS[to](source, dst_path, overwrite)
    return [*source.warnings, *written]


def detect_format(path: str | Path) -> str:
    """The format of the dataset at ``path``: ``"clonekit"``, ``"minari"`` or ``"hdf5"`` (``DatasetError`` if none).

    A directory with ``meta.json`` is clonekit, one with ``data/metadata.json`` (or ``metadata.json``) is Minari,
    and a file is taken for HDF5 if it has the HDF5 signature; the reader checks the rest.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / "meta.json").is_file():
            return "clonekit"
        if _minari_data_path(path) is not None:
            return "minari"
        raise DatasetError(
            f"{path}: not a dataset directory: expected meta.json (clonekit) or data/metadata.json (Minari)"
        )
    _require_package("h5py", "hdf5")
    import h5py

    if not h5py.is_hdf5(path):
        raise DatasetError(f"{path}: not an HDF5 file (no HDF5 signature) and not a dataset directory")
    return "hdf5"


def _minari_data_path(path: Path) -> Path | None:
    """The directory holding a Minari dataset's ``metadata.json``: ``path/data`` or ``path`` itself."""
    for candidate in (path / "data", path):
        if (candidate / "metadata.json").is_file():
            return candidate
    return None


def _check_destination(src: Path, dst: Path, to: str, overwrite: bool) -> None:
    """Refuse a ``dst`` that overlaps ``src``, or that exists unless ``overwrite`` and it is a ``to`` dataset."""
    src_resolved, dst_resolved = src.resolve(), dst.resolve()
    if dst_resolved.is_relative_to(src_resolved) or src_resolved.is_relative_to(dst_resolved):
        raise DatasetError(f"{dst}: overlaps the source {src}; the source is never modified, so write elsewhere")
    if not (dst.exists() or dst.is_symlink()):
        return
    if not overwrite:
        raise DatasetError(f"{dst}: already exists; pass overwrite=True to replace it")
    if not _is_replaceable(dst, to):
        raise DatasetError(f"{dst}: exists and is not a {to} dataset; refusing to replace it with overwrite=True")


def _is_replaceable(path: Path, to: str) -> bool:
    """Whether ``path`` holds a dataset of format ``to`` (or is an empty directory, for directory formats)."""
    if path.is_symlink():
        return False
    if to == "hdf5":
        _require_package("h5py", "hdf5")
        import h5py

        return path.is_file() and bool(h5py.is_hdf5(path))
    if not path.is_dir():
        return False
    marker = path / "meta.json" if to == "clonekit" else path / "data" / "metadata.json"
    return marker.is_file() or not any(path.iterdir())


# ---------------------------------------------------------------------------------------------------------
# Readers: one per source format, each returning a _Source.


def _read_clonekit(path: Path) -> _Source:
    dataset = Dataset.open(path)
    info_columns = {name: dataset.episode_info(name) for name in dataset.meta["episode_info"]}

    def episodes() -> Iterator[Episode]:
        for i in range(dataset.num_episodes):
            info = {name: _python_scalar(f"{path}: episode {i}", column[i]) for name, column in info_columns.items()}
            yield dataset.episode(i), info

    def actions() -> np.ndarray:
        return np.asarray(dataset.column("action"))

    return _Source(
        path=path,
        streams=list(dataset.streams.values()),
        spaces=dict(dataset.spaces),
        env=dict(dataset.env),
        episode_info=list(dataset.meta["episode_info"]),
        extra=dict(dataset.extra),
        episodes=episodes,
        gym_spaces=lambda: _gym_spaces(f"{path}/meta.json", dataset.spaces, dataset.streams["obs"], actions),
        warnings=[],
    )


def _read_hdf5(path: Path) -> _Source:
    _require_package("h5py", "hdf5")
    import h5py

    warnings: list[str] = []
    try:
        with h5py.File(path, "r") as file:
            data = file.get("data")
            if not isinstance(data, h5py.Group):
                found = ", ".join(file.keys()) or "nothing"
                raise DatasetError(
                    f"{path}: no top-level 'data' group (found: {found}); not a robomimic-style HDF5 file"
                )
            demos = _demo_names(path, data, warnings)
            if "clonekit" in data.attrs:
                streams, episode_info, extra = _parse_header(f"{path}: attr data.clonekit", data.attrs["clonekit"])
                env, spaces = _parse_env_args(f"{path}: attr data.env_args", data.attrs.get("env_args"))
                layout = None
            else:
                layout = _foreign_layout(path, data, demos, warnings)
                streams, episode_info, extra = layout.streams, [], {"converted_from": {"format": "hdf5"}}
                env, spaces = _foreign_env(path, data, warnings), {}
    except (OSError, KeyError, ValueError, RuntimeError) as e:  # how h5py reports unreadable and corrupt files
        raise DatasetError(f"{path}: cannot read as HDF5: {_one_line(e)}") from e

    def read_demo(where: str, group: Any) -> Episode:
        if layout is None:
            return _read_clonekit_demo(where, group, streams, episode_info)
        return _read_foreign_demo(where, group, layout), {}

    def episodes() -> Iterator[Episode]:
        try:
            with h5py.File(path, "r") as file:
                for name in demos:
                    yield read_demo(f"{path}: data/{name}", file["data"][name])
        except (OSError, KeyError, ValueError, RuntimeError) as e:
            raise DatasetError(f"{path}: cannot read: {_one_line(e)}") from e

    def actions() -> np.ndarray:
        try:
            with h5py.File(path, "r") as file:
                parts = [np.asarray(file["data"][name]["actions"][()]) for name in demos]
        except (OSError, KeyError, ValueError, RuntimeError) as e:
            raise DatasetError(f"{path}: cannot read the actions: {_one_line(e)}") from e
        return np.concatenate(parts)

    obs_spec = next(spec for spec in streams if spec.name == "obs")
    if layout is not None:
        # A file from elsewhere has no spaces: derive them now, so that every output records them.
        observation_space, action_space = _box(np.dtype(obs_spec.dtype), obs_spec.shape), _action_space(actions())
        spaces = {"observation": space_to_json(observation_space), "action": space_to_json(action_space)}
        warnings.append(
            f"{path}: no spaces stored; derived observation {observation_space} and action {action_space} from the data"
        )
    return _Source(
        path=path,
        streams=streams,
        spaces=spaces,
        env=env,
        episode_info=episode_info,
        extra=extra,
        episodes=episodes,
        gym_spaces=lambda: _gym_spaces(f"{path}: attr data.env_args", spaces, obs_spec, actions),
        warnings=warnings,
    )


def _demo_names(path: Path, data: Any, warnings: list[str]) -> list[str]:
    """Names of the ``demo_<i>`` groups under ``data``, ordered by ``i`` (other members are skipped with a warning)."""
    numbered = []
    for name in data:
        match = _DEMO_NAME.match(name)
        if match:
            numbered.append((int(match.group(1)), name))
        else:
            warnings.append(f"{path}: data/{name}: skipped (not a demo_<i> group)")
    if not numbered:
        raise DatasetError(f"{path}: no demo_<i> groups under 'data'")
    return [name for _, name in sorted(numbered)]


def _parse_env_args(where: str, raw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The clonekit env block and spaces from the ``env_args`` JSON written by ``_write_hdf5``."""
    env_args = _json_object(where, raw)
    env, spaces = env_args.get("env"), env_args.get("spaces")
    if not isinstance(env, dict) or not isinstance(spaces, dict):
        raise DatasetError(f"{where}: expected JSON objects under 'env' and 'spaces', found {env!r} and {spaces!r}")
    return env, spaces


def _read_clonekit_demo(where: str, group: Any, streams: list[StreamSpec], episode_info: list[str]) -> Episode:
    """One demo of a file written by ``_write_hdf5``: every stream at its path, episode info from attrs."""
    steps: Steps = {}
    for spec in streams:
        steps[spec.name] = _read_values(where, _h5_dataset(where, group, _HDF5_PATHS.get(spec.name, spec.name)), spec)
    _check_num_samples(where, group, len(steps["action"]))
    info: EpisodeInfo = {}
    for name in episode_info:
        key = _HDF5_INFO_ATTR + name
        if key not in group.attrs:
            raise DatasetError(f"{where}: missing attr {key!r} (episode_info {name!r} in the clonekit header)")
        info[name] = _python_scalar(f"{where}: attr {key!r}", group.attrs[key])
    return steps, info


@dataclass
class _ForeignLayout:
    """How to read the demos of a robomimic file written elsewhere, decided from its first demo."""

    obs_keys: list[str]
    next_obs_keys: list[str] | None
    has_rewards: bool
    has_dones: bool
    has_truncated: bool
    annotations: list[StreamSpec]
    streams: list[StreamSpec]


def _foreign_layout(path: Path, data: Any, demos: list[str], warnings: list[str]) -> _ForeignLayout:
    import h5py

    first = data[demos[0]]
    where = f"{path}: data/{demos[0]}"
    obs_keys = _obs_keys(where, first, "obs")
    obs_spec = _obs_spec(where, first["obs"], obs_keys, "obs")
    if len(obs_keys) > 1:
        warnings.append(
            f"{path}: obs keys {', '.join(obs_keys)} flattened to float32 and concatenated along the last axis "
            "into 'obs', in this order"
        )
    streams = [obs_spec]
    actions = _h5_dataset(where, first, "actions")
    length = actions.shape[0] if actions.ndim else 0
    action_dtype = _storable_dtype(actions.dtype)
    if action_dtype is None or actions.ndim == 0:
        raise DatasetError(f"{where}/actions: expected a numeric per-step array, found {actions.dtype} {actions.shape}")
    streams.append(array_stream("action", action_dtype, actions.shape[1:]))
    streams += [
        array_stream("reward", "float32"),
        array_stream("terminated", "bool"),
        array_stream("truncated", "bool"),
    ]

    next_obs_keys = None
    if "next_obs" in first:
        keys = _obs_keys(where, first, "next_obs")
        if keys == obs_keys:
            next_obs_keys = keys
            streams.append(_obs_spec(where, first["next_obs"], keys, "next_obs"))
        else:
            warnings.append(f"{where}/next_obs: skipped: its keys {keys} differ from the obs keys {obs_keys}")

    has_rewards, has_dones = "rewards" in first, "dones" in first
    if not has_rewards:
        warnings.append(f"{path}: no 'rewards' datasets; every reward is set to 0")
    if not has_dones:
        warnings.append(
            f"{path}: no 'dones' datasets; no step is marked terminated, and each episode is truncated at its last step"
        )
    annotations = []
    produced = {spec.name for spec in streams}
    for name in first:
        if name in ("obs", "next_obs", "actions", "rewards", "dones", "truncated"):
            continue
        item = first[name]
        reason = ""
        if name in produced or name in REQUIRED_STREAMS:
            reason = f"the name is taken by clonekit's stream {name!r}"
        elif not isinstance(item, h5py.Dataset):
            reason = "a group, not a dataset"
        elif item.ndim == 0 or item.shape[0] != length:
            reason = f"shape {item.shape} is not per-step (expected {length} rows, like 'actions')"
        else:
            spec_or_reason = _foreign_stream_spec(name, item)
            if isinstance(spec_or_reason, StreamSpec):
                annotations.append(spec_or_reason)
                continue
            reason = spec_or_reason
        warnings.append(f"{where}/{name}: skipped: {reason}")
    return _ForeignLayout(
        obs_keys=obs_keys,
        next_obs_keys=next_obs_keys,
        has_rewards=has_rewards,
        has_dones=has_dones,
        has_truncated="truncated" in first,
        annotations=annotations,
        streams=streams + annotations,
    )


def _foreign_env(path: Path, data: Any, warnings: list[str]) -> dict[str, Any]:
    """The clonekit env block of a robomimic file: its env name, with the parsed ``env_args`` kept alongside."""
    raw = data.attrs.get("env_args")
    if raw is None:
        return {}
    try:
        env_args = _json_object(f"{path}: attr data.env_args", raw)
    except DatasetError as e:
        warnings.append(f"{e}; the env block is left empty")
        return {}
    return {"id": env_args.get("env_name"), "robomimic_env_args": env_args}


def _obs_keys(where: str, demo: Any, group_name: str) -> list[str]:
    import h5py

    group = demo.get(group_name)
    keys = sorted(k for k in group if isinstance(group[k], h5py.Dataset)) if isinstance(group, h5py.Group) else []
    if not keys:
        raise DatasetError(f"{where}: expected a group {group_name!r} holding at least one dataset, found none")
    return keys


def _obs_spec(where: str, group: Any, keys: list[str], name: str) -> StreamSpec:
    """One key keeps its dtype and shape; several become one float32 vector (see ``_concat_flat``)."""
    if len(keys) == 1:
        item = group[keys[0]]
        dtype = _storable_dtype(item.dtype)
        if dtype is None or item.ndim == 0:
            raise DatasetError(
                f"{where}/{group.name.split('/')[-1]}/{keys[0]}: expected a numeric per-step array, "
                f"found {item.dtype} {item.shape}"
            )
        return array_stream(name, dtype, item.shape[1:])
    width = sum(math.prod(group[key].shape[1:]) for key in keys)
    return array_stream(name, "float32", (width,))


def _foreign_stream_spec(name: str, item: Any) -> StreamSpec | str:
    """The spec of a per-step dataset from elsewhere, or why it cannot be a stream."""
    import h5py

    try:
        if h5py.check_string_dtype(item.dtype) is not None:
            return text_stream(name) if item.ndim == 1 else f"a string array of shape {item.shape}"
        dtype = _storable_dtype(item.dtype)
        if dtype is None:
            return f"dtype {item.dtype} is neither numeric nor a string"
        return array_stream(name, dtype, item.shape[1:])
    except DatasetError as e:  # e.g. a name clonekit does not accept for a stream; reported as the reason
        return str(e)


def _read_foreign_demo(where: str, group: Any, layout: _ForeignLayout) -> Steps:
    actions = np.asarray(_h5_dataset(where, group, "actions")[()])
    length = len(actions)
    _check_num_samples(where, group, length)
    steps: Steps = {"obs": _read_obs(where, group, "obs", layout.obs_keys), "action": actions}
    if layout.next_obs_keys is not None:
        steps["next_obs"] = _read_obs(where, group, "next_obs", layout.next_obs_keys)
    steps["reward"] = (
        _per_step(where, group, "rewards", length).astype(np.float32)
        if layout.has_rewards
        else np.zeros(length, dtype=np.float32)
    )
    terminated = _per_step(where, group, "dones", length) != 0 if layout.has_dones else np.zeros(length, dtype=bool)
    if layout.has_truncated:
        truncated = _per_step(where, group, "truncated", length) != 0
    else:
        # An episode that stops without terminating was cut short.
        truncated = np.zeros(length, dtype=bool)
        truncated[-1] = not terminated[-1]
    steps["terminated"], steps["truncated"] = terminated, truncated
    for spec in layout.annotations:
        steps[spec.name] = _read_values(where, _h5_dataset(where, group, spec.name), spec)
    return steps


def _read_obs(where: str, demo: Any, group_name: str, keys: list[str]) -> np.ndarray:
    group = demo.get(group_name)
    parts = [np.asarray(_h5_dataset(f"{where}/{group_name}", group, key)[()]) for key in keys]
    return parts[0] if len(parts) == 1 else _concat_flat(f"{where}/{group_name}", keys, parts)


def _concat_flat(where: str, keys: list[str], parts: list[np.ndarray]) -> np.ndarray:
    """Flatten each ``(T, ...)`` part to ``(T, -1)`` float32 and concatenate them into ``(T, D)``."""
    length = len(parts[0])
    for key, part in zip(keys, parts, strict=True):
        if part.ndim == 0 or len(part) != length:
            raise DatasetError(f"{where}/{key}: expected {length} rows like {keys[0]!r}, found shape {part.shape}")
    return np.concatenate([part.reshape(length, -1).astype(np.float32) for part in parts], axis=1)


def _per_step(where: str, group: Any, key: str, length: int) -> np.ndarray:
    """A per-step scalar dataset as ``(T,)`` (robomimic files sometimes store ``(T, 1)``)."""
    values = np.asarray(_h5_dataset(where, group, key)[()])
    if values.size != length:
        raise DatasetError(f"{where}/{key}: expected {length} values (one per action), found shape {values.shape}")
    return values.reshape(length)


def _read_values(where: str, item: Any, spec: StreamSpec) -> np.ndarray | list[str]:
    if spec.kind == "text":
        return [str(text) for text in item.asstr()[()]]
    return np.asarray(item[()])


def _h5_dataset(where: str, group: Any, key: str) -> Any:
    import h5py

    item = group.get(key) if isinstance(group, h5py.Group) else None
    if not isinstance(item, h5py.Dataset):
        found = "a group" if item is not None else "nothing"
        raise DatasetError(f"{where}: expected a dataset {key!r}, found {found}")
    return item


def _check_num_samples(where: str, group: Any, length: int) -> None:
    if "num_samples" in group.attrs and int(group.attrs["num_samples"]) != length:
        raise DatasetError(
            f"{where}: attr num_samples is {int(group.attrs['num_samples'])} but there are {length} actions"
        )


def _read_minari(path: Path) -> _Source:
    _require_package("minari", "minari")
    import minari
    from minari.dataset.minari_storage import MinariStorage

    data_path = _minari_data_path(path)
    if data_path is None:
        raise DatasetError(f"{path}: no data/metadata.json; not a Minari dataset")
    try:
        dataset = minari.MinariDataset(data_path)
        raw_metadata = MinariStorage.read_raw_metadata(data_path)
        seeds = [meta.get("seed") for meta in dataset.storage.get_episode_metadata(dataset.episode_indices)]
        first = next(iter(dataset.iterate_episodes([0]))) if dataset.total_episodes else None
    except (ValueError, KeyError, TypeError, AssertionError, OSError) as e:  # minari validates with asserts
        raise DatasetError(f"{path}: not a readable Minari dataset: {_one_line(e)}") from e
    if first is None:
        raise DatasetError(f"{path}: the Minari dataset has no episodes")
    observation_space, action_space = dataset.observation_space, dataset.action_space
    warnings: list[str] = []
    obs_keys = _minari_obs_keys(path, observation_space, warnings)
    if isinstance(action_space, (gym.spaces.Dict, gym.spaces.Tuple, gym.spaces.Text)):
        raise DatasetError(f"{path}: action space {action_space} cannot become clonekit's array stream 'action'")

    block = raw_metadata.get("clonekit")
    if block is not None:
        where = f"{data_path / 'metadata.json'}: clonekit"
        streams, episode_info, extra = _parse_header(where, block)
        env, spaces, info_values = _parse_minari_block(where, block, episode_info, dataset.total_episodes)
    else:
        streams = _minari_streams(path, first, obs_keys, warnings)
        extra = {"converted_from": {"format": "minari"}}
        env = _minari_env(raw_metadata)
        if obs_keys is not None:
            observation_space = _box(np.dtype(np.float32), streams[0].shape)
        spaces = {}
        for key, space in (("observation", observation_space), ("action", action_space)):
            try:
                spaces[key] = space_to_json(space)
            except ConfigError as e:
                warnings.append(f"{path}: {key} space not kept in meta.json: {e}")
        episode_info, info_values = _minari_seed_info(seeds)

    annotations = [spec for spec in streams if spec.name not in (*REQUIRED_STREAMS, "next_obs")]
    keep_next_obs = any(spec.name == "next_obs" for spec in streams)

    def episodes() -> Iterator[Episode]:
        try:
            for index, episode in enumerate(dataset.iterate_episodes()):
                where = f"{path}: episode {episode.id}"
                steps = _minari_steps(where, episode, obs_keys, annotations, keep_next_obs)
                yield steps, {name: values[index] for name, values in info_values.items()}
        except (ValueError, KeyError, TypeError, AssertionError, OSError) as e:
            raise DatasetError(f"{path}: cannot read the episodes: {_one_line(e)}") from e

    return _Source(
        path=path,
        streams=streams,
        spaces=spaces,
        env=env,
        episode_info=episode_info,
        extra=extra,
        episodes=episodes,
        gym_spaces=lambda: (observation_space, action_space, []),
        warnings=warnings,
    )


def _minari_obs_keys(path: Path, space: gym.spaces.Space, warnings: list[str]) -> list[str] | None:
    """Sorted flattened keys of a Dict observation space (``None`` for an array space)."""
    if isinstance(space, (gym.spaces.Tuple, gym.spaces.Text, gym.spaces.Graph, gym.spaces.Sequence)):
        raise DatasetError(f"{path}: observation space {type(space).__name__} cannot become clonekit's stream 'obs'")
    if not isinstance(space, gym.spaces.Dict):
        return None
    keys = sorted(_flatten_dict(space.sample()))
    warnings.append(
        f"{path}: observation keys {', '.join(keys)} flattened to float32 and concatenated along the last axis "
        "into 'obs', in this order"
    )
    return keys


def _minari_streams(path: Path, first: Any, obs_keys: list[str] | None, warnings: list[str]) -> list[StreamSpec]:
    """Stream specs of a Minari dataset made elsewhere, from its first episode."""
    observations = _minari_observations(f"{path}: episode {first.id}", first.observations, obs_keys)
    actions = np.asarray(first.actions)
    obs_dtype, action_dtype = _storable_dtype(observations.dtype), _storable_dtype(actions.dtype)
    if obs_dtype is None or action_dtype is None:
        raise DatasetError(
            f"{path}: expected numeric observations and actions, found {observations.dtype} and {actions.dtype}"
        )
    streams = [
        array_stream("obs", obs_dtype, observations.shape[1:]),
        array_stream("action", action_dtype, actions.shape[1:]),
        array_stream("reward", "float32"),
        array_stream("terminated", "bool"),
        array_stream("truncated", "bool"),
        array_stream("next_obs", obs_dtype, observations.shape[1:], "observation after each step"),
    ]
    length = len(first.rewards)
    for name, values in _flatten_dict(first.infos or {}).items():
        reason = ""
        array = np.asarray(values)
        dtype = _storable_dtype(array.dtype)
        if name in REQUIRED_STREAMS or name == "next_obs":
            reason = f"the name is taken by clonekit's stream {name!r}"
        elif dtype is None:
            reason = f"dtype {array.dtype} is not numeric"
        elif array.ndim == 0 or len(array) not in (length, length + 1):
            reason = f"shape {array.shape} is not per-step ({length} or {length + 1} rows expected)"
        else:
            try:
                streams.append(array_stream(name, dtype, array.shape[1:]))
                continue
            except DatasetError as e:  # a key clonekit does not accept as a stream name; reported as the reason
                reason = str(e)
        warnings.append(f"{path}: info {name!r} skipped: {reason}")
    return streams


def _minari_steps(
    where: str, episode: Any, obs_keys: list[str] | None, annotations: list[StreamSpec], keep_next_obs: bool
) -> Steps:
    """One Minari episode as clonekit steps: obs from the first T of the T + 1 observations."""
    length = len(episode.rewards)
    observations = _minari_observations(where, episode.observations, obs_keys)
    if len(observations) != length + 1:
        raise DatasetError(f"{where}: expected {length + 1} observations (steps + 1), found {len(observations)}")
    steps: Steps = {
        "obs": observations[:-1],
        "action": np.asarray(episode.actions),
        "reward": np.asarray(episode.rewards),
        "terminated": np.asarray(episode.terminations),
        "truncated": np.asarray(episode.truncations),
    }
    if keep_next_obs:
        steps["next_obs"] = observations[1:]
    infos = _flatten_dict(episode.infos or {})
    for spec in annotations:
        if spec.name not in infos:
            raise DatasetError(f"{where}: missing info {spec.name!r} (found: {', '.join(infos) or 'none'})")
        values = np.asarray(infos[spec.name])
        if values.ndim == 0 or len(values) not in (length, length + 1):
            raise DatasetError(
                f"{where}: info {spec.name!r}: expected {length} or {length + 1} rows, found shape {values.shape}"
            )
        steps[spec.name] = values[:length]
    return steps


def _minari_observations(where: str, observations: Any, obs_keys: list[str] | None) -> np.ndarray:
    if obs_keys is None:
        return np.asarray(observations)
    flat = _flatten_dict(observations)
    return _concat_flat(f"{where}: observations", obs_keys, [np.asarray(flat[key]) for key in obs_keys])


def _flatten_dict(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one dict with keys joined by ``.``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten_dict(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _minari_env(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The clonekit env block of a Minari dataset: its env id plus the metadata that says where it came from."""
    kept = {key: metadata[key] for key in ("dataset_id", "minari_version", *_MINARI_KEPT_METADATA) if key in metadata}
    env_id = None
    if isinstance(metadata.get("env_spec"), str):
        try:
            env_id = json.loads(metadata["env_spec"]).get("id")
        except (ValueError, AttributeError):  # an env_spec minari accepted but we cannot parse: keep it, no id
            env_id = None
    return {"id": env_id, "minari": kept}


def _minari_seed_info(seeds: list[Any]) -> tuple[list[str], dict[str, list[int | float | str]]]:
    """Episode info ``seed`` when every episode has one; str where a seed does not fit int64 (Minari uses uint64)."""
    if not seeds or any(seed is None for seed in seeds):
        return [], {}
    if all(_INT64.min <= int(seed) <= _INT64.max for seed in seeds):
        return ["seed"], {"seed": [int(seed) for seed in seeds]}
    return ["seed"], {"seed": [str(int(seed)) for seed in seeds]}


def _parse_minari_block(
    where: str, block: Mapping[str, Any], episode_info: list[str], num_episodes: int
) -> tuple[dict[str, Any], dict[str, Any], dict[str, list[Any]]]:
    env, spaces, values = block.get("env"), block.get("spaces"), block.get("episode_info_values")
    if not isinstance(env, dict) or not isinstance(spaces, dict) or not isinstance(values, dict):
        raise DatasetError(f"{where}: expected JSON objects under 'env', 'spaces' and 'episode_info_values'")
    for name in episode_info:
        column = values.get(name)
        if not isinstance(column, list) or len(column) != num_episodes:
            raise DatasetError(f"{where}: episode_info_values[{name!r}]: expected a list of {num_episodes} values")
    return env, spaces, values


# ---------------------------------------------------------------------------------------------------------
# Writers: one per target format, each returning its warnings.


def _write_clonekit(source: _Source, dst: Path, overwrite: bool) -> list[str]:
    writer = DatasetWriter(
        dst,
        source.streams,
        spaces=source.spaces,
        env=source.env,
        episode_info=source.episode_info,
        extra=source.extra,
        overwrite=overwrite,
    )
    with writer:
        for steps, info in source.episodes():
            writer.add_episode(steps, info)
    return []


def _write_hdf5(source: _Source, dst: Path, overwrite: bool) -> list[str]:
    _require_package("h5py", "hdf5")
    import h5py

    for spec in source.streams:
        if spec.name in _HDF5_TAKEN_NAMES:
            raise DatasetError(
                f"{source.path}: stream {spec.name!r} cannot be stored in robomimic HDF5: "
                f"{', '.join(_HDF5_TAKEN_NAMES)} are robomimic's own datasets; rename the stream"
            )
    env_args = {
        "env_name": str(source.env.get("id") or ""),
        "env_kwargs": source.env.get("kwargs", {}),
        "env": source.env,
        "spaces": source.spaces,
    }
    tmp = _temp_path(dst)
    try:
        # libver v108 stores attributes densely, so a big env block (many tasks) still fits in env_args.
        with h5py.File(tmp, "w", libver=("v108", "latest")) as file:
            data = file.create_group("data")
            data.attrs["env_args"] = json.dumps(env_args, ensure_ascii=False)
            data.attrs["clonekit"] = json.dumps(_header(source, source.streams), ensure_ascii=False)
            total = 0
            for i, (steps, info) in enumerate(source.episodes()):
                demo = data.create_group(f"demo_{i}")
                demo.attrs["num_samples"] = len(steps["action"])
                for spec in source.streams:
                    path = _HDF5_PATHS.get(spec.name, spec.name)
                    values = steps[spec.name]
                    if spec.kind == "text":
                        texts = [str(text) for text in values]
                        _check_no_nul(f"{dst}: episode {i}, stream {spec.name!r}", texts)
                        demo.create_dataset(path, data=texts, dtype=h5py.string_dtype("utf-8"))
                    else:
                        demo.create_dataset(path, data=np.asarray(values))
                for name, value in info.items():
                    demo.attrs[_HDF5_INFO_ATTR + name] = value
                total += len(steps["action"])
            data.attrs["total"] = total
        _fsync_file(tmp)
        _install(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return []


def _check_no_nul(where: str, texts: list[str]) -> None:
    for step, text in enumerate(texts):
        if "\x00" in text:
            raise DatasetError(f"{where}, step {step}: text with a NUL character cannot be stored as an HDF5 string")


def _write_minari(source: _Source, dst: Path, overwrite: bool) -> list[str]:
    _require_package("minari", "minari")
    import minari
    from minari.data_collector import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage

    warnings: list[str] = []
    dataset_id = _minari_dataset_id(dst.name, warnings)
    observation_space, action_space, space_warnings = source.gym_spaces()
    warnings += space_warnings
    kept = [spec for spec in source.streams if spec.kind == "array"]
    for spec in source.streams:
        if spec.kind == "text":
            warnings.append(f"{source.path}: text stream {spec.name!r} dropped: Minari infos hold numeric arrays only")
    info_streams = [spec.name for spec in kept if spec.name not in (*REQUIRED_STREAMS, "next_obs")]
    has_next_obs = any(spec.name == "next_obs" for spec in kept)
    if not has_next_obs:
        warnings.append(
            f"{source.path}: no 'next_obs' stream, so the final observation of each episode (Minari stores T + 1) "
            "is a copy of its last observation"
        )
    info_values: dict[str, list[int | float | str]] = {name: [] for name in source.episode_info}
    mismatched_next_obs: list[int] = []

    def buffers() -> Iterator[Any]:
        for i, (steps, info) in enumerate(source.episodes()):
            obs = np.asarray(steps["obs"])
            if has_next_obs:
                next_obs = np.asarray(steps["next_obs"])
                if not np.array_equal(next_obs[:-1], obs[1:]):
                    mismatched_next_obs.append(i)
                final = next_obs[-1:]
            else:
                final = obs[-1:]
            infos = {}
            for name in info_streams:
                values = np.asarray(steps[name])
                infos[name] = np.concatenate([values, values[-1:]])  # T + 1 rows, like the observations
            for name, value in info.items():
                info_values[name].append(value)
            yield EpisodeBuffer(
                id=i,
                seed=_seed(info.get("seed")),
                observations=np.concatenate([obs, final]),
                actions=np.asarray(steps["action"]),
                rewards=np.asarray(steps["reward"]),
                terminations=np.asarray(steps["terminated"]),
                truncations=np.asarray(steps["truncated"]),
                infos=infos or None,
            )

    tmp = _temp_path(dst)
    try:
        tmp.mkdir(parents=True)
        storage = MinariStorage.new(
            tmp / "data",
            observation_space=observation_space,
            action_space=action_space,
            data_format="hdf5",
            jpeg_encoding=False,  # JPEG is lossy; the data must come back exactly
        )
        storage.update_episodes(buffers())
        block = _header(source, kept) | {
            "env": source.env,
            "spaces": source.spaces,
            "episode_info_values": info_values,
        }
        metadata: dict[str, Any] = {
            "dataset_id": dataset_id,
            "minari_version": minari.__version__,
            "description": f"Converted by clonekit from {source.path.name}",
            **_minari_metadata_from_env(source.env),
            "clonekit": block,
        }
        storage.update_metadata(metadata)
        _fsync_tree(tmp)
        _install(tmp, dst)
    except BaseException:
        if tmp.exists():
            shutil.rmtree(tmp)
        raise
    if mismatched_next_obs:
        warnings.append(
            f"{source.path}: stream 'next_obs' differs from the following obs within episode(s) "
            f"{', '.join(map(str, mismatched_next_obs[:10]))}; Minari keeps only the final next_obs of each episode"
        )
    return warnings


def _minari_dataset_id(name: str, warnings: list[str]) -> str:
    """``name`` when it reads ``name-vN``, else a sanitized ``name`` plus ``-v0`` (with a warning)."""
    if _MINARI_ID.match(name):
        return name
    base = re.sub(r"[^-_\w]", "_", name) or "dataset"
    dataset_id = f"{base}-v0"
    warnings.append(
        f"Minari dataset id is {dataset_id!r} (ids read 'name-vN'); name the directory {dataset_id!r} for "
        f"minari.load_dataset to find it, or open it with minari.MinariDataset('{name}/data')"
    )
    return dataset_id


def _minari_metadata_from_env(env: Mapping[str, Any]) -> dict[str, Any]:
    """The Minari metadata of a dataset that came from Minari (kept in the env block), ready for minari's writer."""
    kept = env.get("minari")
    if not isinstance(kept, dict):
        return {}
    metadata = {key: kept[key] for key in _MINARI_KEPT_METADATA if key in kept}
    for key in ("author", "author_email"):  # minari keeps these as sets (JSON lists on disk)
        if key in metadata:
            value = metadata[key]
            metadata[key] = {value} if isinstance(value, str) else set(value)
    return metadata


def _seed(value: Any) -> int | None:
    """An episode seed for Minari from episode info ``seed`` (int, or the decimal str of one), else ``None``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    return None


# ---------------------------------------------------------------------------------------------------------
# Shared helpers.


def _header(source: _Source, streams: list[StreamSpec]) -> dict[str, Any]:
    """The JSON header that lets a clonekit reader restore the streams, episode info names and extra exactly."""
    return {
        "format": HEADER_FORMAT,
        "version": HEADER_VERSION,
        "streams": [{"name": spec.name, **spec.to_json()} for spec in streams],
        "episode_info": source.episode_info,
        "extra": source.extra,
    }


def _parse_header(where: str, raw: Any) -> tuple[list[StreamSpec], list[str], dict[str, Any]]:
    """Streams, episode info names and extra from a header written by ``_header`` (JSON text or parsed)."""
    header = raw if isinstance(raw, dict) else _json_object(where, raw)
    if header.get("format") != HEADER_FORMAT:
        raise DatasetError(f"{where}: format: expected {HEADER_FORMAT!r}, found {header.get('format')!r}")
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= HEADER_VERSION:
        raise DatasetError(f"{where}: version: expected an int in [1, {HEADER_VERSION}], found {version!r}")
    entries, episode_info, extra = header.get("streams"), header.get("episode_info"), header.get("extra")
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("name"), str) for e in entries
    ):
        raise DatasetError(f"{where}: streams: expected a list of objects with a 'name', found {entries!r}")
    if not isinstance(episode_info, list) or not all(isinstance(name, str) for name in episode_info):
        raise DatasetError(f"{where}: episode_info: expected a list of names, found {episode_info!r}")
    if not isinstance(extra, dict):
        raise DatasetError(f"{where}: extra: expected a JSON object, found {extra!r}")
    streams = []
    for entry in entries:
        spec_json = {key: value for key, value in entry.items() if key != "name"}
        try:
            streams.append(StreamSpec.from_json(entry["name"], spec_json))
        except DatasetError as e:
            raise DatasetError(f"{where}: streams: {e}") from e
    if not any(spec.name == "obs" for spec in streams):
        raise DatasetError(f"{where}: streams: missing the required stream 'obs'")
    return streams, episode_info, extra


def _json_object(where: str, raw: Any) -> dict[str, Any]:
    """Parse a JSON object stored as an HDF5 attribute (str or bytes)."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    if not isinstance(text, str):
        raise DatasetError(f"{where}: expected a JSON string, found {type(raw).__name__}")
    try:
        value = json.loads(text)
    except ValueError as e:
        raise DatasetError(f"{where}: not valid JSON: {_one_line(e)}") from e
    if not isinstance(value, dict):
        raise DatasetError(f"{where}: expected a JSON object, found {type(value).__name__}")
    return value


def _gym_spaces(
    where: str, spaces: Mapping[str, Any], obs_spec: StreamSpec, actions: Callable[[], np.ndarray]
) -> tuple[gym.spaces.Space, gym.spaces.Space, list[str]]:
    """The stored observation and action spaces, or ones derived from the data (with a warning each)."""
    warnings = []
    observation_space, reason = _stored_space(spaces, "observation")
    if observation_space is None:
        observation_space = _box(np.dtype(obs_spec.dtype), obs_spec.shape)
        warnings.append(f"{where}: {reason}; using observation space {observation_space} (from stream 'obs')")
    action_space, reason = _stored_space(spaces, "action")
    if action_space is None:
        action_space = _action_space(actions())
        warnings.append(f"{where}: {reason}; using action space {action_space} (from the actions)")
    return observation_space, action_space, warnings


def _stored_space(spaces: Mapping[str, Any], key: str) -> tuple[gym.spaces.Space | None, str]:
    """``spaces[key]`` as a gymnasium space, or ``None`` and why not."""
    if key not in spaces:
        return None, f"no {key!r} space stored"
    try:
        return space_from_json(spaces[key]), ""
    except ConfigError as e:
        return None, f"the {key!r} space is not a gymnasium space clonekit can read ({e})"


def _box(dtype: np.dtype, shape: tuple[int, ...]) -> gym.spaces.Box:
    """The widest Box of ``dtype``: ``[-inf, inf]`` for floats, the full range for integers, ``[0, 1]`` for bool."""
    if dtype.kind == "f":
        return gym.spaces.Box(-np.inf, np.inf, shape, dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return gym.spaces.Box(info.min, info.max, shape, dtype)
    return gym.spaces.Box(0, 1, shape, dtype)


def _action_space(actions: np.ndarray) -> gym.spaces.Space:
    """``Discrete(max + 1)`` for non-negative integer scalar actions, else the widest Box of their dtype."""
    if actions.dtype.kind in "iu" and actions.ndim == 1 and actions.size and actions.min() >= 0:
        return gym.spaces.Discrete(int(actions.max()) + 1)
    return _box(actions.dtype, actions.shape[1:])


def _storable_dtype(dtype: np.dtype) -> str | None:
    """The clonekit dtype that holds ``dtype`` exactly (float16 widens to float32), or ``None`` if none does."""
    dtype = np.dtype(dtype)
    if dtype.name in ARRAY_DTYPES:
        return dtype.name
    if dtype.kind == "f":
        return "float32" if dtype.itemsize < 4 else "float64"
    return None


def _python_scalar(where: str, value: Any) -> int | float | str:
    """An episode info value (numpy scalar, bytes) as the plain int, float or str the writer takes."""
    if isinstance(value, (bool, np.bool_)):
        raise DatasetError(f"{where}: expected an int, float or str episode info value, found bool {value!r}")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, str):
        return value
    raise DatasetError(f"{where}: expected an int, float or str episode info value, found {type(value).__name__}")


def _require_package(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"this conversion needs the package {module!r}; install it with: pip install 'clonekit[{extra}]'"
        )


def _temp_path(dst: Path) -> Path:
    """A hidden path next to ``dst`` to write into before the final rename."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    return dst.parent / f".{dst.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"


def _install(tmp: Path, dst: Path) -> None:
    """Rename the finished ``tmp`` (file or directory) to ``dst``, replacing what is there (checked by the caller)."""
    if tmp.is_file() or not (dst.exists() or dst.is_symlink()):
        os.replace(tmp, dst)  # atomic: readers see the old dst or the new one
    else:
        old = dst.parent / f".{dst.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
        os.rename(dst, old)
        try:
            os.rename(tmp, dst)
        except BaseException:
            os.rename(old, dst)  # put the previous dataset back before reporting the failure
            raise
        shutil.rmtree(old)
    fsync_dir(dst.parent)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_tree(root: Path) -> None:
    """Flush every file and directory under ``root`` to stable storage before it is renamed into place."""
    for directory, _, files in os.walk(root):
        for name in files:
            _fsync_file(Path(directory) / name)
        fsync_dir(Path(directory))


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


_READERS: dict[str, Callable[[Path], _Source]] = {
    "clonekit": _read_clonekit,
    "hdf5": _read_hdf5,
    "minari": _read_minari,
}
_WRITERS: dict[str, Callable[[_Source, Path, bool], list[str]]] = {
    "clonekit": _write_clonekit,
    "hdf5": _write_hdf5,
    "minari": _write_minari,
}
