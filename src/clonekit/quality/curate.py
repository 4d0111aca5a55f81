"""``clonekit curate DATA --out DATA2 --filter ...``: a new dataset without the episodes the filters remove,
and a log of what was removed and why (``meta.json`` ``extra["curation"]`` of the new dataset). The source is
only read.

Filters (applied in the order given, each to what the previous ones kept):

* ``success``: keep the successful episodes (see :mod:`clonekit.quality.outcomes`).
* ``top-k:N``: keep the ``N`` episodes with the highest return (ties: the earlier episode first).
* ``min-return:X``: keep episodes whose return is at least ``X``.
* ``drop-demonstrator:ID``: remove every episode of demonstrator ``ID``.
* ``cut-loops``: keep every episode but cut its loops and idling (:mod:`clonekit.quality.extraneous`): the
  steps between a state and the next visit to the same state.
* ``min-agreement:X``: remove the demonstrators whose ``agreement_with_others`` (discrete actions; see
  :mod:`clonekit.quality.report`) is below ``X``: the ones whose actions most often differ from what the
  other demonstrators do in the same states (an incompatible style, or noise).

Splits recorded in the source (``extra["splits"]``) are kept for the remaining episodes, renumbered.

Curation may also **add** episodes (:class:`AddedEpisodes`): recovery splices (``--recovery``, see
:mod:`clonekit.quality.recovery`) and guided augmentations (``--augment``, see :mod:`clonekit.quality.augment`).
The new dataset then has a ``source`` text stream (``demo`` for the source's own steps unless the source has a
``source`` stream already; ``recovery``, ``augmented`` for the added ones) and a float ``weight`` stream (1 for
the source's steps; 0 for steps not to be imitated, such as the mistake of a recovery episode: train with
``sample_weights="weight"``). Added episodes come after the kept ones and belong to no recorded split; their
streams the new dataset lacks are dropped, and the new dataset's streams they lack are blank (zeros, empty text).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clonekit.data import Dataset, DatasetWriter, StreamSpec, array_stream, text_stream
from clonekit.data.formats.source import python_scalar
from clonekit.data.splits import SPLITS_KEY, episode_splits
from clonekit.errors import ConfigError
from clonekit.quality.extraneous import loop_steps, segments
from clonekit.quality.outcomes import EpisodeOutcomes, episode_outcomes
from clonekit.quality.report import quality_report, state_keys

FILTERS = ("success", "top-k:N", "min-return:X", "drop-demonstrator:ID", "min-agreement:X", "cut-loops")
SOURCE_STREAM = text_stream("source", "where the step comes from: demo, recovery, augmented")
WEIGHT_STREAM = array_stream("weight", "float32", (), "sampling weight (0: a step not to imitate, e.g. a mistake)")

Episode = dict[str, Any]


@dataclass
class AddedEpisodes:
    """Episodes a curation step adds to the new dataset.

    Args:
        step: What made them, as the log shows it (e.g. ``recovery:bfs``).
        episodes: ``(streams, episode info)`` pairs; ``streams`` holds ``source`` (text per step), ``weight``
            (float per step) and the streams of the source (the ones it lacks are written blank).
        info_defaults: Episode-info fields these episodes add, with the value the source's episodes get.
        log: What the step did and skipped, stored under ``extra["curation"]["added"]``.
    """

    step: str
    episodes: list[tuple[Episode, dict[str, Any]]]
    info_defaults: dict[str, int | float | str] = field(default_factory=dict)
    log: dict[str, Any] = field(default_factory=dict)


def blank_steps(spec: StreamSpec, length: int) -> np.ndarray | list[str]:
    """``length`` steps of ``spec`` that say nothing: empty text, or zeros."""
    if spec.kind == "text":
        return [""] * length
    return np.zeros((length, *spec.shape), dtype=spec.dtype)


@dataclass(frozen=True)
class Filter:
    """One parsed ``--filter`` value."""

    kind: str
    value: Any = None

    @staticmethod
    def parse(text: str) -> Filter:
        kind, _, value = text.partition(":")
        try:
            if kind in ("success", "cut-loops") and not value:
                return Filter(kind)
            if kind == "top-k" and int(value) >= 1:
                return Filter(kind, int(value))
            if kind in ("min-return", "min-agreement") and np.isfinite(float(value)):
                return Filter(kind, float(value))
            if kind == "drop-demonstrator" and value:
                return Filter(kind, value)
        except ValueError:
            pass
        raise ConfigError(f"--filter: expected one of {', '.join(FILTERS)} (N >= 1, X a number), got {text!r}")

    def __str__(self) -> str:
        return self.kind if self.value is None else f"{self.kind}:{self.value}"


def _removed_by(step: Filter, kept: list[int], facts: EpisodeOutcomes, dataset: Dataset) -> dict[int, str]:
    """Episode -> reason, for the episodes among ``kept`` that ``step`` removes."""
    if step.kind == "success":
        return {k: "not successful" for k in kept if not facts.success[k]}
    if step.kind == "min-return":
        return {k: f"return {facts.ret[k]:.4g} < {step.value}" for k in kept if facts.ret[k] < step.value}
    if step.kind == "top-k":
        ranked = sorted(kept, key=lambda k: (-facts.ret[k], k))
        cut = ranked[step.value :]
        return {k: f"return {facts.ret[k]:.4g} not in the top {step.value}" for k in cut}
    if "demonstrator" not in dataset.streams:
        raise ConfigError(f"--filter {step}: {dataset.path} has no 'demonstrator' stream")
    if step.kind == "drop-demonstrator":
        if step.value not in facts.demonstrator:
            known = sorted({str(d) for d in facts.demonstrator})
            raise ConfigError(f"--filter {step}: expected one of demonstrators {known}")
        return {k: f"demonstrator {step.value} dropped" for k in kept if facts.demonstrator[k] == step.value}
    rows = quality_report(dataset)["demonstrators"]
    if rows and "agreement_with_others" not in next(iter(rows.values())):
        raise ConfigError(f"--filter {step}: agreement is measured for discrete actions only")
    # A demonstrator that shares no state with the others (agreement None) cannot be judged: it stays.
    low = {
        who: r["agreement_with_others"]
        for who, r in rows.items()
        if r["agreement_with_others"] is not None and r["agreement_with_others"] < step.value
    }
    return {
        k: f"demonstrator {facts.demonstrator[k]} agreement {low[facts.demonstrator[k]]:.3f} < {step.value}"
        for k in kept
        if facts.demonstrator[k] in low
    }


def curate(
    source: Dataset,
    out: str | Path,
    filters: list[Filter],
    overwrite: bool = False,
    added: Sequence[AddedEpisodes] = (),
    cut_steps: Mapping[str, np.ndarray] | None = None,
) -> Dataset:
    """Write the episodes of ``source`` that pass ``filters`` to ``out``, then the ``added`` ones; returns the
    new dataset.

    ``cut_steps`` (reason -> ``(N,)`` bool over the source's steps, e.g. what a detector flagged) cuts those
    steps from the kept episodes as ``cut-loops`` cuts loops, logged per segment under that reason; an episode
    left with no step is removed."""
    if not filters and not added and not cut_steps:
        raise ConfigError(f"--filter: give at least one of {', '.join(FILTERS)} (or --recovery / --augment)")
    kept, removed, cuts, cut_log = _apply_filters(source, filters)
    if cut_steps:
        kept, cut_log = _cut_given(source, kept, cuts, cut_steps, removed, cut_log)
    if not kept and not any(a.episodes for a in added):
        raise ConfigError(f"--filter {' '.join(map(str, filters))}: every episode of {source.path} was removed")
    new_index = {old: new for new, old in enumerate(kept)}
    extra = dict(source.extra)
    splits = episode_splits(source)
    if splits:
        extra[SPLITS_KEY] = {name: [new_index[k] for k in idx if k in new_index] for name, idx in splits.items()}
    extra["curation"] = {
        "source": str(source.path),
        "source_fingerprint": source.fingerprint,
        "filters": [str(f) for f in filters],
        "kept": len(kept),
        "removed": removed,
        "cut": cut_log,
        **({"added": [{"step": a.step, "episodes": len(a.episodes), **a.log} for a in added]} if added else {}),
    }
    info_names = list(source.meta.get("episode_info", []))
    streams = list(source.streams.values())
    defaults: dict[str, int | float | str] = {}
    if added:
        streams += [s for s in (SOURCE_STREAM, WEIGHT_STREAM) if s.name not in source.streams]
        for a in added:
            defaults |= {k: v for k, v in a.info_defaults.items() if k not in info_names}
    writer = DatasetWriter(
        out,
        streams,
        spaces=source.spaces,
        env=source.env,
        episode_info=info_names + list(defaults),
        extra=extra,
        overwrite=overwrite,
    )
    with writer:
        for k in kept:
            info = {
                name: python_scalar(f"{source.path}: episode {k}", source.episode_info(name)[k]) for name in info_names
            }
            episode: Episode = dict(source.episode(k))
            if k in cuts:
                keep = ~cuts[k]
                episode = {
                    name: [v for v, ok in zip(values, keep, strict=True) if ok]
                    if isinstance(values, list)
                    else np.asarray(values)[keep]
                    for name, values in episode.items()
                }
            if added:
                length = len(episode["action"])
                episode.setdefault(SOURCE_STREAM.name, ["demo"] * length)
                episode.setdefault(WEIGHT_STREAM.name, np.ones(length, dtype=np.float32))
            writer.add_episode(episode, info | defaults)
        for a in added:
            for episode, info in a.episodes:
                writer.add_episode(_conform(episode, streams), {**defaults, **info})
    return Dataset.open(out)


def _conform(episode: Episode, streams: list[StreamSpec]) -> Episode:
    """``episode`` with exactly ``streams``: the ones it lacks blank, the others dropped (an added episode may come
    from another dataset of the same env, e.g. noisy rollouts spliced into recovery episodes)."""
    length = len(episode["action"])
    return {s.name: episode[s.name] if s.name in episode else blank_steps(s, length) for s in streams}


def _apply_filters(
    source: Dataset, filters: list[Filter]
) -> tuple[list[int], list[dict[str, Any]], dict[int, np.ndarray], list[dict[str, Any]]]:
    """The episodes ``filters`` keep, the removal log, the steps to cut (episode -> ``(T,)`` bool) and the cut log."""
    facts = episode_outcomes(source)
    kept = list(range(source.num_episodes))
    removed: list[dict[str, Any]] = []
    cuts: dict[int, np.ndarray] = {}
    cut_log: list[dict[str, Any]] = []
    for step in filters:
        if step.kind == "cut-loops":
            cut_log += _cut_loops(source, kept, cuts)
            continue
        gone = _removed_by(step, kept, facts, source)
        removed += [{"episode": k, "filter": str(step), "reason": reason} for k, reason in sorted(gone.items())]
        kept = [k for k in kept if k not in gone]
    return kept, removed, cuts, cut_log


def _cut_given(
    source: Dataset,
    kept: list[int],
    cuts: dict[int, np.ndarray],
    cut_steps: Mapping[str, np.ndarray],
    removed: list[dict[str, Any]],
    cut_log: list[dict[str, Any]],
) -> tuple[list[int], list[dict[str, Any]]]:
    """Add the ``cut_steps`` masks of the ``kept`` episodes to ``cuts`` (logged per segment); episodes left empty
    go to ``removed``. Returns the episodes still kept and the cut log."""
    for reason, mask in cut_steps.items():
        if np.shape(mask) != (source.num_steps,):
            raise ConfigError(f"cut_steps[{reason!r}]: expected {source.num_steps} step flags, got {np.shape(mask)}")
    still: list[int] = []
    for k in kept:
        start, length = int(source.episode_starts[k]), int(source.episode_lengths[k])
        mask = cuts.get(k, np.zeros(length, dtype=bool)).copy()
        for reason, flags in cut_steps.items():
            part = np.asarray(flags[start : start + length], dtype=bool)
            for a, b in segments(part & ~mask):
                cut_log.append({"episode": k, "filter": reason, "reason": f"steps {a}-{b - 1}: {reason}"})
            mask |= part
        if mask.all():
            removed.append({"episode": k, "filter": "cut", "reason": "every step was cut"})
            cuts.pop(k, None)
            continue
        if mask.any():
            cuts[k] = mask
        still.append(k)
    return still, cut_log


def kept_episodes(source: Dataset, filters: list[Filter]) -> list[int]:
    """The episodes of ``source`` that ``filters`` keep (all without filters); loop cuts are not applied."""
    return _apply_filters(source, filters)[0]


def _cut_loops(source: Dataset, kept: list[int], cuts: dict[int, np.ndarray]) -> list[dict[str, Any]]:
    """Mark the loop steps of the ``kept`` episodes in ``cuts``; returns one log entry per cut segment."""
    states, method = state_keys(np.asarray(source.column("obs")))
    log = []
    for k in kept:
        start, length = int(source.episode_starts[k]), int(source.episode_lengths[k])
        mask = loop_steps(states[start : start + length])
        if not mask.any():
            continue
        cuts[k] = mask
        for a, b in segments(mask):
            reason = f"steps {a}-{b - 1}: back to the state of step {a} ({method} states)"
            log.append({"episode": k, "filter": "cut-loops", "reason": reason})
    return log
