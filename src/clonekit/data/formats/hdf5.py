"""robomimic-style HDF5 (one file, via h5py), read and written.

Layout written::

    data                          attrs: total (steps), env_args (JSON, see below), clonekit (JSON header: the
                                  streams in order with their specs, episode_info names, extra)
    data/demo_{i}                 episode i; attrs: num_samples (T) and episode_info/<name> per episode info column
    data/demo_{i}/obs/obs         stream obs (T, *obs_shape)
    data/demo_{i}/next_obs/obs    stream next_obs; without one, obs shifted by one step, the last row repeating the
                                  episode's last obs (a warning: the final observation was not recorded)
    data/demo_{i}/actions         stream action; scalar (discrete) actions as (T, 1), as robomimic expects
    data/demo_{i}/rewards         stream reward (float32)
    data/demo_{i}/dones           stream terminated (bool)
    data/demo_{i}/truncated       stream truncated (bool)
    data/demo_{i}/<name>          every other stream: arrays as they are, text as variable-length UTF-8 strings
    mask/<name>                   the dataset's episode splits (``clonekit.data.splits``), as robomimic filter keys:
                                  the demo names of each split (bytes), e.g. mask/train and mask/valid

``env_args`` holds what robomimic's ``FileUtils.get_env_metadata_from_dataset`` returns: ``type`` is always
``2`` (robomimic's ``EnvType.GYM_TYPE``: the only type not tied to robosuite or iGibson); ``env_name`` and
``env_kwargs`` are the gymnasium id and ``gymnasium.make`` kwargs when the dataset names a registered gymnasium
env (``clonekit.data.formats.gym_id``), else the clonekit env id and its kwargs. robomimic's ``EnvGym`` makes
envs with the legacy ``gym`` package, so recreating the env through robomimic also needs the id registered
there. Two more keys carry clonekit's own: ``env`` (the clonekit env block) and ``spaces``.

Nothing is dropped, so clonekit -> hdf5 -> clonekit is exact (same content fingerprint): the clonekit header
records each stream's shape, so (T, 1) actions are read back as the (T,) stream they came from, and a derived
next_obs not in the header is not read back. Observations are stored as clonekit holds them: an image stream
stays (C, H, W), so declare it ``low_dim`` to robomimic (its ``rgb`` modality expects (H, W, C)). Refused with
a ``DatasetError``: annotation streams named ``actions``, ``rewards`` or ``dones`` (robomimic's own names) and
text with a NUL character (HDF5 strings end at NUL).

A robomimic file written elsewhere (no ``clonekit`` attr) is read as: demos in order of their number; one
obs key -> ``obs``; several obs keys -> each flattened to (T, -1) float32 and concatenated along the last axis in
sorted key order (a warning lists the order); a ``next_obs`` group the same way -> ``next_obs``; ``dones`` != 0 ->
``terminated``, and without ``dones`` nothing terminates (warning); without ``truncated`` an episode is truncated
at its last step unless it terminated there; without ``rewards`` rewards are 0 (warning); every other per-step
dataset -> an annotation stream of the same name (anything else is skipped with a warning). Its spaces are derived
from the arrays (``clonekit.data.formats.infer``). In any file, ``mask/<name>`` (lists of demo names) becomes
split ``name`` of ``extra["splits"]`` (episode indices); in a file clonekit wrote, ``mask/`` wins over the
header's splits when they differ (robomimic's ``split_train_val`` script may have rewritten it), with a warning.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clonekit.data.atomic import fsync_file, install, temp_path
from clonekit.data.format import REQUIRED_STREAMS, StreamSpec, array_stream, json_object
from clonekit.data.formats.gym_id import gymnasium_env
from clonekit.data.formats.h5 import H5_ERRORS, check_no_nul, extra_stream_spec, h5_dataset, read_values
from clonekit.data.formats.infer import concat_flat, file_source, storable_dtype
from clonekit.data.formats.source import (
    Episode,
    EpisodeInfo,
    Source,
    Steps,
    header,
    parse_header,
    python_scalar,
    require_package,
)
from clonekit.data.messages import one_line
from clonekit.data.splits import SPLITS_KEY, check_splits
from clonekit.errors import DatasetError

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
# robomimic.envs.env_base.EnvType.GYM_TYPE, the env type written to env_args (see the module docstring).
ROBOMIMIC_GYM_TYPE = 2
_DEMO_NAME = re.compile(r"^demo_(\d+)$")


def read_hdf5(path: Path) -> Source:
    """Open the robomimic-style HDF5 file at ``path`` for conversion (written by clonekit or elsewhere)."""
    require_package("h5py", "hdf5")
    import h5py

    warnings: list[str] = []
    try:
        with h5py.File(path, "r") as file:
            data = file.get("data")
            if not isinstance(data, h5py.Group):
                found = ", ".join(file.keys()) or "nothing"
                raise DatasetError(
                    f"{path}: no top-level 'data' group (found: {found}); not a robomimic-style HDF5 file "
                    "(nor D4RL-style: no top-level 'observations' or 'actions')"
                )
            demos = _demo_names(path, data, warnings)
            if "clonekit" in data.attrs:
                streams, episode_info, extra = parse_header(f"{path}: attr data.clonekit", data.attrs["clonekit"])
                env, spaces = _parse_env_args(f"{path}: attr data.env_args", data.attrs.get("env_args"))
                layout = None
            else:
                layout = _foreign_layout(path, data, demos, warnings)
                streams, episode_info, extra = layout.streams, [], {"converted_from": {"format": "hdf5"}}
                env, spaces = _foreign_env(path, data, warnings), {}
            splits = _read_masks(path, file, demos)
    except H5_ERRORS as e:
        raise DatasetError(f"{path}: cannot read as HDF5: {one_line(e)}") from e
    if splits is not None and splits != extra.get(SPLITS_KEY):
        if SPLITS_KEY in extra:
            warnings.append(f"{path}: mask/ differs from the splits in the clonekit header; mask/ is kept")
        extra = {**extra, SPLITS_KEY: splits}
    action_spec = next(spec for spec in streams if spec.name == "action")

    def read_demo(where: str, group: Any) -> Episode:
        if layout is None:
            return _read_clonekit_demo(where, group, streams, episode_info)
        return _read_foreign_demo(where, group, layout), {}

    def episodes() -> Iterator[Episode]:
        try:
            with h5py.File(path, "r") as file:
                for name in demos:
                    yield read_demo(f"{path}: data/{name}", file["data"][name])
        except H5_ERRORS as e:
            raise DatasetError(f"{path}: cannot read: {one_line(e)}") from e

    def actions() -> np.ndarray:
        try:
            with h5py.File(path, "r") as file:
                parts = [np.asarray(file["data"][name]["actions"][()]) for name in demos]
        except H5_ERRORS as e:
            raise DatasetError(f"{path}: cannot read the actions: {one_line(e)}") from e
        return _as_stream_shape(np.concatenate(parts), action_spec)

    return file_source(
        path,
        streams,
        spaces,
        env,
        episode_info,
        extra,
        episodes,
        actions,
        warnings,
        layout is not None,
        f"{path}: attr data.env_args",
    )


def write_hdf5(source: Source, dst: Path, overwrite: bool) -> list[str]:
    """Write ``source`` as a robomimic-style HDF5 file at ``dst`` (the layout above); nothing is dropped."""
    require_package("h5py", "hdf5")
    import h5py

    for spec in source.streams:
        if spec.name in _HDF5_TAKEN_NAMES:
            raise DatasetError(
                f"{source.path}: stream {spec.name!r} cannot be stored in robomimic HDF5: "
                f"{', '.join(_HDF5_TAKEN_NAMES)} are robomimic's own datasets; rename the stream"
            )
    env_args = _robomimic_env_args(source)
    derive_next_obs = not any(spec.name == "next_obs" for spec in source.streams)
    warnings: list[str] = []
    if derive_next_obs:
        warnings.append(
            f"{source.path}: no 'next_obs' stream, so next_obs/obs is obs shifted by one step and the last next_obs "
            "of each episode repeats its last obs (the final observation was not recorded)"
        )
    tmp = temp_path(dst)
    try:
        # libver v108 stores attributes densely, so a big env block (many tasks) still fits in env_args.
        with h5py.File(tmp, "w", libver=("v108", "latest")) as file:
            data = file.create_group("data")
            data.attrs["env_args"] = json.dumps(env_args, ensure_ascii=False)
            data.attrs["clonekit"] = json.dumps(header(source, source.streams), ensure_ascii=False)
            total = 0
            for i, (steps, info) in enumerate(source.episodes()):
                demo = data.create_group(f"demo_{i}")
                demo.attrs["num_samples"] = len(steps["action"])
                for spec in source.streams:
                    path = _HDF5_PATHS.get(spec.name, spec.name)
                    values = steps[spec.name]
                    if spec.kind == "text":
                        texts = [str(text) for text in values]
                        check_no_nul(f"{dst}: episode {i}, stream {spec.name!r}", texts)
                        demo.create_dataset(path, data=texts, dtype=h5py.string_dtype("utf-8"))
                    elif spec.name == "action" and spec.shape == ():
                        demo.create_dataset(path, data=np.asarray(values).reshape(-1, 1))  # robomimic reads (T, D)
                    else:
                        demo.create_dataset(path, data=np.asarray(values))
                if derive_next_obs:
                    obs = np.asarray(steps["obs"])
                    demo.create_dataset(_HDF5_PATHS["next_obs"], data=np.concatenate([obs[1:], obs[-1:]]))
                for name, value in info.items():
                    demo.attrs[_HDF5_INFO_ATTR + name] = value
                total += len(steps["action"])
            data.attrs["total"] = total
            if SPLITS_KEY in source.extra:
                splits = check_splits(f"{source.path}: extra.{SPLITS_KEY}", source.extra[SPLITS_KEY], len(data))
                for name, indices in splits.items():
                    file.create_dataset(f"mask/{name}", data=np.array([f"demo_{i}" for i in indices], dtype="S"))
        fsync_file(tmp)
        install(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return warnings


def _robomimic_env_args(source: Source) -> dict[str, Any]:
    """The ``env_args`` attr: robomimic's ``env_name``, ``type`` and ``env_kwargs``, plus clonekit's env and spaces."""
    named = gymnasium_env(source.env)
    if named is not None:
        env_name, env_kwargs = named
    else:
        env_name, env_kwargs = str(source.env.get("id") or ""), source.env.get("kwargs", {})
    return {
        "env_name": env_name,
        "type": ROBOMIMIC_GYM_TYPE,
        "env_kwargs": env_kwargs,
        "env": source.env,
        "spaces": source.spaces,
    }


def _read_masks(path: Path, file: Any, demos: list[str]) -> dict[str, list[int]] | None:
    """The splits of robomimic's filter keys ``mask/<name>`` (demo names) as episode indices; ``None`` without
    a ``mask`` group."""
    import h5py

    mask = file.get("mask")
    if mask is None:
        return None
    if not isinstance(mask, h5py.Group):
        raise DatasetError(f"{path}: 'mask' is a dataset; expected a group of filter keys mask/<name>")
    position = {name: i for i, name in enumerate(demos)}
    splits = {}
    for name in mask:
        item = mask[name]
        if not isinstance(item, h5py.Dataset) or item.ndim != 1:
            found = f"shape {item.shape}" if isinstance(item, h5py.Dataset) else f"a {type(item).__name__}"
            raise DatasetError(f"{path}: mask/{name}: expected a 1-D dataset of demo names, found {found}")
        names = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in item[()]]
        unknown = [n for n in names if n not in position]
        if unknown:
            raise DatasetError(f"{path}: mask/{name}: {unknown[0]!r} is not a demo_<i> group under 'data'")
        splits[name] = sorted({position[n] for n in names})
    return check_splits(f"{path}: mask", splits, len(demos))


def _as_stream_shape(values: np.ndarray, spec: StreamSpec) -> np.ndarray:
    """Scalar actions written as (T, 1) for robomimic back as the (T,) stream the header records."""
    if spec.kind == "array" and spec.shape == () and values.ndim == 2 and values.shape[1] == 1:
        return values.reshape(-1)
    return values


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
    """The clonekit env block and spaces from the ``env_args`` JSON written by ``write_hdf5``."""
    if raw is None:
        raise DatasetError(f"{where}: missing; expected the JSON written with the clonekit header")
    env_args = json_object(where, raw)
    env, spaces = env_args.get("env"), env_args.get("spaces")
    if not isinstance(env, dict) or not isinstance(spaces, dict):
        raise DatasetError(f"{where}: expected JSON objects under 'env' and 'spaces', found {env!r} and {spaces!r}")
    return env, spaces


def _read_clonekit_demo(where: str, group: Any, streams: list[StreamSpec], episode_info: list[str]) -> Episode:
    """One demo of a file written by ``write_hdf5``: every stream at its path, episode info from attrs."""
    steps: Steps = {}
    for spec in streams:
        values = read_values(h5_dataset(where, group, _HDF5_PATHS.get(spec.name, spec.name)), spec)
        steps[spec.name] = _as_stream_shape(values, spec) if isinstance(values, np.ndarray) else values
    _check_num_samples(where, group, len(steps["action"]))
    info: EpisodeInfo = {}
    for name in episode_info:
        key = _HDF5_INFO_ATTR + name
        if key not in group.attrs:
            raise DatasetError(f"{where}: missing attr {key!r} (episode_info {name!r} in the clonekit header)")
        info[name] = python_scalar(f"{where}: attr {key!r}", group.attrs[key])
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
    actions = h5_dataset(where, first, "actions")
    length = actions.shape[0] if actions.ndim else 0
    action_dtype = storable_dtype(actions.dtype)
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
        taken = name in produced or name in REQUIRED_STREAMS
        spec_or_reason = extra_stream_spec(name, first[name], taken, length, "actions")
        if isinstance(spec_or_reason, StreamSpec):
            annotations.append(spec_or_reason)
            continue
        warnings.append(f"{where}/{name}: skipped: {spec_or_reason}")
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
        env_args = json_object(f"{path}: attr data.env_args", raw)
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
    """One key keeps its dtype and shape; several become one float32 vector (see ``concat_flat``)."""
    if len(keys) == 1:
        item = group[keys[0]]
        dtype = storable_dtype(item.dtype)
        if dtype is None or item.ndim == 0:
            raise DatasetError(
                f"{where}/{group.name.split('/')[-1]}/{keys[0]}: expected a numeric per-step array, "
                f"found {item.dtype} {item.shape}"
            )
        return array_stream(name, dtype, item.shape[1:])
    width = sum(math.prod(group[key].shape[1:]) for key in keys)
    return array_stream(name, "float32", (width,))


def _read_foreign_demo(where: str, group: Any, layout: _ForeignLayout) -> Steps:
    actions = np.asarray(h5_dataset(where, group, "actions")[()])
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
        steps[spec.name] = read_values(h5_dataset(where, group, spec.name), spec)
    return steps


def _read_obs(where: str, demo: Any, group_name: str, keys: list[str]) -> np.ndarray:
    group = demo.get(group_name)
    parts = [np.asarray(h5_dataset(f"{where}/{group_name}", group, key)[()]) for key in keys]
    return parts[0] if len(parts) == 1 else concat_flat(f"{where}/{group_name}", keys, parts)


def _per_step(where: str, group: Any, key: str, length: int) -> np.ndarray:
    """A per-step scalar dataset as ``(T,)`` (robomimic files sometimes store ``(T, 1)``)."""
    values = np.asarray(h5_dataset(where, group, key)[()])
    if values.size != length:
        raise DatasetError(f"{where}/{key}: expected {length} values (one per action), found shape {values.shape}")
    return values.reshape(length)


def _check_num_samples(where: str, group: Any, length: int) -> None:
    if "num_samples" in group.attrs and int(group.attrs["num_samples"]) != length:
        raise DatasetError(
            f"{where}: attr num_samples is {int(group.attrs['num_samples'])} but there are {length} actions"
        )
