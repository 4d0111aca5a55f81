"""Hindsight goal relabeling: goals taken from what an episode actually reached.

A demonstration that ended somewhere is a correct demonstration of *reaching that place*, whatever the
demonstrator meant to do (Andrychowicz et al., 2017; for imitation, Ding et al., 2019). This writes a new
dataset in which every episode appears ``copies`` times with its ``goal`` stream replaced by states of the
same episode: with ``strategy="future"`` the goal of step ``t`` is the ``source`` stream at a uniformly drawn
step ``t' >= t``; with ``"final"`` it is the episode's last step. With ``keep_original`` the episodes are
also written with their own goals (which needs a ``goal`` stream). Rewards are copied unchanged: they
describe the original task, and behaviour cloning does not read them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from clonekit.data.format import Dataset, DatasetWriter, StreamSpec, array_stream
from clonekit.data.formats.source import python_scalar
from clonekit.errors import ConfigError, DatasetError

STRATEGIES = ("future", "final")


def hindsight_relabel(
    dataset: Dataset,
    out: str | Path,
    *,
    seed: int,
    strategy: str = "future",
    copies: int = 1,
    keep_original: bool = True,
    source: str = "obs",
    overwrite: bool = False,
) -> Dataset:
    """Write ``dataset`` with hindsight goals to ``out`` (see the module docstring); returns the new dataset.

    The ``goal`` stream gets the dtype and shape of ``source`` when the dataset has none. Episode info gains
    ``relabeled`` (0 for an original episode, ``1..copies`` for its relabeled copies) and ``source_episode``.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy: expected one of {list(STRATEGIES)}, got {strategy!r}")
    if copies < 0 or (copies == 0 and not keep_original):
        raise ConfigError(f"copies: expected >= 1 (or >= 0 with keep_original), got {copies}")
    dataset.require_streams([source], "hindsight relabeling")
    source_spec = dataset.streams[source]
    if source_spec.kind != "array":
        raise DatasetError(f"{dataset.path}: relabeling source {source!r} must be an array stream")
    goal_spec = dataset.streams.get("goal") or array_stream(
        "goal", source_spec.dtype, source_spec.shape, f"hindsight goal ({strategy} {source})"
    )
    if goal_spec.kind != "array" or (goal_spec.dtype, goal_spec.shape) != (source_spec.dtype, source_spec.shape):
        raise DatasetError(
            f"{dataset.path}: stream 'goal' is {goal_spec.describe()} but relabeling source {source!r} is "
            f"{source_spec.describe()}; they must match"
        )
    if keep_original and "goal" not in dataset.streams:
        raise DatasetError(f"{dataset.path}: keep_original needs a 'goal' stream; pass keep_original=False")
    streams: list[StreamSpec] = [spec for name, spec in dataset.streams.items() if name != "goal"] + [goal_spec]
    # Relabeling a relabeled dataset describes the new copies, not the old ones.
    info_names = [n for n in dataset.meta.get("episode_info", []) if n not in ("relabeled", "source_episode")]
    rng = np.random.default_rng(seed)
    writer = DatasetWriter(
        out,
        streams,
        spaces=dataset.spaces,
        env=dataset.env,
        episode_info=[*info_names, "relabeled", "source_episode"],
        extra={**dataset.extra, "hindsight": {"strategy": strategy, "copies": copies, "source": source, "seed": seed}},
        overwrite=overwrite,
    )
    with writer:
        for i in range(dataset.num_episodes):
            episode: dict[str, Any] = dataset.episode(i)
            info = {
                name: python_scalar(f"{dataset.path}: episode {i}", dataset.episode_info(name)[i])
                for name in info_names
            }
            if keep_original:
                writer.add_episode(episode, {**info, "relabeled": 0, "source_episode": i})
            states = np.asarray(episode[source])
            length = len(states)
            for copy in range(1, copies + 1):
                # "future": t' uniform in [t, T - 1]; "final": T - 1.
                picked = (
                    rng.integers(np.arange(length), length) if strategy == "future" else np.full(length, length - 1)
                )
                relabeled = {**episode, "goal": states[picked]}
                writer.add_episode(relabeled, {**info, "relabeled": copy, "source_episode": i})
    return Dataset.open(out)
