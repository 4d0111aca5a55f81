"""Summaries with uncertainty: every number comes with n and a 95% bootstrap confidence interval."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

N_RESAMPLES = 2000


def summarize(values: np.ndarray | list[float], seed: int = 0, iqm: bool = False) -> dict[str, Any]:
    """``{"mean", "ci95": [lo, hi], "n"}`` (+ ``"iqm"``) of per-episode ``values``.

    The interval is a percentile bootstrap of the mean (scipy.stats.bootstrap, 2000 resamples, seeded);
    when every value is equal the interval is that value. IQM is the 25%-trimmed mean.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        return {"mean": float("nan"), "ci95": [float("nan"), float("nan")], "n": 0}
    mean = float(x.mean())
    if np.all(x == x[0]) or x.size == 1:
        lo = hi = mean
    else:
        res = stats.bootstrap(
            (x,),
            np.mean,
            n_resamples=N_RESAMPLES,
            confidence_level=0.95,
            method="percentile",
            rng=np.random.default_rng(seed),
            vectorized=True,
        )
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    out: dict[str, Any] = {"mean": mean, "ci95": [lo, hi], "n": int(x.size)}
    if iqm:
        out["iqm"] = float(stats.trim_mean(x, 0.25))
    return out


def format_metric(metric: dict[str, Any], digits: int = 2) -> str:
    """``0.93 [0.88, 0.97] n=200``."""
    lo, hi = metric["ci95"]
    return f"{metric['mean']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}] n={metric['n']}"
