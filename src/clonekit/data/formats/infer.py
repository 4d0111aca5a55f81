"""What a foreign file does not say, derived from its arrays: storable dtypes, flattened observations, spaces.

Foreign files (robomimic HDF5, D4RL, Minari made elsewhere) carry no clonekit spaces, so they are derived
the same way for every format: the observation space is the widest ``Box`` of the observations' dtype
(``[-inf, inf]`` for floats, the full range for integers), and the action space is ``Discrete(max + 1)`` for
non-negative integer scalar actions, else the widest ``Box`` of their dtype. The widest box claims nothing the
file does not say; observed bounds would turn the next dataset's slightly larger action into an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from clonekit.data.format import ARRAY_DTYPES, StreamSpec
from clonekit.data.formats.source import Episode, Source
from clonekit.data.spaces import space_from_json, space_to_json
from clonekit.errors import ConfigError, DatasetError


def storable_dtype(dtype: np.dtype) -> str | None:
    """The clonekit dtype that holds ``dtype`` exactly (float16 widens to float32), or ``None`` if none does."""
    dtype = np.dtype(dtype)
    if dtype.name in ARRAY_DTYPES:
        return dtype.name
    if dtype.kind == "f":
        return "float32" if dtype.itemsize < 4 else "float64"
    return None


def concat_flat(where: str, keys: list[str], parts: list[np.ndarray]) -> np.ndarray:
    """Flatten each ``(T, ...)`` part to ``(T, -1)`` float32 and concatenate them into ``(T, D)``.

    How several observation keys (robomimic obs groups, Minari Dict spaces) become clonekit's one ``obs``.
    """
    length = len(parts[0])
    for key, part in zip(keys, parts, strict=True):
        if part.ndim == 0 or len(part) != length:
            raise DatasetError(f"{where}/{key}: expected {length} rows like {keys[0]!r}, found shape {part.shape}")
    return np.concatenate([part.reshape(length, -1).astype(np.float32) for part in parts], axis=1)


def widest_box(dtype: np.dtype, shape: tuple[int, ...]) -> gym.spaces.Box:
    """The widest Box of ``dtype``: ``[-inf, inf]`` for floats, the full range for integers, ``[0, 1]`` for bool."""
    if dtype.kind == "f":
        return gym.spaces.Box(-np.inf, np.inf, shape, dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return gym.spaces.Box(info.min, info.max, shape, dtype)
    return gym.spaces.Box(0, 1, shape, dtype)


def action_space_of(actions: np.ndarray) -> gym.spaces.Space:
    """``Discrete(max + 1)`` for non-negative integer scalar actions ``(N,)``, else the widest Box of their dtype."""
    if actions.dtype.kind in "iu" and actions.ndim == 1 and actions.size and actions.min() >= 0:
        return gym.spaces.Discrete(int(actions.max()) + 1)
    return widest_box(actions.dtype, actions.shape[1:])


def derived_spaces(
    path: Any, obs_spec: StreamSpec, actions: Callable[[], np.ndarray], warnings: list[str]
) -> dict[str, Any]:
    """JSON spaces of a foreign file that stores none (see the module docstring), derived from its observation
    spec and its ``actions()``; the derivation is noted in ``warnings``."""
    observation_space = widest_box(np.dtype(obs_spec.dtype), obs_spec.shape)
    action_space = action_space_of(actions())
    warnings.append(
        f"{path}: no spaces stored; derived observation {observation_space} and action {action_space} from the data"
    )
    return {"observation": space_to_json(observation_space), "action": space_to_json(action_space)}


def gym_spaces(
    where: str, spaces: Mapping[str, Any], obs_spec: StreamSpec, actions: Callable[[], np.ndarray]
) -> tuple[gym.spaces.Space, gym.spaces.Space, list[str]]:
    """The stored observation and action spaces, or ones derived from the data (with a warning each).

    ``actions()`` reads every action, so it is called only when no action space is stored.
    """
    warnings = []
    observation_space, reason = _stored_space(spaces, "observation")
    if observation_space is None:
        observation_space = widest_box(np.dtype(obs_spec.dtype), obs_spec.shape)
        warnings.append(f"{where}: {reason}; using observation space {observation_space} (from stream 'obs')")
    action_space, reason = _stored_space(spaces, "action")
    if action_space is None:
        action_space = action_space_of(actions())
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


def file_source(
    path: Path,
    streams: list[StreamSpec],
    spaces: dict[str, Any],
    env: dict[str, Any],
    episode_info: list[str],
    extra: dict[str, Any],
    episodes: Callable[[], Iterator[Episode]],
    actions: Callable[[], np.ndarray],
    warnings: list[str],
    foreign: bool,
    spaces_where: str,
) -> Source:
    """The :class:`Source` of an HDF5-family file. A file from elsewhere (``foreign``) has no spaces: they are
    derived from the data now, so that every output records them; ``spaces_where`` names where a clonekit-written
    file keeps them, in errors."""
    obs_spec = next(spec for spec in streams if spec.name == "obs")
    if foreign:
        spaces = derived_spaces(path, obs_spec, actions, warnings)
    return Source(
        path=path,
        streams=streams,
        spaces=spaces,
        env=env,
        episode_info=episode_info,
        extra=extra,
        episodes=episodes,
        gym_spaces=lambda: gym_spaces(spaces_where, spaces, obs_spec, actions),
        warnings=warnings,
    )
