"""Detectors of three defects of a demonstration set, and their precision and recall against a ground truth.

Discrete actions and a ``demonstrator`` stream; states keyed as in :mod:`clonekit.quality.report`. In order:

1. **Detours** (steps): the steps of loops back to an earlier state of the same episode
   (:mod:`clonekit.quality.extraneous`) that last at least ``min_detour_steps`` steps. Shorter loops (a wrong
   move undone at once, a single bump into a wall) are the footprint of noise, not of a detour.
2. Per demonstrator, over its steps outside detected detours: ``agreement`` (how often its action is the other
   demonstrators' most common action in the states they also visited, as ``agreement_with_others``) and
   ``self_conflict`` (the action conflict, in bits, within its own data: how much it disagrees with itself in
   states it visited more than once).
3. **Incompatible** demonstrators: agreement below ``agreement_below`` while consistent with themselves
   (``self_conflict`` below ``consistent_below``): a style that differs from the others systematically.
4. **Noise** (steps): outside detected detours and incompatible demonstrators, the steps whose action is not the
   other demonstrators' most common action in that state (states only this demonstrator visited: no verdict).

:func:`detection_metrics` scores a detection against ground truth: precision, recall and F1 with 95% intervals
from a cluster bootstrap over ``groups`` (episodes for steps; demonstrators for incompatible episodes), the
:mod:`clonekit.evaluation.stats` machinery every other number uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clonekit.data import Dataset
from clonekit.errors import DatasetError
from clonekit.evaluation.stats import bootstrap_interval, summarize
from clonekit.quality.extraneous import loop_steps, segments
from clonekit.quality.report import action_conflict, state_keys


@dataclass(frozen=True)
class Detections:
    """What :func:`detect_defects` found: ``(N,)`` bool step masks and the incompatible demonstrators."""

    detour_steps: np.ndarray
    noise_steps: np.ndarray
    incompatible: list[str]
    demonstrators: dict[str, dict[str, float | None]] = field(default_factory=dict)


def long_loop_steps(states: np.ndarray, starts: np.ndarray, lengths: np.ndarray, min_steps: int) -> np.ndarray:
    """``(N,)`` bool: steps on loops back to an earlier state of their episode lasting ``min_steps`` or more."""
    mask = np.zeros(len(states), dtype=bool)
    for start, length in zip(starts.tolist(), lengths.tolist(), strict=True):
        for a, b in segments(loop_steps(states[start : start + length])):
            if b - a >= min_steps:
                mask[start + a : start + b] = True
    return mask


def _majority(states: np.ndarray, actions: np.ndarray, voters: np.ndarray, num_states: int) -> np.ndarray:
    """``(num_states, A)`` action counts of the ``voters`` steps per state."""
    table = np.zeros((num_states, int(actions.max()) + 1), dtype=np.int64)
    np.add.at(table, (states[voters], actions[voters]), 1)
    return table


def detect_defects(
    dataset: Dataset,
    min_detour_steps: int = 4,
    agreement_below: float = 0.95,
    consistent_below: float = 0.1,
) -> Detections:
    """Run the three detectors on ``dataset`` (see the module docstring)."""
    if "demonstrator" not in dataset.streams:
        raise DatasetError(f"{dataset.path}: defect detection needs a 'demonstrator' stream")
    actions = np.asarray(dataset.column("action"))
    if actions.dtype.kind not in "biu" or actions.ndim != 1:
        raise DatasetError(
            f"{dataset.path}: defect detection needs discrete actions, found {actions.dtype} {actions.shape}"
        )
    actions = actions.astype(np.int64)
    states, _ = state_keys(np.asarray(dataset.column("obs")))
    num_states = int(states.max()) + 1 if len(states) else 0
    who = np.asarray([str(w) for w in dataset.column("demonstrator")], dtype=object)
    detours = long_loop_steps(states, dataset.episode_starts, dataset.episode_lengths, min_detour_steps)
    kept = ~detours
    rows: dict[str, dict[str, float | None]] = {}
    disagree = np.zeros(len(actions), dtype=bool)
    for name in sorted(set(who.tolist())):
        mine, others = kept & (who == name), kept & (who != name)
        counts = _majority(states, actions, others, num_states)
        seen = counts.sum(axis=1) > 0
        judged = mine & seen[states]
        majority = counts.argmax(axis=1)
        disagree |= judged & (majority[states] != actions)
        agreement = float((majority[states[judged]] == actions[judged]).mean()) if judged.any() else None
        conflict, _ = action_conflict(states[mine], actions[mine], discrete=True)
        rows[name] = {"agreement": agreement, "self_conflict": conflict, "judged_steps": int(judged.sum())}
    incompatible = [
        name
        for name, row in rows.items()
        if row["agreement"] is not None
        and row["agreement"] < agreement_below
        and float(row["self_conflict"] or 0.0) < consistent_below
    ]
    noise = disagree & ~np.isin(who, incompatible)
    return Detections(detour_steps=detours, noise_steps=noise, incompatible=incompatible, demonstrators=rows)


def detection_metrics(truth: np.ndarray, detected: np.ndarray, groups: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """``{"precision", "recall", "f1"}`` cells of ``detected`` against ``truth`` (``(N,)`` bool over the same
    items), intervals by a cluster bootstrap over ``groups`` (``(N,)`` ids). Precision of an empty detection
    and recall of an empty truth are undefined (``nan``, ``n`` 0)."""
    truth, detected, groups = np.asarray(truth, bool), np.asarray(detected, bool), np.asarray(groups)
    precision = summarize(truth[detected], seed, groups=groups[detected])
    recall = summarize(detected[truth], seed, groups=groups[truth])
    involved = truth | detected
    tp, fp, fn = (truth & detected)[involved], (~truth & detected)[involved], (truth & ~detected)[involved]
    n = int(involved.sum())
    tp_, fp_, fn_ = (x.astype(np.float64) for x in (tp, fp, fn))

    def f1_of(w: np.ndarray) -> np.ndarray:
        hits = w @ tp_
        return 2 * hits / np.maximum(2 * hits + w @ fp_ + w @ fn_, 1e-12)

    f1 = float(f1_of(np.ones((1, n)))[0]) if n else float("nan")
    lo, hi = bootstrap_interval(f1_of, groups[involved], seed) if n else (float("nan"), float("nan"))
    f1_cell = {
        "mean": f1,
        "ci95": [lo, hi],
        "n": n,
        "n_tasks": int(np.unique(groups[involved]).size),
        "method": "cluster_bootstrap",
        "tp": int(tp.sum()),
        "fp": int(fp.sum()),
        "fn": int(fn.sum()),
    }
    return {"precision": precision, "recall": recall, "f1": f1_cell}


__all__ = ["Detections", "detect_defects", "detection_metrics", "long_loop_steps"]
