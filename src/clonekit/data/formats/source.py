"""The in-between form of every conversion: a ``Source`` (clonekit header plus episodes) and the JSON header
that HDF5, D4RL and Minari outputs carry so that reading them back restores the clonekit header exactly."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from clonekit.data.format import StreamSpec, json_object
from clonekit.errors import ConfigError, DatasetError

# The JSON header that HDF5 files (attr data.clonekit), D4RL files (root attr clonekit) and Minari datasets
# (metadata.json "clonekit") carry.
HEADER_FORMAT = "clonekit.convert"
HEADER_VERSION = 1

Steps = dict[str, np.ndarray | list[str]]  # one episode: stream name -> (T, *shape) array or T str
EpisodeInfo = dict[str, int | float | str]
Episode = tuple[Steps, EpisodeInfo]


@dataclass
class Source:
    """A dataset opened for conversion: the clonekit header, and a way to read its episodes one at a time.

    ``spaces`` is the JSON stored in ``meta.json`` (copied verbatim to clonekit and HDF5 outputs);
    ``gym_spaces()`` gives the observation and action spaces as gymnasium objects, deriving missing ones from the
    data (with warnings), which only a Minari output needs. ``warnings`` are what the reader had to drop,
    flatten or make up, one line each.
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


def header(source: Source, streams: list[StreamSpec]) -> dict[str, Any]:
    """The JSON header that lets a clonekit reader restore the streams, episode info names and extra exactly."""
    return {
        "format": HEADER_FORMAT,
        "version": HEADER_VERSION,
        "streams": [{"name": spec.name, **spec.to_json()} for spec in streams],
        "episode_info": source.episode_info,
        "extra": source.extra,
    }


def parse_header(where: str, raw: Any) -> tuple[list[StreamSpec], list[str], dict[str, Any]]:
    """Streams, episode info names and extra from a header written by ``header`` (JSON text or parsed)."""
    parsed = json_object(where, raw)
    if parsed.get("format") != HEADER_FORMAT:
        raise DatasetError(f"{where}: format: expected {HEADER_FORMAT!r}, found {parsed.get('format')!r}")
    version = parsed.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= HEADER_VERSION:
        raise DatasetError(f"{where}: version: expected an int in [1, {HEADER_VERSION}], found {version!r}")
    entries, episode_info, extra = parsed.get("streams"), parsed.get("episode_info"), parsed.get("extra")
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


def parse_header_extras(
    where: str, block: Mapping[str, Any], episode_info: list[str], num_episodes: int
) -> tuple[dict[str, Any], dict[str, Any], dict[str, list[Any]]]:
    """The ``env``, ``spaces`` and ``episode_info_values`` that a header carries where the format itself has no
    place for them (Minari metadata, D4RL attrs), checked against the episode info names and episode count."""
    env, spaces, values = block.get("env"), block.get("spaces"), block.get("episode_info_values")
    if not isinstance(env, dict) or not isinstance(spaces, dict) or not isinstance(values, dict):
        raise DatasetError(f"{where}: expected JSON objects under 'env', 'spaces' and 'episode_info_values'")
    for name in episode_info:
        column = values.get(name)
        if not isinstance(column, list) or len(column) != num_episodes:
            raise DatasetError(f"{where}: episode_info_values[{name!r}]: expected a list of {num_episodes} values")
    return env, spaces, values


def python_scalar(where: str, value: Any) -> int | float | str:
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


def require_package(module: str, extra: str) -> None:
    """``ConfigError`` naming the clonekit extra to install unless ``module`` is importable."""
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"this conversion needs the package {module!r}; install it with: pip install 'clonekit[{extra}]'"
        )
