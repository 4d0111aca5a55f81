"""Value checks: what a writer accepts for one episode of a stream, and which stored values a reader refuses.

The writer converts and checks every episode before anything is written (``array_steps``, ``text_steps``),
so a bad episode leaves the writer unchanged. ``Dataset.check_values`` scans stored columns with
``first_bad_value`` for what would poison training silently: bool bytes other than 0/1, NaN or inf in the
streams models consume, actions outside the action space.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from clonekit.data.format import FINITE_STREAMS, StreamSpec
from clonekit.errors import DatasetError


def array_steps(where: str, spec: StreamSpec, value: Any) -> np.ndarray:
    """Check one episode of an array stream and convert it to the storage dtype, ``(T, *shape)``.

    The dtype must cast to the stream's within its kind (float64 -> float32 is fine, float -> int is not) and
    integers must fit the target range; ``FINITE_STREAMS`` must be finite. Bool comes back viewed as uint8.
    """
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


def text_steps(where: str, value: Any) -> list[str]:
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


def first_bad_value(
    spec: StreamSpec, values: np.ndarray, action_space: gym.spaces.Space | None
) -> tuple[int, Any, str] | None:
    """First bad row of ``values`` ``(rows, *shape)`` as ``(row, value found, what was expected)``, or None.

    ``action_space`` is given for the ``action`` and ``expert_action`` streams: a Discrete range or Box bounds
    the values must lie in.
    """
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
