"""BCO (behavioural cloning from observation): an inverse dynamics model learned from the agent's own CartPole
steps labels observation-only expert demos well enough for BC to balance the pole, the labels match the
expert's hidden actions, a killed run resumes exactly, and bad input is one error line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import clonekit.rl.bco as bco_module
from clonekit.checkpoint import MODEL_FILE, load_policy, load_tensors
from clonekit.cli import main
from clonekit.data import Dataset
from clonekit.data.observation_only import write_observation_only
from clonekit.data.writer import DatasetWriter
from clonekit.envs import get_env_family
from clonekit.errors import CheckpointError
from clonekit.evaluation import rollout
from clonekit.experts.collect import collect
from clonekit.policies.idm.label import idm_labels, load_idm
from clonekit.rl.bco import NEXT_OBS_STREAM, BCOConfig, train_bco
from tests.conftest import assert_one_error_line

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EXPERT = "py:clonekit.experiments.adversarial_il:cartpole_expert"


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, Dataset]:
    """Two CartPole expert episodes (500 steps each): with their actions, and the observation-only copy."""
    root = tmp_path_factory.mktemp("bco_demos")
    labelled = collect("gym:CartPole-v1", EXPERT, episodes=2, seed=0, out=root / "labelled", show_progress=False)
    return labelled, write_observation_only(labelled, root / "observations")


def _config(observations: Dataset, **changes: Any) -> BCOConfig:
    settings: dict[str, Any] = {
        "demos": str(observations.path),
        "env": "CartPole-v1",
        "pre_steps": 600,
        "alpha": 0.5,
        "iterations": 1,
        "num_envs": 4,
        "idm_steps": 100,
        "idm_hidden_sizes": (64,),
        "bc_steps": 300,
        "bc_hidden_sizes": (64, 64),
    }
    return BCOConfig(**(settings | changes))


@pytest.fixture(scope="module")
def learned(demos: tuple[Dataset, Dataset], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BCOConfig]:
    config = _config(demos[1])
    run_dir = tmp_path_factory.mktemp("bco_run") / "run"
    trained = train_bco(config, run_dir, show_progress=False)
    obs = {"obs": torch.tensor(np.asarray(demos[1].column("obs")[:64]))}
    assert torch.equal(trained.act(obs)[0], load_policy(run_dir).act(obs)[0])  # saved -> loaded: same actions
    return run_dir, config


def test_bco_balances_cartpole_from_observations_alone(
    demos: tuple[Dataset, Dataset], learned: tuple[Path, BCOConfig]
) -> None:
    labelled, observations = demos
    run_dir, config = learned
    policy = load_policy(run_dir)  # the run is an ordinary clonekit policy run
    family, env_kwargs = get_env_family("gym"), {"id": "CartPole-v1"}
    tasks = family.sample_tasks(1, "test", 4, set(), **env_kwargs)
    results = rollout(policy, family, tasks, 4, 1, env_kwargs)
    # A uniformly random policy lasts about 22 steps; the expert 500.
    assert results.metrics(0)["return"]["mean"] >= 400, results.metrics(0)["return"]
    # Every env step of both phases is counted, and the agent's data holds exactly those.
    agent = Dataset.open(run_dir / "data" / "agent_1")
    assert agent.num_steps == config.total_env_steps == 600 + 300
    # The demos were labelled by the IDM alone: its labels agree with the expert's hidden actions.
    final_labels = np.asarray(Dataset.open(run_dir / "data" / "labelled_1").column("action"))
    assert (final_labels == np.asarray(labelled.column("action"))).mean() >= 0.95
    assert "action" not in observations.streams


def test_idm_labels_the_agents_own_unseen_transitions(learned: tuple[Path, BCOConfig]) -> None:
    run_dir, config = learned
    agent = Dataset.open(run_dir / "data" / "agent_1")
    # Phase 0's IDM (random play only) against the BC policy's phase-1 steps, which it never trained on.
    fresh = np.arange(agent.num_steps) >= config.phase_env_steps(0)
    stored = np.asarray(agent.column(NEXT_OBS_STREAM)) > 0
    labels = idm_labels(load_idm(run_dir / "runs" / "idm_0"), agent)
    correct = labels == np.asarray(agent.column("action"))
    assert correct[fresh & stored].mean() >= 0.9
    metrics = bco_module.phase_metrics(run_dir)
    assert [m["phase"] for m in metrics] == [0, 1]
    assert all(m["idm_accuracy"] >= 0.95 for m in metrics), metrics


def test_killed_run_resumes_exactly(demos: tuple[Dataset, Dataset], tmp_path: Path, monkeypatch: Any) -> None:
    config = _config(demos[1], pre_steps=64, idm_steps=20, bc_steps=20, idm_hidden_sizes=(16,), bc_hidden_sizes=(16,))
    train_bco(config, tmp_path / "whole", show_progress=False)

    real_label = bco_module.label_dataset

    def killed_in_phase_1(data: Any, run: Any, out: Path, **kwargs: Any) -> Dataset:
        if Path(out).name == "labelled_1":
            raise KeyboardInterrupt
        return real_label(data, run, out, **kwargs)

    monkeypatch.setattr(bco_module, "label_dataset", killed_in_phase_1)
    with pytest.raises(KeyboardInterrupt):
        train_bco(config, tmp_path / "split", show_progress=False)
    with pytest.raises(CheckpointError, match="already exists"):
        train_bco(config, tmp_path / "split", show_progress=False)
    monkeypatch.setattr(bco_module, "label_dataset", real_label)
    with pytest.raises(CheckpointError, match="bc_steps"):
        train_bco(_config(demos[1], pre_steps=64, idm_steps=20, bc_steps=21), tmp_path / "split", resume=True)
    train_bco(config, tmp_path / "split", resume=True, show_progress=False)
    whole, split = (load_tensors(tmp_path / d / MODEL_FILE) for d in ("whole", "split"))
    assert whole.keys() == split.keys() and all(torch.equal(whole[k], split[k]) for k in whole)
    assert (tmp_path / "whole" / "metrics.jsonl").read_text() == (tmp_path / "split" / "metrics.jsonl").read_text()


def pendulum_expert(obs: np.ndarray) -> np.ndarray:
    """A Pendulum demonstrator for the Box test: torque against the angular velocity and the angle's sine."""
    obs = np.asarray(obs)
    return np.clip(-2.0 * obs[:, 2:3] - obs[:, 1:2], -2.0, 2.0).astype(np.float32)


def test_bco_with_box_actions_regresses_the_torques(tmp_path: Path) -> None:
    expert = f"py:{__name__}:pendulum_expert"
    labelled = collect("gym:Pendulum-v1", expert, episodes=1, seed=0, out=tmp_path / "labelled", show_progress=False)
    observations = write_observation_only(labelled, tmp_path / "observations")
    config = _config(
        observations, env="Pendulum-v1", pre_steps=400, iterations=0, idm_steps=200, bc_steps=50, bc_hidden_sizes=(16,)
    )
    train_bco(config, tmp_path / "run", show_progress=False)
    labels = np.asarray(Dataset.open(tmp_path / "run" / "data" / "labelled_0").column("action"))
    true = np.asarray(labelled.column("action"))
    assert labels.shape == true.shape and np.abs(labels).max() <= 2.0
    assert np.corrcoef(labels.ravel(), true.ravel())[0, 1] >= 0.9  # the expert's hidden torques
    # On its own uniformly random torques: 1 - mean error in half-ranges (a constant guess of 0 scores 0.5).
    assert bco_module.phase_metrics(tmp_path / "run")[0]["idm_accuracy"] >= 0.75
    actions = load_policy(tmp_path / "run").act({"obs": torch.zeros(2, 3)})[0]
    assert actions.shape == (2, 1) and bool((actions.abs() <= 2.0).all())


def _run(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_bad_input_is_one_error_line(
    demos: tuple[Dataset, Dataset], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    observations = demos[1].path
    code, _, err = _run(capsys, "rl", "bco", "--env", "Acrobot-v1", "--data", observations, "--out", tmp_path / "a")
    assert_one_error_line(code, err, "CartPole-v1", "Acrobot-v1")
    code, _, err = _run(
        capsys, "rl", "bco", "--env", "CartPole-v1", "--data", tmp_path / "none", "--out", tmp_path / "b"
    )
    assert_one_error_line(code, err, str(tmp_path / "none"))
    code, _, err = _run(
        capsys,
        "rl",
        "bco",
        "--env",
        "CartPole-v1",
        "--data",
        observations,
        "--set",
        "alpha=-1",
        "--out",
        tmp_path / "c",
    )
    assert_one_error_line(code, err, "alpha")
    source = demos[1]
    writer = DatasetWriter(tmp_path / "single", list(source.streams.values()), spaces=source.spaces, env=source.env)
    with writer:  # episodes of one observation each: no pair (s, s') to imitate
        for k in range(2):
            writer.add_episode({name: values[:1] for name, values in source.episode(k).items()})
    code, _, err = _run(
        capsys, "rl", "bco", "--env", "CartPole-v1", "--data", tmp_path / "single", "--out", tmp_path / "d"
    )
    assert_one_error_line(code, err, "single", "pairs")
    for name in ("a", "b", "c", "d"):
        assert not (tmp_path / name).exists()
