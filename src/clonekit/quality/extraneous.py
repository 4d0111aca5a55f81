"""Extraneous steps: loops and idling, the segments of an episode that can be cut without changing its outcome.

When an episode comes back to a state it was in before (``s_i == s_j``, ``i < j``; state keys as in
:mod:`clonekit.quality.report`), the steps ``i .. j - 1`` took it nowhere: idling (``j = i + 1``, the state did
not change), a dead end it walked into and out of, or a circle. With deterministic dynamics the episode with
those steps cut reaches the same states afterwards and ends the same way. :func:`loop_steps` finds them by
walking the episode and, whenever a state repeats, cutting back to its first visit on the kept path; what
remains visits no state twice. Demonstrators who wander (Extraneousness-Aware Imitation Learning's setting)
leave such segments; cloning them teaches a policy to wander too.

This is exact for observations that identify the state (grid maps: exact keys). With quantized continuous
observations a "repeat" means the same bin, which is an approximation; the report says which keys it used.
"""

from __future__ import annotations

import numpy as np


def loop_steps(states: np.ndarray) -> np.ndarray:
    """``(T,)`` bool: the steps of one episode (state ids ``(T,)``, step ``t`` acts in state ``t``) that lie on
    a loop back to an earlier state (see the module docstring)."""
    kept: list[int] = []  # indices of the kept path, in order
    position: dict[int, int] = {}  # state id -> its index in ``kept``
    values = states.tolist()
    for t, state in enumerate(values):
        if state in position:
            cut = position[state]
            for gone in kept[cut:]:
                del position[values[gone]]
            del kept[cut:]
        position[state] = len(kept)
        kept.append(t)
    mask = np.ones(len(states), dtype=bool)
    mask[kept] = False
    return mask


def segments(mask: np.ndarray) -> list[tuple[int, int]]:
    """The runs of true steps in ``mask`` as half-open ``(start, stop)`` ranges."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def episode_loop_steps(states: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """:func:`loop_steps` of every episode of a dataset (state ids ``(N,)`` of all steps), as one ``(N,)`` mask."""
    mask = np.zeros(len(states), dtype=bool)
    for start, length in zip(starts.tolist(), lengths.tolist(), strict=True):
        mask[start : start + length] = loop_steps(states[start : start + length])
    return mask
