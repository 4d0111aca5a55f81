"""Per-episode facts every quality tool needs: length, return, outcome, demonstrator, intervention steps.

Success is the ``success`` stream when the dataset has one (true at any step), otherwise the collectors' rule:
the episode ended ``terminated`` with a positive last reward. The demonstrator of an episode is the value of
its ``demonstrator`` stream at the first step (as text), ``None`` without that stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clonekit.data import Dataset


@dataclass(frozen=True)
class EpisodeOutcomes:
    """``(num_episodes,)`` arrays (``demonstrator``: a list, ``None`` entries without the stream)."""

    length: np.ndarray
    ret: np.ndarray
    success: np.ndarray
    interventions: np.ndarray
    demonstrator: list[str | None]
    success_source: str  # "success stream" or "terminated with positive reward"


def episode_outcomes(dataset: Dataset) -> EpisodeOutcomes:
    """The per-episode facts of ``dataset`` (see the module docstring)."""
    starts = dataset.episode_starts
    reward = np.asarray(dataset.column("reward"), dtype=np.float64)
    if dataset.num_episodes == 0:
        empty = np.zeros(0)
        return EpisodeOutcomes(empty.astype(np.int64), empty, empty.astype(bool), empty.astype(np.int64), [], "none")
    last = starts + dataset.episode_lengths - 1
    if "success" in dataset.streams:
        success = np.logical_or.reduceat(np.asarray(dataset.column("success"), dtype=bool), starts)
        source = "success stream"
    else:
        success = np.asarray(dataset.column("terminated"), dtype=bool)[last] & (reward[last] > 0)
        source = "terminated with positive reward"
    if "intervention" in dataset.streams:
        interventions = np.add.reduceat(np.asarray(dataset.column("intervention"), dtype=np.int64), starts)
    else:
        interventions = np.zeros(len(starts), dtype=np.int64)
    demonstrator: list[str | None] = [None] * len(starts)
    if "demonstrator" in dataset.streams:
        column = dataset.column("demonstrator")
        demonstrator = [str(np.asarray(column[int(s)]).tolist()) for s in starts]
    return EpisodeOutcomes(
        length=np.asarray(dataset.episode_lengths, dtype=np.int64),
        ret=np.add.reduceat(reward, starts),
        success=np.asarray(success, dtype=bool),
        interventions=interventions,
        demonstrator=demonstrator,
        success_source=source,
    )
