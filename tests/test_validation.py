"""Validation loss on held-out episodes and the learning rate, in metrics.jsonl and TensorBoard."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from clonekit.cli import main
from clonekit.data import Dataset
from clonekit.data.windows import EpisodeSubset, sample_batch
from clonekit.errors import ConfigError
from clonekit.holdout import holdout_split
from clonekit.train import TrainConfig, train
from tests.conftest import assert_one_error_line

SMALL_BC = {"conv_channels": [4], "hidden_sizes": [8]}


def _records(run: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _with_splits(data: Dataset, out: Path, splits: dict[str, list[int]]) -> Dataset:
    """A copy of ``data`` whose metadata records ``splits`` (they are not part of the content fingerprint)."""
    shutil.copytree(data.path, out)
    meta = json.loads((out / "meta.json").read_text())
    meta["extra"]["splits"] = splits
    (out / "meta.json").write_text(json.dumps(meta))
    return Dataset.open(out)


def test_val_fraction_logs_val_loss_and_lr_to_jsonl_and_tensorboard(maze_data: Dataset, tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = TrainConfig(steps=4, batch_size=8, log_every=2, checkpoint_every=4, val_fraction=0.2, val_batches=2)
    train("bc", maze_data, run, config, SMALL_BC, show_progress=False)
    records = _records(run)
    assert [r["step"] for r in records] == [2, 4]
    assert all(r["lr"] == pytest.approx(1e-3) and np.isfinite(r["val_loss"]) and r["val_loss"] > 0 for r in records)
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    assert {"val/loss", "train/lr", "train/loss"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("val/loss")] == [2, 4]
    assert events.Scalars("val/loss")[-1].value == pytest.approx(records[-1]["val_loss"], rel=1e-6)


def test_recorded_valid_split_is_used_by_default_and_off_at_zero(maze_data: Dataset, tmp_path: Path) -> None:
    config = TrainConfig(steps=2, batch_size=8, log_every=2, checkpoint_every=2, tensorboard=False)
    train("bc", maze_data, tmp_path / "plain", config, SMALL_BC, show_progress=False)
    assert "val_loss" not in _records(tmp_path / "plain")[0]  # no split recorded: as before
    assert "lr" in _records(tmp_path / "plain")[0]
    split = _with_splits(maze_data, tmp_path / "split", {"train": list(range(50)), "valid": list(range(50, 60))})
    train_on, held = holdout_split(split, None)
    assert held.tolist() == list(range(50, 60)) and train_on is not None
    assert train_on.steps.max() < split.episode_starts[50]  # the valid episodes are never trained on
    train("bc", split, tmp_path / "auto", config, SMALL_BC, show_progress=False)
    assert "val_loss" in _records(tmp_path / "auto")[0]
    off = TrainConfig(steps=2, batch_size=8, log_every=2, checkpoint_every=2, tensorboard=False, val_fraction=0)
    train("bc", split, tmp_path / "off", off, SMALL_BC, show_progress=False)
    assert "val_loss" not in _records(tmp_path / "off")[0]
    bad = _with_splits(maze_data, tmp_path / "bad", {"valid": list(range(60))})
    with pytest.raises(ConfigError, match="val_fraction=0"):
        holdout_split(bad, None)


def test_held_out_episodes_are_fixed_and_excluded_from_training_batches(maze_data: Dataset) -> None:
    train_on, held = holdout_split(maze_data, 0.2)
    assert len(held) == 12 and np.array_equal(holdout_split(maze_data, 0.2)[1], held)
    assert train_on is not None and not set(train_on.episodes.tolist()) & set(held.tolist())
    batch = sample_batch(maze_data, 512, torch.Generator().manual_seed(0), ["obs"], subset=train_on)
    episodes = maze_data.episode_index()[train_on.steps]
    assert not set(episodes.tolist()) & set(held.tolist())
    assert batch["obs"].shape[0] == 512
    whole = EpisodeSubset.of(maze_data, range(maze_data.num_episodes))
    assert np.array_equal(whole.steps, np.arange(maze_data.num_steps))
    with pytest.raises(ConfigError, match="val_fraction"):
        TrainConfig(val_fraction=1.0)


def test_validation_does_not_change_the_training_run(avoiding_data: Dataset, tmp_path: Path) -> None:
    # The diffusion head draws noise inside its loss: validating at every step must not move that stream.
    weights = []
    for log_every in (1, 1000):
        run = tmp_path / f"log{log_every}"
        config = TrainConfig(
            steps=5, batch_size=16, log_every=log_every, checkpoint_every=5, tensorboard=False, val_fraction=0.25
        )
        train("continuous_bc", avoiding_data, run, config, {"head": "diffusion"}, show_progress=False)
        weights.append(load_file(str(run / "model.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    final = [_records(tmp_path / f"log{n}")[-1]["val_loss"] for n in (1, 1000)]
    assert final[0] == final[1]  # same weights, same fixed batches and noise: the same validation loss


def test_cli_set_reaches_the_training_config(
    maze_data: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["train", "bc", "--data", str(maze_data.path), "--steps", "2", "--batch-size", "8", "--quiet"]
    sets = ["--set", "conv_channels=[4]", "--set", "hidden_sizes=[8]", "--set", "log_every=2"]
    code = main([*base, "--out", str(tmp_path / "run"), *sets, "--set", "val_fraction=0.1"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "val_loss" in _records(tmp_path / "run")[0]
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["train_config"]
    assert recorded["val_fraction"] == 0.1 and recorded["log_every"] == 2
    code = main([*base, "--out", str(tmp_path / "bad"), "--set", "val_fraction=2"])
    assert_one_error_line(code, capsys.readouterr().err, "val_fraction", "2")
