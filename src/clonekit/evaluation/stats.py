"""Summaries with uncertainty: every number comes with n, a 95% interval, and the method that made it.

The unit of resampling must be the unit that is independent:

* Binary outcomes (success) of independent episodes (each on its own task): the **Wilson** score interval
  (``method="wilson"``); :func:`exact_interval` gives the Clopper-Pearson one.
* Episodes that share a task are not independent (the same maze, the same start state): a **cluster
  bootstrap** resamples tasks, then episodes within each drawn task (``method="cluster_bootstrap"``), so a
  policy repeated on a few tasks gets the width those few tasks allow. When every episode has the same
  binary outcome the bootstrap has no spread to resample; then the Wilson interval over the ``n_tasks``
  tasks is reported (``method="wilson_over_tasks"``), never a zero-width one.
* Other per-episode values (returns, lengths) of independent episodes: a percentile **bootstrap** of the
  mean (``method="bootstrap"``). All-equal values give a zero-width interval, marked ``method="constant"``.
* Runs (training seeds) are the unit of a claim about a method: :func:`stratified_bootstrap` resamples runs
  within each task, as rliable does, for the mean and the interquartile mean (:func:`interquartile_mean`).

All resampling is seeded, so the same inputs give the same interval.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import numpy as np

N_RESAMPLES = 2000
CONFIDENCE = 0.95
# Resamples drawn at once: bounds the (chunk, n) weight matrix for large evaluations.
_CHUNK = 250

Statistic = Callable[[np.ndarray], np.ndarray]  # (R, n) resamples (weights or values) -> (R,) statistics


def _scipy_stats() -> ModuleType:
    """``scipy.stats``, imported on first use: it takes longer to import than the rest of clonekit's training
    path, and every training process (torchrun workers, CLI commands) imports this module."""
    from scipy import stats

    return stats


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``successes / n``; ``(nan, nan)`` for ``n == 0``."""
    if n <= 0:
        return float("nan"), float("nan")
    if not 0 <= successes <= n:
        raise ValueError(f"successes: expected 0 <= successes <= n = {n}, got {successes}")
    z = float(_scipy_stats().norm.ppf(0.5 + confidence / 2))
    p = successes / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # Clamped to contain p: at p = 1 rounding would otherwise put the upper bound a hair below the mean.
    return min(p, max(0.0, float(center - half))), max(p, min(1.0, float(center + half)))


def exact_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Clopper-Pearson ("exact") interval of ``successes / n``; ``(nan, nan)`` for ``n == 0``."""
    if n <= 0:
        return float("nan"), float("nan")
    ci = _scipy_stats().binomtest(int(successes), int(n)).proportion_ci(confidence, method="exact")
    return float(ci.low), float(ci.high)


def interquartile_mean(values: np.ndarray | list[float]) -> float:
    """Interquartile mean: the mean of the middle 50% (25% trimmed from each end), as rliable defines it."""
    x = np.asarray(values, dtype=np.float64).ravel()
    return float(_scipy_stats().trim_mean(x, 0.25)) if x.size else float("nan")


def rowwise_mean(rows: np.ndarray) -> np.ndarray:
    """Mean of each row of ``(R, k)``."""
    return np.asarray(rows.mean(axis=1))


def rowwise_iqm(rows: np.ndarray) -> np.ndarray:
    """Interquartile mean of each row of ``(R, k)``."""
    return np.asarray(_scipy_stats().trim_mean(rows, 0.25, axis=1))


def resample_weights(
    groups: np.ndarray, seed: int, n_resamples: int = N_RESAMPLES, chunk: int = _CHUNK
) -> Iterator[np.ndarray]:
    """Two-stage (cluster) bootstrap resamples of ``n`` values, as multiplicity weights ``(R, n)``.

    Each resample draws as many groups as there are, with replacement, and for each drawn group as many of
    its values as it has, with replacement; the weight of a value is how often it was drawn. With every
    value in its own group this is the ordinary bootstrap. Yields chunks of at most ``chunk`` resamples.
    """
    groups = np.asarray(groups).ravel()
    _, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(int(inverse.max()) + 1)] if groups.size else []
    rng = np.random.default_rng(seed)
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        if len(members) == groups.size:  # every value its own group: the ordinary bootstrap
            yield rng.multinomial(groups.size, np.full(groups.size, 1 / groups.size), size=size).astype(np.float64)
            continue
        weights = np.zeros((size, groups.size))
        # How often each group is drawn, then, per group, draws of its values (all its copies at once).
        group_draws = rng.multinomial(len(members), np.full(len(members), 1 / len(members)), size=size)
        for g, idx in enumerate(members):
            weights[:, idx] = rng.multinomial(group_draws[:, g] * len(idx), np.full(len(idx), 1 / len(idx)))
        yield weights


def bootstrap_interval(
    statistic: Statistic, groups: np.ndarray, seed: int, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Percentile interval of ``statistic`` (a function of resample weights) under :func:`resample_weights`."""
    values = np.concatenate([statistic(w) for w in resample_weights(groups, seed)])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha])
    return float(lo), float(hi)


def weighted_mean(x: np.ndarray) -> Statistic:
    """The mean of ``x`` under resample weights ``(R, n)``."""
    return lambda w: (w @ x) / np.maximum(w.sum(axis=1), 1e-12)


def summarize(
    values: np.ndarray | list[float],
    seed: int = 0,
    iqm: bool = False,
    groups: np.ndarray | list[Any] | None = None,
) -> dict[str, Any]:
    """``{"mean", "ci95": [lo, hi], "n", "n_tasks", "method"}`` (+ ``"iqm"``) of per-episode ``values``.

    ``groups`` gives each value's task (any hashable ids); values that share a task are resampled together
    (see the module docstring for the method chosen). Without ``groups`` every value is its own task.
    ``values`` of dtype bool are binary outcomes (Wilson interval when independent).
    """
    binary = np.asarray(values).dtype == np.bool_
    x = np.asarray(values, dtype=np.float64).ravel()
    g = np.arange(x.size) if groups is None else np.asarray(groups).ravel()
    if g.shape != x.shape:
        raise ValueError(f"groups: expected one id per value ({x.size}), got {g.size}")
    if x.size == 0:
        nan = float("nan")
        return {"mean": nan, "ci95": [nan, nan], "n": 0, "n_tasks": 0, "method": "empty"}
    n_tasks = int(np.unique(g).size)
    mean = float(x.mean())
    if binary and n_tasks == x.size:
        method, (lo, hi) = "wilson", wilson_interval(int(x.sum()), x.size)
    elif binary and np.all(x == x[0]):
        method, (lo, hi) = "wilson_over_tasks", wilson_interval(n_tasks if x[0] else 0, n_tasks)
    elif np.all(x == x[0]):
        method, lo, hi = "constant", mean, mean
    else:
        method = "bootstrap" if n_tasks == x.size else "cluster_bootstrap"
        lo, hi = bootstrap_interval(weighted_mean(x), g, seed)
    out: dict[str, Any] = {"mean": mean, "ci95": [lo, hi], "n": int(x.size), "n_tasks": n_tasks, "method": method}
    if iqm:
        out["iqm"] = interquartile_mean(x)
    return out


def stratified_bootstrap(
    scores: np.ndarray, statistic: Statistic, seed: int, n_resamples: int = N_RESAMPLES
) -> tuple[float, float]:
    """95% percentile interval of ``statistic`` over ``scores`` ``(runs, tasks)``, resampling runs within each
    task independently (rliable's stratified bootstrap). ``statistic`` maps resampled score sets ``(R, runs *
    tasks)`` to ``(R,)`` values, e.g. :func:`rowwise_mean` or :func:`rowwise_iqm`."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.size == 0:
        raise ValueError(f"scores: expected a non-empty (runs, tasks) array, got shape {scores.shape}")
    runs, tasks = scores.shape
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, runs, size=(n_resamples, runs, tasks))
    draws = statistic(scores[picks, np.arange(tasks)].reshape(n_resamples, -1))
    alpha = (1 - CONFIDENCE) / 2
    lo, hi = np.quantile(draws, [alpha, 1 - alpha])
    return float(lo), float(hi)


def format_metric(metric: dict[str, Any], digits: int = 2) -> str:
    """``0.93 [0.88, 0.97] n=200`` (``n=200/50 tasks`` when episodes share tasks; ``n=1000, 5 seeds`` for an
    aggregate over training seeds, with ``/K tasks`` when it is stratified over K tasks)."""
    lo, hi = metric["ci95"]
    n = f"n={metric['n']}"
    tasks = metric.get("n_tasks")
    if "n_seeds" in metric:
        n += (f"/{tasks} tasks" if tasks is not None and tasks > 1 else "") + f", {metric['n_seeds']} seeds"
    elif tasks not in (None, metric["n"]):
        n += f"/{tasks} tasks"
    return f"{metric['mean']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}] {n}"
