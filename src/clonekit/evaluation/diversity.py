"""Behaviour diversity as D3IL measures it: which discrete behaviours the successful rollouts show.

Given the behaviour (mode) id of every successful rollout, ``p(b)`` is the fraction showing behaviour
``b`` among ``K`` possible ones. The *behaviour entropy* is ``H(p) / log(K)`` (in [0, 1]: 0 when one
behaviour is always chosen, 1 when all ``K`` are equally frequent); *modes* is the number of distinct
behaviours seen. Both come with a 95% percentile bootstrap interval over the successful rollouts, like
every other number (see :mod:`clonekit.evaluation.stats`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

from clonekit.evaluation.stats import N_RESAMPLES


def _counts(modes: np.ndarray, num_behaviours: int) -> np.ndarray:
    """Counts ``(..., K)`` of mode ids along the last axis of ``modes`` ``(..., n)``."""
    return (modes[..., None] == np.arange(num_behaviours)).sum(axis=-2)


def _entropy(counts: np.ndarray, num_behaviours: int) -> np.ndarray:
    p = counts / np.maximum(counts.sum(axis=-1, keepdims=True), 1)
    h = -(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)).sum(axis=-1)
    return np.asarray(h / math.log(num_behaviours)) + 0.0  # no -0.0 for a single behaviour


def behaviour_entropy(modes: np.ndarray, num_behaviours: int) -> float:
    """``H(p) / log(K)`` of mode ids ``modes`` ``(n,)`` in ``[0, K)``; NaN for no rollouts."""
    modes = np.asarray(modes, dtype=np.int64)
    if modes.size == 0:
        return float("nan")
    return float(_entropy(_counts(modes, num_behaviours), num_behaviours))


def diversity_metrics(
    success: np.ndarray, modes: np.ndarray, num_behaviours: int, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """``{"entropy": ..., "modes": ...}`` each ``{"mean", "ci95", "n"}`` over successful rollouts.

    ``success`` ``(N,)`` bool and ``modes`` ``(N,)`` int64 per rollout; a successful rollout whose
    behaviour is unknown (id -1) is left out. ``n`` is the number of rollouts counted.
    """
    if num_behaviours < 2:
        raise ValueError(f"num_behaviours: expected >= 2, got {num_behaviours}")
    ids = np.asarray(modes, dtype=np.int64)[np.asarray(success, dtype=bool)]
    ids = ids[(ids >= 0) & (ids < num_behaviours)]
    if ids.size == 0:
        empty = {"mean": float("nan"), "ci95": [float("nan"), float("nan")], "n": 0}
        return {"entropy": dict(empty), "modes": dict(empty)}

    def entropy(x: np.ndarray, axis: int = -1) -> np.ndarray:
        return _entropy(_counts(np.moveaxis(x, axis, -1), num_behaviours), num_behaviours)

    def distinct(x: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.asarray((_counts(np.moveaxis(x, axis, -1), num_behaviours) > 0).sum(axis=-1), dtype=np.float64)

    out: dict[str, dict[str, Any]] = {}
    for name, statistic in (("entropy", entropy), ("modes", distinct)):
        value = float(statistic(ids))
        if ids.size == 1 or np.all(ids == ids[0]):
            lo = hi = value
        else:
            res = stats.bootstrap(
                (ids,),
                statistic,
                n_resamples=N_RESAMPLES,
                confidence_level=0.95,
                method="percentile",
                rng=np.random.default_rng(seed),
                vectorized=True,
            )
            lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        out[name] = {"mean": value, "ci95": [lo, hi], "n": int(ids.size)}
    return out
