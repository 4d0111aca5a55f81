"""Sirius-style segment classes and per-transition weights (Liu et al., *Robot Learning on the Job*, RSS 2023).

Each step of a run's dataset falls in one class:

* ``DEMO``: from the demonstrations the run started from;
* ``INTERVENTION``: the intervener was in control (``intervention`` true);
* ``PRE_INTERVENTION``: one of the ``window`` policy steps just before an intervention started (the
  behaviour the intervener judged bad enough to step in);
* ``AUTONOMOUS``: any other step the policy took (the intervener let it run, so it is implicitly approved).

Sirius trains weighted behaviour cloning on all of it, weighting interventions up and the pre-intervention
window down. Here each class has a fixed multiplier (:class:`SegmentWeights`); the weights become the
dataset's ``weight`` stream, which training reads as sampling weights (``TrainConfig.sample_weights``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clonekit.config import check

DEMO, AUTONOMOUS, INTERVENTION, PRE_INTERVENTION = 0, 1, 2, 3
SEGMENT_NAMES = ("demo", "autonomous", "intervention", "pre_intervention")


@dataclass(frozen=True)
class SegmentWeights:
    """Sampling weight of each segment class (Sirius: intervention up, pre-intervention down).

    Args:
        demo: Weight of demonstration steps.
        autonomous: Weight of policy steps outside a pre-intervention window.
        intervention: Weight of steps the intervener controlled.
        pre_intervention: Weight of the ``pre_window`` policy steps before each intervention.
        pre_window: Length of the pre-intervention window, in steps.
    """

    demo: float = 1.0
    autonomous: float = 1.0
    intervention: float = 2.0
    pre_intervention: float = 0.0
    pre_window: int = 4

    def __post_init__(self) -> None:
        for name in SEGMENT_NAMES:
            value = getattr(self, name)
            check(np.isfinite(value) and value >= 0, name, "a finite weight >= 0", value)
        check(self.pre_window >= 0, "pre_window", ">= 0", self.pre_window)

    def of(self, classes: np.ndarray) -> np.ndarray:
        """``(T,)`` float32 weights of segment ``classes`` ``(T,)``."""
        table = np.array([getattr(self, name) for name in SEGMENT_NAMES], dtype=np.float32)
        return table[classes]


def segment_classes(intervention: np.ndarray, demo: bool, window: int) -> np.ndarray:
    """Segment class ``(T,)`` int64 of each step of one episode with ``intervention`` flags ``(T,)``.

    ``demo``: the episode is a demonstration (every step ``DEMO``). Otherwise intervention steps are
    ``INTERVENTION``, the ``window`` non-intervention steps before each intervention start are
    ``PRE_INTERVENTION``, and the rest ``AUTONOMOUS``.
    """
    flags = np.asarray(intervention, dtype=bool)
    if demo:
        return np.full(len(flags), DEMO, dtype=np.int64)
    classes = np.where(flags, INTERVENTION, AUTONOMOUS).astype(np.int64)
    starts = np.flatnonzero(flags & ~np.concatenate([[False], flags[:-1]]))
    for start in starts.tolist():
        before = np.arange(max(0, start - window), start)
        before = before[~flags[before]]
        classes[before] = PRE_INTERVENTION
    return classes


__all__ = [
    "AUTONOMOUS",
    "DEMO",
    "INTERVENTION",
    "PRE_INTERVENTION",
    "SEGMENT_NAMES",
    "SegmentWeights",
    "segment_classes",
]
