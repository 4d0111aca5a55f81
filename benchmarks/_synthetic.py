"""Synthetic vector-observation datasets for the benchmarks (obs float32 features, discrete actions)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np

from clonekit.data import Dataset, DatasetWriter, array_stream
from clonekit.data.spaces import space_to_json


def write_synthetic(
    path: Path, episodes: Iterator[tuple[np.ndarray, np.ndarray]], obs_dim: int, num_actions: int
) -> Dataset:
    """Write episodes given as ``(obs (T, obs_dim) float32, action (T,) int64)``; each ends truncated."""
    streams = [
        array_stream("obs", "float32", (obs_dim,)),
        array_stream("action", "int64"),
        array_stream("reward", "float32"),
        array_stream("terminated", "bool"),
        array_stream("truncated", "bool"),
    ]
    spaces = {
        "observation": space_to_json(gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)),
        "action": space_to_json(gym.spaces.Discrete(num_actions)),
    }
    with DatasetWriter(path, streams, spaces=spaces, env={"id": "synthetic"}) as writer:
        for obs, action in episodes:
            length = len(obs)
            truncated = np.zeros(length, dtype=bool)
            truncated[-1] = True
            writer.add_episode(
                {
                    "obs": obs,
                    "action": action,
                    "reward": np.zeros(length, np.float32),
                    "terminated": np.zeros(length, dtype=bool),
                    "truncated": truncated,
                }
            )
    return Dataset.open(path)
