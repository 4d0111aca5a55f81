"""Observation-only datasets: demonstrations with observations but no ``action`` stream (e.g. from video).

Such a dataset is valid input: it opens, ``inspect`` summarizes it, and ``meta.json`` records it by its
stream list, which has no ``action`` (``spaces['action']`` may still say which actions the demonstrator
had). No policy trains on it; ``clonekit label`` (:mod:`clonekit.policies.idm.label`) writes a copy whose
``action`` stream an inverse dynamics model filled. ``write_observation_only`` makes one from a labelled
dataset, for studies of labelling (and tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from clonekit.data.dataset import Dataset
from clonekit.data.formats.source import python_scalar
from clonekit.data.writer import DatasetWriter

# Streams that carry action labels; an observation-only copy has none of them.
ACTION_STREAMS = ("action", "expert_action")


def write_observation_only(
    source: Dataset,
    out: str | Path,
    episodes: Sequence[int] | None = None,
    *,
    drop: Sequence[str] = (),
    overwrite: bool = False,
) -> Dataset:
    """Write episodes ``episodes`` of ``source`` (default: all, in order) to ``out`` without their action
    streams (``action``, ``expert_action``) and the streams named in ``drop`` (e.g. an expert's ``procedure``,
    which would give its actions away); every other stream and the episode info are kept. ``source`` is
    only read. ``meta.json`` ``extra["observation_only"]`` records the source, its fingerprint and what was
    dropped; the source's recorded episode ``splits`` are dropped with a selection (they number its episodes).
    """
    chosen = list(range(source.num_episodes)) if episodes is None else [int(k) for k in episodes]
    dropped = [name for name in (*ACTION_STREAMS, *drop) if name in source.streams]
    streams = [spec for name, spec in source.streams.items() if name not in dropped]
    info_names = list(source.meta.get("episode_info", []))
    extra = {
        **source.extra,
        "observation_only": {
            "source": str(source.path),
            "source_fingerprint": source.fingerprint,
            "dropped_streams": dropped,
            "episodes": "all" if episodes is None else len(chosen),
        },
    }
    extra.pop("action_labels", None)  # describes the dropped stream
    if episodes is not None:
        extra.pop("splits", None)
    writer = DatasetWriter(
        out,
        streams,
        spaces=source.spaces,
        env=source.env,
        episode_info=info_names,
        extra=extra,
        overwrite=overwrite,
    )
    with writer:
        for k in chosen:
            steps = {name: values for name, values in source.episode(k).items() if name not in dropped}
            info = {n: python_scalar(f"{source.path}: episode {k}", source.episode_info(n)[k]) for n in info_names}
            writer.add_episode(steps, info)
        return writer.close()


__all__ = ["ACTION_STREAMS", "write_observation_only"]
