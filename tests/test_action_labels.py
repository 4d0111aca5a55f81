"""Training on expert labels (``TrainConfig.action_labels="expert_action"``): DAgger relabels, DART noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from clonekit.data import Dataset, DatasetWriter, array_stream
from clonekit.errors import ClonekitError, ConfigError
from clonekit.train import TrainConfig, train


@pytest.fixture(scope="module")
def noisy_maze(maze_data: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """The maze demonstrations with every executed action replaced by a random one; the expert's in
    ``expert_action`` (as if a noisy controller had run and the expert labelled each step)."""
    rng = np.random.default_rng(0)
    streams = [*maze_data.streams.values(), array_stream("expert_action", "int64", (), "the BFS expert's action")]
    writer = DatasetWriter(
        tmp_path_factory.mktemp("labels") / "noisy", streams, spaces=maze_data.spaces, env=maze_data.env
    )
    with writer:
        for i in range(maze_data.num_episodes):
            episode = maze_data.episode(i)
            expert = np.asarray(episode["action"])
            writer.add_episode({**episode, "action": rng.integers(4, size=len(expert)), "expert_action": expert})
    return Dataset.open(writer.path)


def _accuracy_against_the_expert(labels: str, data: Dataset, out: Path) -> float:
    config = TrainConfig(
        steps=200, batch_size=64, seed=0, checkpoint_every=200, tensorboard=False, action_labels=labels
    )
    policy = train("bc", data, out, config, show_progress=False)
    everything = data.gather(np.arange(data.num_steps), ["obs", "expert_action"])
    with torch.inference_mode():
        actions, _ = policy.act({"obs": torch.from_numpy(everything["obs"])})
    return float((actions.numpy() == everything["expert_action"]).mean())


def test_bc_imitates_the_expert_labels_not_the_executed_actions(noisy_maze: Dataset, tmp_path: Path) -> None:
    assert _accuracy_against_the_expert("expert_action", noisy_maze, tmp_path / "labels") >= 0.9
    assert _accuracy_against_the_expert("action", noisy_maze, tmp_path / "executed") <= 0.6


def test_missing_label_stream_and_unknown_labels_are_clear_errors(maze_data: Dataset, tmp_path: Path) -> None:
    with pytest.raises(ClonekitError, match="expert_action"):
        config = TrainConfig(steps=2, action_labels="expert_action")
        train("bc", maze_data, tmp_path / "run", config, show_progress=False)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="action_labels: expected one of"):
        TrainConfig(action_labels="teacher")
