"""The native format as a conversion source and target: a clonekit dataset holds everything, exactly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from clonekit.data.dataset import Dataset
from clonekit.data.formats.infer import gym_spaces
from clonekit.data.formats.source import Episode, Source, python_scalar
from clonekit.data.writer import DatasetWriter


def read_clonekit(path: Path) -> Source:
    """Open the clonekit dataset at ``path`` for conversion (validated by ``Dataset.open``)."""
    dataset = Dataset.open(path)
    info_columns = {name: dataset.episode_info(name) for name in dataset.meta["episode_info"]}

    def episodes() -> Iterator[Episode]:
        for i in range(dataset.num_episodes):
            info = {name: python_scalar(f"{path}: episode {i}", column[i]) for name, column in info_columns.items()}
            yield dataset.episode(i), info

    def actions() -> np.ndarray:
        return np.asarray(dataset.column("action"))

    return Source(
        path=path,
        streams=list(dataset.streams.values()),
        spaces=dict(dataset.spaces),
        env=dict(dataset.env),
        episode_info=list(dataset.meta["episode_info"]),
        extra=dict(dataset.extra),
        episodes=episodes,
        gym_spaces=lambda: gym_spaces(f"{path}/meta.json", dataset.spaces, dataset.streams["obs"], actions),
        warnings=[],
    )


def write_clonekit(source: Source, dst: Path, overwrite: bool) -> list[str]:
    """Write ``source`` as a clonekit dataset at ``dst`` (through ``DatasetWriter``, so atomically)."""
    writer = DatasetWriter(
        dst,
        source.streams,
        spaces=source.spaces,
        env=source.env,
        episode_info=source.episode_info,
        extra=source.extra,
        overwrite=overwrite,
    )
    with writer:
        for steps, info in source.episodes():
            writer.add_episode(steps, info)
    return []
