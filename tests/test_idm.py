"""Inverse-dynamics labelling (VPT): observation-only datasets, the ``idm`` model, ``clonekit label``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from clonekit.checkpoint import load_policy
from clonekit.cli import main
from clonekit.data import Dataset
from clonekit.data.observation_only import write_observation_only
from clonekit.data.windows import window_indices
from clonekit.errors import ConfigError, DatasetError
from clonekit.experiments.common import torch_threads
from clonekit.experts.collect import collect
from clonekit.policies import POLICIES
from clonekit.policies.idm import InverseDynamicsModel
from clonekit.policies.idm.label import idm_labels
from clonekit.train import TrainConfig, train
from tests.conftest import assert_one_error_line, tree_hash

SIZE = 7


def quick_config(steps: int, **changes: object) -> TrainConfig:
    settings: dict[str, object] = {
        "steps": steps,
        "batch_size": 64,
        "seed": 0,
        "checkpoint_every": steps,
        "tensorboard": False,
        "val_fraction": 0.0,
    }
    return TrainConfig(**(settings | changes))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def maze_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Dataset]:
    """``labelled``: 30 expert episodes on 15 7x7 mazes; ``true``: 40 more on 20 other mazes (another seed),
    and ``unlabelled``: the same 40 without actions."""
    root = tmp_path_factory.mktemp("idm")
    kwargs = {"env_kwargs": {"size": SIZE}, "show_progress": False}
    labelled = collect("maze", "bfs", episodes=30, seed=1, out=root / "labelled", num_tasks=15, **kwargs)  # type: ignore[arg-type]
    true = collect("maze", "bfs", episodes=40, seed=2, out=root / "true", num_tasks=20, **kwargs)  # type: ignore[arg-type]
    unlabelled = write_observation_only(true, root / "unlabelled")
    return {"labelled": labelled, "true": true, "unlabelled": unlabelled}


@pytest.fixture(scope="module")
def idm_run(maze_sets: dict[str, Dataset], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Dataset]:
    """An IDM trained on the labelled maze episodes (60 steps), with the model it returned."""
    out = tmp_path_factory.mktemp("runs") / "idm"
    with torch_threads(1):
        model = train("idm", maze_sets["labelled"], out, quick_config(60), show_progress=False)
    return out, model  # type: ignore[return-value]


def test_observation_only_dataset_opens_and_is_refused_for_training(
    maze_sets: dict[str, Dataset], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = maze_sets["unlabelled"]
    reopened = Dataset.open(data.path)
    assert reopened.observation_only and "action" not in json.loads((data.path / "meta.json").read_text())["streams"]
    assert reopened.num_steps == maze_sets["true"].num_steps
    assert reopened.summary()["num_episodes"] == 40
    assert main(["inspect", str(data.path)]) == 0
    capsys.readouterr()
    with pytest.raises(DatasetError, match=r"observation-only .*clonekit label"):
        train("bc", data, tmp_path / "bc", quick_config(1), show_progress=False)
    assert not (tmp_path / "bc").exists()
    code = main(["train", "bc", "--data", str(data.path), "--out", str(tmp_path / "bc"), "--steps", "1", "--quiet"])
    assert_one_error_line(code, capsys.readouterr().err, str(data.path), "observation-only", "clonekit label")


def test_idm_learns_maze_moves_on_unseen_mazes(
    idm_run: tuple[Path, InverseDynamicsModel], maze_sets: dict[str, Dataset]
) -> None:
    _, model = idm_run
    assert "idm" not in POLICIES  # it does not act: kept out of what rolls out and exports
    with pytest.raises(ConfigError, match="does not act"):
        model.act({"obs": torch.zeros(1, 3, SIZE, SIZE)})
    data = maze_sets["unlabelled"]
    labels = idm_labels(model, data)
    true = np.asarray(maze_sets["true"].column("action"))
    obs = np.asarray(data.column("obs"))
    last = np.zeros(len(obs), dtype=bool)
    last[data.episode_starts + data.episode_lengths - 1] = True
    moved = ~last & (np.roll(obs, -1, axis=0) != obs).reshape(len(obs), -1).any(axis=1)
    assert moved.sum() >= 100
    accuracy = float((labels[moved] == true[moved]).mean())
    assert accuracy >= 0.9, accuracy  # mazes the IDM never saw; an untrained model scores about 0.25


def test_idm_learns_continuous_moves(tmp_path: Path, one_torch_thread: None) -> None:
    seen = collect("avoiding", "paths", episodes=4, seed=0, out=tmp_path / "seen", num_tasks=4, show_progress=False)
    other = collect("avoiding", "paths", episodes=4, seed=1, out=tmp_path / "other", num_tasks=4, show_progress=False)
    model = train("idm", seen, tmp_path / "run", quick_config(150), {"hidden_sizes": [64, 64]}, show_progress=False)
    assert isinstance(model, InverseDynamicsModel) and not model.config.discrete
    predicted = idm_labels(model, write_observation_only(other, tmp_path / "obs-only"))
    true = np.asarray(other.column("action"))
    moved = np.ones(len(true), dtype=bool)
    moved[other.episode_starts + other.episode_lengths - 1] = False  # the last step's window shows no move
    error = ((predicted - true)[moved] ** 2).sum()
    r2 = 1 - error / ((true[moved] - true[moved].mean(0)) ** 2).sum()
    assert r2 >= 0.9, r2  # start states the IDM never saw; 8 steps of training give about 0.1
    assert np.all(np.abs(predicted) <= 1.0)  # clipped to the Box bounds


def test_label_cli_writes_actions_and_only_reads_source(
    idm_run: tuple[Path, InverseDynamicsModel], maze_sets: dict[str, Dataset], tmp_path: Path
) -> None:
    run, model = idm_run
    source = maze_sets["unlabelled"]
    before = (tree_hash(source.path), tree_hash(run))
    out = tmp_path / "labelled"
    assert main(["label", str(source.path), "--idm", str(run), "--out", str(out)]) == 0
    assert (tree_hash(source.path), tree_hash(run)) == before
    labelled = Dataset.open(out)
    labelled.verify()
    assert not labelled.observation_only and labelled.streams["action"].dtype == "int64"
    np.testing.assert_array_equal(labelled.column("action"), idm_labels(model, source))
    np.testing.assert_array_equal(labelled.column("obs"), source.column("obs"))
    record = labelled.extra["action_labels"]
    assert record["source"] == "idm" and record["run"] == str(run)
    assert (
        record["run_fingerprint"].startswith("sha256:") and record["labelled_dataset_fingerprint"] == source.fingerprint
    )
    assert labelled.spaces["action"] == maze_sets["labelled"].spaces["action"]


def test_saved_idm_gives_identical_outputs_and_resumes_exactly(
    idm_run: tuple[Path, InverseDynamicsModel], maze_sets: dict[str, Dataset], tmp_path: Path
) -> None:
    run, model = idm_run
    loaded = load_policy(run)
    assert isinstance(loaded, InverseDynamicsModel)
    data = maze_sets["unlabelled"]
    rows = window_indices(data, np.arange(data.num_steps), 2)
    windows = torch.from_numpy(data.gather(rows.ravel(), ["obs"])["obs"].reshape(data.num_steps, 2, 3, SIZE, SIZE))
    with torch.no_grad():
        torch.testing.assert_close(loaded.forward_outputs(windows), model.forward_outputs(windows), rtol=0, atol=0)
    # Resume: 4 steps, then on to 8, ends with the weights of 8 straight steps (continuous actions, 2 frames after).
    avoiding = collect(
        "avoiding", "paths", episodes=4, seed=0, out=tmp_path / "avoiding", num_tasks=4, show_progress=False
    )
    overrides = {"after": 2, "hidden_sizes": [32]}
    straight = train("idm", avoiding, tmp_path / "a", quick_config(8), overrides, show_progress=False)
    train("idm", avoiding, tmp_path / "b", quick_config(4, checkpoint_every=4), overrides, show_progress=False)
    resumed = train(
        "idm", avoiding, tmp_path / "b", quick_config(8, checkpoint_every=4), resume=True, show_progress=False
    )
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=0, atol=0)
    assert not straight.config.discrete and straight.config.window == 3


def test_label_bad_input_is_one_error_line(
    idm_run: tuple[Path, InverseDynamicsModel],
    maze_sets: dict[str, Dataset],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run, _ = idm_run
    source = maze_sets["unlabelled"]
    before = tree_hash(source.path)
    out = str(tmp_path / "out")

    def label(data: Path, idm: Path) -> tuple[int, str]:
        code = main(["label", str(data), "--idm", str(idm), "--out", out])
        return code, capsys.readouterr().err

    assert_one_error_line(*label(source.path, tmp_path / "no-run"), "no-run", "run directory not found")
    bigger = collect(
        "maze", "bfs", episodes=2, seed=0, out=tmp_path / "big", env_kwargs={"size": 9}, show_progress=False
    )
    big_only = write_observation_only(bigger, tmp_path / "big-obs")
    assert_one_error_line(*label(big_only.path, run), "big-obs", "(3, 9, 9)", "(3, 7, 7)")
    assert_one_error_line(*label(maze_sets["true"].path, run), "already has an 'action' stream")
    assert_one_error_line(*label(source.path, maze_sets["labelled"].path), "config.json")  # a dataset, not a run
    assert tree_hash(source.path) == before and not Path(out).exists()
