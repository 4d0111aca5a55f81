"""Behaviour diversity as D3IL measures it: which discrete behaviours the successful rollouts show.

Given the behaviour (mode) id of every successful rollout, ``p(b)`` is the fraction showing behaviour
``b`` among ``K`` possible ones. The *behaviour entropy* is ``H(p) / log(K)`` (in [0, 1]: 0 when one
behaviour is always chosen, 1 when all ``K`` are equally frequent); *modes* is the number of distinct
behaviours seen. Both come with a 95% percentile bootstrap interval over the successful rollouts (over
their tasks when rollouts share tasks), like every other number (see :mod:`clonekit.evaluation.stats`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from clonekit.evaluation.stats import bootstrap_interval


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
    success: np.ndarray,
    modes: np.ndarray,
    num_behaviours: int,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, dict[str, Any]]:
    """``{"entropy": ..., "modes": ...}`` each ``{"mean", "ci95", "n", "n_tasks", "method"}`` over successful
    rollouts.

    ``success`` ``(N,)`` bool and ``modes`` ``(N,)`` int64 per rollout; a successful rollout whose
    behaviour is unknown (id -1) is left out. ``n`` is the number of rollouts counted. ``groups`` ``(N,)``
    gives each rollout's task: rollouts that share a task are resampled together (cluster bootstrap, see
    :mod:`clonekit.evaluation.stats`); both metrics are plug-in estimates, so the interval is a percentile
    bootstrap of the estimate, and all-equal behaviour gives a zero-width interval (``method="constant"``).
    """
    if num_behaviours < 2:
        raise ValueError(f"num_behaviours: expected >= 2, got {num_behaviours}")
    success = np.asarray(success, dtype=bool)
    ids = np.asarray(modes, dtype=np.int64)[success]
    tasks = (np.arange(success.size) if groups is None else np.asarray(groups).ravel())[success]
    keep = (ids >= 0) & (ids < num_behaviours)
    ids, tasks = ids[keep], tasks[keep]
    if ids.size == 0:
        empty = {"mean": float("nan"), "ci95": [float("nan"), float("nan")], "n": 0, "n_tasks": 0, "method": "empty"}
        return {"entropy": dict(empty), "modes": dict(empty)}
    onehot = (ids[:, None] == np.arange(num_behaviours)).astype(np.float64)  # (n, K)
    n_tasks = int(np.unique(tasks).size)
    method = "bootstrap" if n_tasks == ids.size else "cluster_bootstrap"

    def entropy(weights: np.ndarray) -> np.ndarray:
        return _entropy(weights @ onehot, num_behaviours)

    def distinct(weights: np.ndarray) -> np.ndarray:
        return np.asarray(((weights @ onehot) > 0).sum(axis=-1), dtype=np.float64)

    out: dict[str, dict[str, Any]] = {}
    for name, statistic in (("entropy", entropy), ("modes", distinct)):
        value = float(statistic(np.ones((1, ids.size)))[0])
        if np.all(ids == ids[0]):
            lo, hi, how = value, value, "constant"
        else:
            (lo, hi), how = bootstrap_interval(statistic, tasks, seed), method
        out[name] = {"mean": value, "ci95": [lo, hi], "n": int(ids.size), "n_tasks": n_tasks, "method": how}
    return out
