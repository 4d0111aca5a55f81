"""DynaMo pretraining (clonekit.pretrain.dynamo) and pretrained encoders in policies: the objective learns, the
encoder directory round-trips exactly, a frozen encoder never changes and travels in the policy's checkpoint,
bad input is one line, and the ``pixels-dynamo`` experiment runs end to end at a tiny size."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from clonekit.checkpoint import load_policy
from clonekit.cli import main
from clonekit.data import Dataset
from clonekit.errors import CheckpointError, ConfigError, DatasetError
from clonekit.experiments import pixels_dynamo
from clonekit.experiments.common import torch_threads
from clonekit.experts.collect import collect
from clonekit.policies import build_policy
from clonekit.pretrain.dynamo import DynamoConfig, pretrain_dynamo
from clonekit.pretrain.encoder_file import ENCODER_WEIGHTS
from clonekit.train import TrainConfig, policy_config_for, train
from tests.conftest import assert_one_error_line

PIXELS = {"obs": "pixels", "size": 7, "cell_pixels": 2}  # 14x14 pictures
ARCH = {"conv_channels": (8, 16), "hidden_sizes": (32,)}
POLICY_ARCH = {"encoder": "cnn", "conv_channels": [8, 16], "hidden_sizes": [32]}
STEPS = 150


@pytest.fixture(scope="module")
def pixel_maze(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """40 BFS episodes on 20 small mazes, observed as 14x14 pictures (seed 0)."""
    out = tmp_path_factory.mktemp("data") / "maze-pixels"
    return collect("maze", "bfs", episodes=40, seed=0, out=out, num_tasks=20, env_kwargs=PIXELS, show_progress=False)


@pytest.fixture(scope="module")
def encoder_dir(pixel_maze: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("enc") / "dynamo"
    with torch_threads(1):
        pretrain_dynamo(DynamoConfig(**ARCH, steps=STEPS, batch_size=32), pixel_maze, out, show_progress=False)
    return out


def test_dynamo_objective_decreases_on_a_tiny_image_set(encoder_dir: Path) -> None:
    records = [json.loads(line) for line in (encoder_dir / "metrics.jsonl").read_text().splitlines()]
    first, last = records[0], records[-1]
    # Measured (means over steps 1-50 vs 101-150; DynaMo seeds 0/1/2): total 1.07/0.91/1.07 -> 0.34/0.24/0.26;
    # forward prediction (1 - cos) 0.135/0.108/0.157 -> 0.013/0.008/0.025; variance hinge 0.93/0.80/0.91 ->
    # 0.31/0.22/0.22 (the embeddings spread out instead of collapsing to one point).
    assert last["loss"] < 0.6 * first["loss"]
    assert last["dynamics_loss"] < 0.4 * first["dynamics_loss"]
    assert last["variance_hinge"] < 0.6 * first["variance_hinge"]
    config = json.loads((encoder_dir / "encoder.json").read_text())
    assert config["first_loss"] == first["loss"] and config["final_loss"] == last["loss"]


def test_pretrained_encoder_loads_exactly_into_a_policy(pixel_maze: Dataset, encoder_dir: Path) -> None:
    saved = load_file(str(encoder_dir / ENCODER_WEIGHTS))
    config = policy_config_for("bc", pixel_maze, {**POLICY_ARCH, "encoder_weights": str(encoder_dir)})
    policy = build_policy("bc", config)
    policy.prepare(pixel_maze)
    for prefix, module in (("encoder.", policy.encoder), ("normalizer.", policy.normalizer)):
        for name, value in module.state_dict().items():
            assert torch.equal(value, saved[prefix + name]), name
    # Without encoder_weights the encoder is the seeded random one, and the normalizer is fitted on the data.
    fresh = build_policy("bc", policy_config_for("bc", pixel_maze, POLICY_ARCH))
    assert not torch.equal(fresh.encoder.state_dict()["conv.0.weight"], saved["encoder.conv.0.weight"])


def test_frozen_pretrained_encoder_is_unchanged_by_training_and_lives_in_the_checkpoint(
    pixel_maze: Dataset, encoder_dir: Path, tmp_path: Path, one_torch_thread: None
) -> None:
    copy = tmp_path / "enc"
    shutil.copytree(encoder_dir, copy)
    overrides = {**POLICY_ARCH, "encoder_weights": str(copy), "freeze_encoder": True}
    config = TrainConfig(steps=20, batch_size=32, seed=0, checkpoint_every=20, tensorboard=False, val_fraction=0.0)
    policy = train("bc", pixel_maze, tmp_path / "run", config, policy_overrides=overrides, show_progress=False)
    saved = load_file(str(copy / ENCODER_WEIGHTS))
    assert all(torch.equal(v, saved["encoder." + k]) for k, v in policy.encoder.state_dict().items())
    assert not any(p.requires_grad for p in policy.encoder.parameters())
    untrained = build_policy("bc", policy_config_for("bc", pixel_maze, overrides))
    assert not torch.equal(policy.head.linear.weight, untrained.head.linear.weight)  # the head did train
    # The run needs the encoder directory no more: its checkpoint holds the weights.
    shutil.rmtree(copy)
    loaded = load_policy(tmp_path / "run")
    for name, value in policy.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
    obs = torch.from_numpy(np.asarray(pixel_maze.column("obs"))[:16].copy())
    batch = {"obs": obs, "action": torch.from_numpy(np.asarray(pixel_maze.column("action"))[:16].copy())}
    before = {k: v.clone() for k, v in batch.items()}
    policy.compute_loss(batch)
    assert all(torch.equal(batch[k], before[k]) for k in batch)  # the batch is not mutated
    assert torch.equal(policy.act({"obs": obs})[0], loaded.act({"obs": obs})[0])


def test_encoder_weights_that_do_not_fit_the_policy_are_one_line_errors(
    pixel_maze: Dataset, encoder_dir: Path, tmp_path: Path
) -> None:
    wider = policy_config_for(
        "bc", pixel_maze, {**POLICY_ARCH, "conv_channels": [8, 32], "encoder_weights": str(encoder_dir)}
    )
    with pytest.raises(ConfigError, match=r"encoder\.json: encoder_weights: the policy needs conv_channels=\[8, 32\]"):
        build_policy("bc", wider).prepare(pixel_maze)
    missing = policy_config_for("bc", pixel_maze, {**POLICY_ARCH, "encoder_weights": str(tmp_path / "none")})
    with pytest.raises(CheckpointError, match="pretrained encoder directory not found"):
        build_policy("bc", missing).prepare(pixel_maze)
    with pytest.raises(ConfigError, match="encoder_weights"):
        build_policy("bc", policy_config_for("bc", pixel_maze, {"encoder_weights": " "}))
    with pytest.raises(ConfigError, match="latent_action_dim"):
        DynamoConfig(latent_action_dim=0)


def test_pretraining_refuses_vector_data_and_a_used_output(
    avoiding_data: Dataset, pixel_maze: Dataset, encoder_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(DatasetError, match=r"image observations \(C, H, W\), found obs of shape \(2,\)"):
        pretrain_dynamo(DynamoConfig(**ARCH, steps=1), avoiding_data, tmp_path / "a", show_progress=False)
    # Same settings and data: the finished encoder is reused; other settings: a one-line refusal.
    done = pretrain_dynamo(DynamoConfig(**ARCH, steps=STEPS, batch_size=32), pixel_maze, encoder_dir)
    assert done["final_loss"] == json.loads((encoder_dir / "encoder.json").read_text())["final_loss"]
    with pytest.raises(CheckpointError, match="other settings or data"):
        pretrain_dynamo(DynamoConfig(**ARCH, steps=STEPS + 1, batch_size=32), pixel_maze, encoder_dir)


def test_cli_pretrain_dynamo_reports_bad_data_in_one_line(
    avoiding_data: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["pretrain", "dynamo", "--data", str(avoiding_data.path), "--out", str(tmp_path / "e"), "--quiet"])
    assert_one_error_line(code, capsys.readouterr().err, "image observations")
    code = main(["pretrain", "dynamo", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "e")])
    assert_one_error_line(code, capsys.readouterr().err, "none")
    code = main(
        ["pretrain", "dynamo", "--data", str(avoiding_data.path), "--out", str(tmp_path / "e"), "--set", "steps=0"]
    )
    assert_one_error_line(code, capsys.readouterr().err, "steps")


def test_pixels_dynamo_runs_end_to_end_at_a_tiny_size(tmp_path: Path, one_torch_thread: None) -> None:
    config = replace(
        pixels_dynamo.QUICK,
        demo_counts=(3, 6),
        size=5,
        test_mazes=2,
        episodes_per_maze=1,
        conv_channels=(4,),
        hidden_sizes=(8,),
        bc_steps=3,
        pretrain_steps=3,
        pretrain_batch_size=8,
        batch_size=8,
    )
    results = pixels_dynamo.run(tmp_path, 0, True, show_progress=False, log=lambda line: None, config=config)
    assert set(results["metrics"]) == set(pixels_dynamo.KEYS)
    for splits in results["metrics"].values():
        assert set(splits) == {"test_n3", "test_n6"}
        assert splits["test_n3"]["success"]["n_tasks"] == 2
    assert (tmp_path / "report.md").is_file() and (tmp_path / "encoder" / "encoder.json").is_file()
    again = pixels_dynamo.run(tmp_path, 0, True, show_progress=False, log=lambda line: None, config=config)
    assert again["metrics"] == results["metrics"]  # every stage resumed from OUT


def test_pixels_dynamo_avoiding_runs_end_to_end_at_a_tiny_size(tmp_path: Path, one_torch_thread: None) -> None:
    config = replace(
        pixels_dynamo.AVOIDING_QUICK,
        demo_counts=(2, 4),
        image_size=16,
        test_mazes=2,
        episodes_per_maze=2,
        conv_channels=(4,),
        hidden_sizes=(8,),
        bc_steps=3,
        pretrain_steps=3,
        pretrain_batch_size=8,
        batch_size=8,
    )
    results = pixels_dynamo.run_avoiding(tmp_path, 0, True, show_progress=False, log=lambda line: None, config=config)
    assert results["experiment"] == pixels_dynamo.AVOIDING_NAME
    assert set(results["metrics"]) == set(pixels_dynamo.KEYS)
    for splits in results["metrics"].values():
        assert set(splits) == {"test_n2", "test_n4"}
        cell = splits["test_n2"]["success"]
        assert cell["n_tasks"] == 2 and cell["n"] == 4  # the GMM head samples: each start state is played twice
    data = Dataset.open(tmp_path / "data" / "all")
    assert data.num_episodes == 4 and np.asarray(data.column("obs")).shape[1:] == (3, 16, 16)
    assert len({tuple(task["start"]) for task in data.env["tasks"]}) == 4  # one demonstration per start state
    policy = load_policy(tmp_path / "runs" / "dynamo_n2")
    assert policy.config.head == "gmm" and policy.config.encoder_weights == str(tmp_path / "encoder")
    assert "Pixel Avoiding (16x16" in (tmp_path / "report.md").read_text()
    with pytest.raises(ConfigError, match="env"):
        replace(config, env="grid")
