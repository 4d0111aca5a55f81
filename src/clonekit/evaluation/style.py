"""Style agreement: does an executed episode show the style that was asked of it?

A *style classifier* maps executed trajectories to style ids; on Avoiding the style is the path (mode), and
:func:`clonekit.envs.avoiding.classify_paths` (the gap nearest to where each obstacle row was crossed) is a
deterministic function of the trajectory, so it is the classifier (no model is trained). ``style_agreement``
is the share of episodes whose shown style equals the asked one; an episode whose style cannot be told (id
-1, e.g. it crashed before the last row) disagrees.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from clonekit.envs.avoiding import classify_paths
from clonekit.evaluation.stats import summarize

# trajectories (T, N, *obs_shape) of observations, step by step -> style id (N,) int64, -1 when none fits
StyleClassifier = Callable[[np.ndarray], np.ndarray]

STYLE_CLASSIFIERS: dict[str, StyleClassifier] = {"avoiding": classify_paths}


def style_agreement(
    shown: np.ndarray, asked: np.ndarray, seed: int = 0, groups: np.ndarray | None = None
) -> dict[str, Any]:
    """Share of episodes whose ``shown`` style id equals the ``asked`` one (both ``(N,)``), summarized as
    :func:`clonekit.evaluation.stats.summarize` does (episodes that share a ``groups`` id, e.g. a start
    state, are resampled together)."""
    shown, asked = np.asarray(shown), np.asarray(asked)
    if shown.shape != asked.shape:
        raise ValueError(f"style_agreement: shown {shown.shape} and asked {asked.shape} differ in shape")
    return summarize(shown == asked, seed, groups=groups)


__all__ = ["STYLE_CLASSIFIERS", "StyleClassifier", "style_agreement"]
