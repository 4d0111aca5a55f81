"""Gymnasium spaces to and from JSON, for a dataset's ``meta.json``.

Only ``Box`` and ``Discrete`` are supported. A ``Box`` whose bounds are the same everywhere stores the
bound as one scalar, so a ``(3, 64, 64)`` image space stays a few bytes. JSON has no infinity, so infinite
bounds are written as the strings ``"inf"`` and ``"-inf"``.

    >>> space_to_json(gymnasium.spaces.Discrete(4))
    {'type': 'Discrete', 'n': 4, 'start': 0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from clonekit.data.messages import one_line
from clonekit.errors import ConfigError

SUPPORTED_SPACES = ("Box", "Discrete")


def space_to_json(space: gym.spaces.Space) -> dict[str, Any]:
    """Describe ``space`` as a JSON-able dict; ``ConfigError`` for spaces other than Box and Discrete."""
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": [int(n) for n in space.shape],
            "dtype": np.dtype(space.dtype).name,
            "low": _bound_to_json(space.low, "low"),
            "high": _bound_to_json(space.high, "high"),
        }
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    raise ConfigError(
        f"space type {type(space).__name__!r} cannot be stored in a dataset; "
        f"expected one of: {', '.join(SUPPORTED_SPACES)}"
    )


def space_from_json(d: Mapping[str, Any]) -> gym.spaces.Space:
    """Rebuild the space described by ``d`` (as made by ``space_to_json``); ``ConfigError`` if malformed."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"space JSON: expected an object, found {type(d).__name__}")
    kind = d.get("type")
    if kind == "Box":
        shape = _require(d, "shape", list)
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
            raise ConfigError(f"space JSON (Box) field 'shape': expected a list of non-negative ints, found {shape!r}")
        dtype_name = _require(d, "dtype", str)
        try:
            dtype = np.dtype(dtype_name)
        except TypeError as e:
            raise ConfigError(f"space JSON (Box) field 'dtype': {dtype_name!r} is not a numpy dtype") from e
        low = _bound_from_json(d.get("low"), "low", dtype, tuple(shape))
        high = _bound_from_json(d.get("high"), "high", dtype, tuple(shape))
        try:
            return gym.spaces.Box(low=low, high=high, shape=tuple(shape), dtype=dtype)
        except (ValueError, TypeError, AssertionError) as e:
            raise ConfigError(f"space JSON (Box): gymnasium rejected it: {one_line(e)}") from e
    if kind == "Discrete":
        n = _require(d, "n", int)
        start = d.get("start", 0)
        if isinstance(start, bool) or not isinstance(start, int):
            raise ConfigError(f"space JSON (Discrete) field 'start': expected an int, found {start!r}")
        if n < 1:
            raise ConfigError(f"space JSON (Discrete) field 'n': expected >= 1, found {n}")
        return gym.spaces.Discrete(n, start=start)
    raise ConfigError(f"space JSON field 'type': expected one of: {', '.join(SUPPORTED_SPACES)}, found {kind!r}")


def _require(d: Mapping[str, Any], field: str, kind: type) -> Any:
    """``d[field]``, checked to be an instance of ``kind`` (bools are not accepted as ints)."""
    space_type = d.get("type")
    if field not in d:
        raise ConfigError(f"space JSON ({space_type}): missing field {field!r}")
    value = d[field]
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise ConfigError(f"space JSON ({space_type}) field {field!r}: expected {kind.__name__}, found {value!r}")
    return value


def _bound_to_json(bound: np.ndarray, field: str) -> Any:
    """A scalar when every element is equal, else nested lists; infinities become strings."""
    if np.issubdtype(bound.dtype, np.floating) and np.isnan(bound).any():
        raise ConfigError(f"Box {field}: NaN bounds cannot be stored")
    if bound.size > 0 and np.all(bound == bound.flat[0]):
        return _encode_number(bound.flat[0].item())
    return _encode_nested(bound.tolist())


def _encode_nested(value: Any) -> Any:
    if isinstance(value, list):
        return [_encode_nested(v) for v in value]
    return _encode_number(value)


def _encode_number(value: Any) -> Any:
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _bound_from_json(value: Any, field: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """Decode a bound to an array of ``shape``, broadcasting a scalar."""
    if value is None:
        raise ConfigError(f"space JSON (Box): missing field {field!r}")
    try:
        decoded = np.asarray(_decode_nested(value), dtype=dtype)
    except (ValueError, TypeError, OverflowError) as e:
        raise ConfigError(f"space JSON (Box) field {field!r}: not numbers of dtype {dtype.name}: {e}") from e
    if decoded.ndim == 0:
        return np.full(shape, decoded, dtype=dtype)
    if decoded.shape != shape:
        raise ConfigError(
            f"space JSON (Box) field {field!r}: expected shape {shape} (field 'shape'), found {decoded.shape}"
        )
    return decoded


def _decode_nested(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode_nested(v) for v in value]
    if value == "inf":
        return math.inf
    if value == "-inf":
        return -math.inf
    if isinstance(value, str):
        raise ValueError(f"unexpected string {value!r}")
    return value
