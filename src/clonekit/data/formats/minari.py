"""Minari datasets, read and written (``pip install 'clonekit[minari]'``).

Layout written: a directory ``DST/data/`` with ``metadata.json`` and ``main_data.hdf5``, written with minari's
own ``MinariStorage`` (HDF5 backend, no JPEG encoding so images stay exact)::

    observations      the obs of every step, then the final observation: next_obs[-1] when the dataset has a
                      next_obs stream, else a copy of the last obs (warning). next_obs itself is not stored: it
                      is the observations shifted by one.
    actions, rewards, terminations, truncations  <- action, reward, terminated, truncated
    infos/<name>      every other array stream, T + 1 rows aligned with observations (the last row repeats step
                      T - 1). Text streams cannot be held and are dropped, one warning each.
    episode attrs     id = the episode index; seed = the episode info ``seed`` when it holds integers
    metadata.json     dataset_id, minari_version, the gymnasium spaces (from meta.json, else derived from the data), the
                      env_spec and descriptive keys of a dataset that came from Minari, and a ``clonekit`` block
                      (stream specs, env, spaces, extra, episode info values) from which clonekit -> minari ->
                      clonekit restores the header exactly. A dataset that did not come from Minari gets the
                      env_spec of the registered gymnasium env its env block names (``clonekit.data.formats.gym_id``,
                      e.g. data collected with ``gym:CartPole-v1``), so ``recover_environment()`` works; clonekit's
                      own multi-task families name none.

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

import json
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from clonekit.data.atomic import fsync_tree, install, temp_path
from clonekit.data.format import REQUIRED_STREAMS, StreamSpec, array_stream
from clonekit.data.formats.gym_id import gymnasium_env, gymnasium_env_spec
from clonekit.data.formats.infer import concat_flat, storable_dtype, widest_box
from clonekit.data.formats.source import (
    Episode,
    Source,
    Steps,
    header,
    parse_header,
    parse_header_extras,
    require_package,
)
from clonekit.data.messages import one_line
from clonekit.data.spaces import space_to_json
from clonekit.errors import ConfigError, DatasetError

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


def minari_data_path(path: Path) -> Path | None:
    """The directory holding a Minari dataset's ``metadata.json``: ``path/data`` or ``path`` itself."""
    for candidate in (path / "data", path):
        if (candidate / "metadata.json").is_file():
            return candidate
    return None


def read_minari(path: Path) -> Source:
    """Open the Minari dataset at ``path`` (its directory or its ``data`` directory) for conversion."""
    require_package("minari", "minari")
    import minari
    from minari.dataset.minari_storage import MinariStorage

    data_path = minari_data_path(path)
    if data_path is None:
        raise DatasetError(f"{path}: no data/metadata.json; not a Minari dataset")
    try:
        dataset = minari.MinariDataset(data_path)
        raw_metadata = MinariStorage.read_raw_metadata(data_path)
        seeds = [meta.get("seed") for meta in dataset.storage.get_episode_metadata(dataset.episode_indices)]
        first = next(iter(dataset.iterate_episodes([0]))) if dataset.total_episodes else None
    except (ValueError, KeyError, TypeError, AssertionError, OSError) as e:  # minari validates with asserts
        raise DatasetError(f"{path}: not a readable Minari dataset: {one_line(e)}") from e
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
        streams, episode_info, extra = parse_header(where, block)
        env, spaces, info_values = parse_header_extras(where, block, episode_info, dataset.total_episodes)
    else:
        streams = _minari_streams(path, first, obs_keys, warnings)
        extra = {"converted_from": {"format": "minari"}}
        env = _minari_env(raw_metadata)
        if obs_keys is not None:
            observation_space = widest_box(np.dtype(np.float32), streams[0].shape)
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
            raise DatasetError(f"{path}: cannot read the episodes: {one_line(e)}") from e

    return Source(
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
    obs_dtype, action_dtype = storable_dtype(observations.dtype), storable_dtype(actions.dtype)
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
        dtype = storable_dtype(array.dtype)
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
    return concat_flat(f"{where}: observations", obs_keys, [np.asarray(flat[key]) for key in obs_keys])


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


def write_minari(source: Source, dst: Path, overwrite: bool) -> list[str]:
    """Write ``source`` as a local Minari dataset at ``dst`` (with minari's own ``MinariStorage``)."""
    require_package("minari", "minari")
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

    tmp = temp_path(dst)
    try:
        tmp.mkdir(parents=True)
        storage = MinariStorage.new(
            tmp.resolve() / "data",  # minari joins a relative data path onto itself when it sizes the files
            observation_space=observation_space,
            action_space=action_space,
            data_format="hdf5",
            jpeg_encoding=False,  # JPEG is lossy; the data must come back exactly
        )
        storage.update_episodes(buffers())
        block = header(source, kept) | {
            "env": source.env,
            "spaces": source.spaces,
            "episode_info_values": info_values,
        }
        metadata: dict[str, Any] = {
            "dataset_id": dataset_id,
            "minari_version": minari.__version__,
            "description": f"Converted by clonekit from {source.path.name}",
            **_minari_metadata_from_env(source.env, warnings),
            "clonekit": block,
        }
        storage.update_metadata(metadata)
        fsync_tree(tmp)
        install(tmp, dst)
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


def _minari_metadata_from_env(env: Mapping[str, Any], warnings: list[str]) -> dict[str, Any]:
    """The Minari metadata of a dataset that came from Minari (kept in the env block), ready for minari's writer;
    else the ``env_spec`` of the registered gymnasium env the env block names, if any."""
    kept = env.get("minari")
    if not isinstance(kept, dict):
        return _env_spec_metadata(env, warnings)
    metadata = {key: kept[key] for key in _MINARI_KEPT_METADATA if key in kept}
    for key in ("author", "author_email"):  # minari keeps these as sets (JSON lists on disk)
        if key in metadata:
            value = metadata[key]
            metadata[key] = {value} if isinstance(value, str) else set(value)
    return metadata


def _env_spec_metadata(env: Mapping[str, Any], warnings: list[str]) -> dict[str, Any]:
    """``{"env_spec": JSON}`` for the registered gymnasium env the env block names; ``{}`` when it names none."""
    named = gymnasium_env(env)
    if named is None:
        return {}
    env_id, make_kwargs = named
    try:
        return {"env_spec": gymnasium_env_spec(env_id, make_kwargs).to_json()}
    except (gym.error.Error, ValueError, TypeError) as e:  # e.g. kwargs that are not JSON, a callable entry point
        warnings.append(f"no env_spec for {env_id!r} (recover_environment() will not work): {one_line(e)}")
        return {}


def _seed(value: Any) -> int | None:
    """An episode seed for Minari from episode info ``seed`` (int, or the decimal str of one), else ``None``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    return None
