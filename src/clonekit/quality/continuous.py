"""Detectors of four defects of a demonstration set with continuous observations and actions.

The counterpart of :mod:`clonekit.quality.detect` (discrete actions, exact states) for data such as Avoiding's
positions and velocities, where a state never repeats exactly and demonstrators may follow several distinct
paths (so the other demonstrators' actions in a state are not one consensus but a few). Units: observations and
actions are standardized per dimension (divided by their standard deviation over all steps), and distances in
observation space are counted in **median steps** (the median distance between consecutive observations of an
episode), so no threshold depends on the env's scale. In order:

1. **Idle** (steps): runs of at least ``min_idle_steps`` steps whose displacement (to the next observation) is
   below ``still_below`` median steps: the demonstrator held still.
2. **Detours** (steps): loops back to an earlier point of the same episode (within ``return_within`` median
   steps; :func:`near_loop_steps`, the continuous :func:`clonekit.quality.extraneous.loop_steps`) lasting at
   least ``min_detour_steps`` steps, outside idle runs. Cut out, the episode reaches the same point and goes on
   as before: the segment is extraneous. Shorter loops (a wrong move undone at once) are the footprint of noise.
3. **Incompatible** demonstrators: outside idle and detour steps, the agreement of demonstrator A with B is the
   share of A's steps near one of B's (within ``neighbour_radius`` median steps per coordinate) where B also
   took an action within ``action_tolerance`` (per standardized dimension) there: the nearest of B's actions,
   not their mean, so that a demonstrator on any of several paths finds its peers (:func:`pairwise_agreement`).
   A's agreement is the median over the others; below ``agreement_below``, most demonstrators rarely act as A
   does. A group of like-minded demonstrators agrees among itself, so this assumes they are a minority (the
   discrete detector's majority action assumes the same).
4. **Noise** (steps): outside idle and detour steps and incompatible demonstrators, steps that are both
   *self-inconsistent* and *unsupported*. Self-inconsistency of step ``t``: the distance from its action to the
   nearest of the actions of the ``window`` steps before and after it in its episode (a controller that
   switches waypoints still agrees with one side, and one noisy neighbour does not hide a clean step);
   inconsistent: above ``noise_above`` times its median. Unsupported: other demonstrators' consistent steps
   lie within ``neighbour_radius`` but none acted within ``action_tolerance`` of it (steps with no such
   neighbour get no verdict, as states only one demonstrator visited in the discrete detector). Neither test
   alone is enough: a demonstrator's own jitter and its waypoint switches make some clean steps inconsistent
   (others' support clears them), and near a fork the others head several ways, so a random heading is
   sometimes supported by chance (its own neighbours still disagree).

Score the detections against a ground truth with :func:`clonekit.quality.detect.detection_metrics`; cut them
out with :func:`curate_detected`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from clonekit.config import check
from clonekit.data import Dataset
from clonekit.errors import DatasetError
from clonekit.quality.curate import Filter, curate
from clonekit.quality.extraneous import segments


@dataclass(frozen=True)
class ContinuousDetectConfig:
    """Thresholds of :func:`detect_continuous_defects` (see the module docstring for each rule).

    Args:
        still_below: Idle: displacement below this many median steps.
        min_idle_steps: Idle: runs at least this long.
        return_within: Detours: back within this many median steps of an earlier point.
        min_detour_steps: Detours: loops at least this long.
        neighbour_radius: Agreement: others' steps within this many median steps, per coordinate.
        action_tolerance: Agreement: actions within this, per standardized action dimension.
        agreement_below: Incompatible: median agreement with the others under this.
        min_judged_steps: Incompatible: a pair of demonstrators with fewer steps near each other is left out of
            the median (a demonstrator with no such pair gets no verdict).
        window: Noise: neighbouring actions on each side that make its reference.
        noise_above: Noise: self-inconsistency above this multiple of its median.
    """

    still_below: float = 0.5
    min_idle_steps: int = 3
    return_within: float = 0.5
    min_detour_steps: int = 5
    neighbour_radius: float = 1.0
    action_tolerance: float = 0.5
    agreement_below: float = 0.5
    min_judged_steps: int = 10
    window: int = 2
    noise_above: float = 2.0

    def __post_init__(self) -> None:
        for name in ("still_below", "return_within", "neighbour_radius", "action_tolerance", "noise_above"):
            check(getattr(self, name) > 0, name, "> 0", getattr(self, name))
        for name in ("min_idle_steps", "min_detour_steps", "min_judged_steps", "window"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check(0 <= self.agreement_below <= 1, "agreement_below", "in [0, 1]", self.agreement_below)


@dataclass(frozen=True)
class ContinuousDetections:
    """What :func:`detect_continuous_defects` found: ``(N,)`` bool step masks, the incompatible demonstrators
    and, per demonstrator, its ``agreement`` (``None``: no other demonstrator to compare with), ``peers`` (the
    demonstrators it was compared with) and ``noise_share`` (share of its steps flagged as noise)."""

    idle_steps: np.ndarray
    detour_steps: np.ndarray
    noise_steps: np.ndarray
    incompatible: list[str]
    demonstrators: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    median_step: float = 0.0


def _standardized(values: np.ndarray) -> np.ndarray:
    """``(N, D)`` values divided by their per-dimension standard deviation (dimensions that never vary: by 1)."""
    flat = values.reshape(len(values), -1).astype(np.float64)
    scale = flat.std(axis=0)
    return flat / np.where(scale > 0, scale, 1.0)


def displacements(points: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``(N,)`` distance from each step's point to the next one of its episode (``nan`` at an episode's last)."""
    out = np.full(len(points), np.nan)
    ahead = np.linalg.norm(points[1:] - points[:-1], axis=1)
    out[:-1] = ahead
    out[(starts + lengths - 1)[lengths > 0]] = np.nan
    return out


def runs_at_least(mask: np.ndarray, starts: np.ndarray, lengths: np.ndarray, min_steps: int) -> np.ndarray:
    """``(N,)`` bool: the steps of ``mask`` in runs of ``min_steps`` or more within one episode."""
    out = np.zeros(len(mask), dtype=bool)
    for start, length in zip(starts.tolist(), lengths.tolist(), strict=True):
        for a, b in segments(mask[start : start + length]):
            if b - a >= min_steps:
                out[start + a : start + b] = True
    return out


def near_loops(points: np.ndarray, tolerance: float) -> list[tuple[int, int]]:
    """The loops of one episode (points ``(T, D)``, step ``t`` acts at point ``t``) back to within ``tolerance``
    of an earlier point, as half-open step ranges ``(i, j)``: walking the episode, whenever point ``j`` comes
    within ``tolerance`` of a point ``i`` on the kept path (the earliest such), steps ``i .. j - 1`` are cut and
    the path goes on from ``j``. Ranges may nest (a later loop can swallow earlier ones)."""
    kept: list[int] = []
    loops: list[tuple[int, int]] = []
    for t in range(len(points)):
        if kept:
            near = np.flatnonzero(np.linalg.norm(points[kept] - points[t], axis=1) <= tolerance)
            if near.size:
                loops.append((kept[int(near[0])], t))
                del kept[int(near[0]) :]
        kept.append(t)
    return loops


def near_loop_steps(points: np.ndarray, tolerance: float, min_steps: int = 1) -> np.ndarray:
    """``(T,)`` bool: the steps of one episode on loops of :func:`near_loops` lasting ``min_steps`` or more."""
    mask = np.zeros(len(points), dtype=bool)
    for i, j in near_loops(points, tolerance):
        if j - i >= min_steps:
            mask[i:j] = True
    return mask


def self_inconsistency(actions: np.ndarray, starts: np.ndarray, lengths: np.ndarray, window: int) -> np.ndarray:
    """``(N,)``: the distance from each step's action (``(N, A)``) to the nearest of the actions of the
    ``window`` steps before and the ``window`` steps after it in its episode (``nan`` for one-step episodes).
    Episodes are contiguous runs of steps (``starts``, ``lengths``)."""
    episode = np.full(len(actions), -1)
    for k, (start, length) in enumerate(zip(starts.tolist(), lengths.tolist(), strict=True)):
        episode[start : start + length] = k
    out = np.full(len(actions), np.inf)
    for offset in range(1, window + 1):
        if offset >= len(actions):
            break
        gap = np.linalg.norm(actions[offset:] - actions[:-offset], axis=1)
        gap[episode[offset:] != episode[:-offset]] = np.inf
        out[offset:] = np.minimum(out[offset:], gap)  # step t against step t - offset
        out[:-offset] = np.minimum(out[:-offset], gap)  # step t against step t + offset
    out[~np.isfinite(out)] = np.nan
    return out


def support(
    points: np.ndarray,
    actions: np.ndarray,
    who: np.ndarray,
    asked: np.ndarray,
    reference: np.ndarray,
    radius: float,
    tolerance: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``(judged, supported)`` ``(N,)`` bool over the ``asked`` steps: whether another demonstrator's
    ``reference`` step lies within ``radius`` per coordinate, and whether one of those also acted within
    ``tolerance`` per action dimension (Chebyshev distances on scaled features)."""
    where = points / radius
    joint = np.concatenate([where, actions / tolerance], axis=1)
    judged = np.zeros(len(points), dtype=bool)
    supported = np.zeros(len(points), dtype=bool)
    for name in sorted(set(who[asked].tolist())):
        mine = np.flatnonzero(asked & (who == name))
        others = reference & (who != name)
        if not others.any():
            continue
        near, _ = cKDTree(where[others]).query(where[mine], k=1, p=np.inf, distance_upper_bound=1.0)
        alike, _ = cKDTree(joint[others]).query(joint[mine], k=1, p=np.inf, distance_upper_bound=1.0)
        judged[mine] = np.isfinite(near)
        supported[mine] = np.isfinite(alike)
    return judged, supported


def pairwise_agreement(
    points: np.ndarray,
    actions: np.ndarray,
    who: np.ndarray,
    eligible: np.ndarray,
    radius: float,
    tolerance: float,
    min_judged: int,
) -> dict[str, dict[str, float]]:
    """``{a: {b: share}}``: of demonstrator ``a``'s ``eligible`` steps near one of ``b``'s (within ``radius`` per
    coordinate), the share where ``b`` also acted within ``tolerance`` per action dimension there (Chebyshev
    distances on scaled features); pairs with fewer than ``min_judged`` such steps are left out."""
    where = points / radius
    joint = np.concatenate([where, actions / tolerance], axis=1)
    names = sorted(set(who[eligible].tolist()))
    trees = {
        name: (cKDTree(where[eligible & (who == name)]), cKDTree(joint[eligible & (who == name)])) for name in names
    }
    table: dict[str, dict[str, float]] = {}
    for a in names:
        mine = eligible & (who == a)
        table[a] = {}
        for b in names:
            if b == a:
                continue
            near, _ = trees[b][0].query(where[mine], k=1, p=np.inf, distance_upper_bound=1.0)
            alike, _ = trees[b][1].query(joint[mine], k=1, p=np.inf, distance_upper_bound=1.0)
            judged = np.isfinite(near)
            if judged.sum() >= min_judged:
                table[a][b] = float(np.isfinite(alike[judged]).mean())
    return table


def detect_continuous_defects(dataset: Dataset, config: ContinuousDetectConfig | None = None) -> ContinuousDetections:
    """Run the four detectors on ``dataset`` (see the module docstring)."""
    config = config or ContinuousDetectConfig()
    if "demonstrator" not in dataset.streams:
        raise DatasetError(f"{dataset.path}: defect detection needs a 'demonstrator' stream")
    raw_actions = np.asarray(dataset.column("action"))
    if raw_actions.dtype.kind != "f":
        raise DatasetError(
            f"{dataset.path}: continuous defect detection needs float actions, found {raw_actions.dtype}"
        )
    points = _standardized(np.asarray(dataset.column("obs")))
    actions = _standardized(raw_actions)
    starts, lengths = np.asarray(dataset.episode_starts), np.asarray(dataset.episode_lengths)
    who = np.asarray([str(w) for w in dataset.column("demonstrator")], dtype=object)

    moved = displacements(points, starts, lengths)
    median_step = float(np.nanmedian(moved)) if np.isfinite(moved).any() else 0.0
    if not median_step > 0:
        raise DatasetError(f"{dataset.path}: observations never change between steps; nothing to measure motion by")
    idle = runs_at_least(moved < config.still_below * median_step, starts, lengths, config.min_idle_steps)
    loops = np.zeros(len(points), dtype=bool)
    for start, length in zip(starts.tolist(), lengths.tolist(), strict=True):
        loops[start : start + length] = near_loop_steps(
            points[start : start + length], config.return_within * median_step, config.min_detour_steps
        )
    detours = loops & ~idle

    eligible = ~idle & ~detours
    table = pairwise_agreement(
        points,
        actions,
        who,
        eligible,
        config.neighbour_radius * median_step,
        config.action_tolerance,
        config.min_judged_steps,
    )
    rows: dict[str, dict[str, float | int | None]] = {}
    for name in sorted(set(who.tolist())):
        shares = list(table.get(name, {}).values())
        rows[name] = {"agreement": float(np.median(shares)) if shares else None, "peers": len(shares)}
    incompatible = [
        name for name, row in rows.items() if row["agreement"] is not None and row["agreement"] < config.agreement_below
    ]

    inconsistency = self_inconsistency(actions, starts, lengths, config.window)
    candidates = eligible & ~np.isin(who, incompatible) & np.isfinite(inconsistency)
    typical = float(np.median(inconsistency[candidates])) if candidates.any() else 0.0
    odd = candidates & (inconsistency > config.noise_above * typical)
    judged, supported = support(
        points,
        actions,
        who,
        candidates,
        candidates & ~odd,
        config.neighbour_radius * median_step,
        config.action_tolerance,
    )
    noise = odd & judged & ~supported
    for name, row in rows.items():
        row["noise_share"] = float(noise[who == name].mean())
    return ContinuousDetections(
        idle_steps=idle,
        detour_steps=detours,
        noise_steps=noise,
        incompatible=incompatible,
        demonstrators=rows,
        median_step=median_step,
    )


def curate_detected(source: Dataset, out: str | Path, found: ContinuousDetections, overwrite: bool = False) -> Dataset:
    """``clonekit curate`` of ``source`` by what :func:`detect_continuous_defects` found: the incompatible
    demonstrators' episodes removed (``drop-demonstrator``), the idle, detour and noise steps cut; every removal
    and cut is logged with its reason. The source is only read."""
    filters = [Filter("drop-demonstrator", name) for name in found.incompatible]
    cuts = {"idle": found.idle_steps, "detour": found.detour_steps, "noise": found.noise_steps}
    return curate(source, out, filters, overwrite=overwrite, cut_steps=cuts)


def detections_summary(found: ContinuousDetections) -> dict[str, Any]:
    """JSON-ready counts of ``found`` (steps per defect, incompatible demonstrators, per-demonstrator rows)."""
    return {
        "steps": {
            "idle": int(found.idle_steps.sum()),
            "detour": int(found.detour_steps.sum()),
            "noise": int(found.noise_steps.sum()),
        },
        "incompatible": list(found.incompatible),
        "demonstrators": found.demonstrators,
        "median_step": found.median_step,
    }


__all__ = [
    "ContinuousDetectConfig",
    "ContinuousDetections",
    "curate_detected",
    "detect_continuous_defects",
    "detections_summary",
    "displacements",
    "near_loop_steps",
    "runs_at_least",
    "self_inconsistency",
]
