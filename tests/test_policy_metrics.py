"""Quality measures with a policy in the loop: divergence from the data (stateless and stateful policies agree,
training lowers it), leave-one-demonstrator-out compatibility ranks injected bad demonstrators last, and the
CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from clonekit.cli import main
from clonekit.data import Dataset
from clonekit.envs.maze import sample_tasks
from clonekit.experiments.maze_pollution import PollutionConfig, polluted_demonstrations
from clonekit.policies import build_policy
from clonekit.policies.bc import BCPolicy
from clonekit.quality.policy_metrics import compatibility, divergence_summary, policy_divergence
from clonekit.train import TrainConfig, policy_config_for, train
from tests.conftest import assert_one_error_line, tree_hash


class _CountingBC(BCPolicy):
    """bc with a (useless) per-slot step counter as its state: the divergence must step it episode by episode."""

    def initial_state(self, batch_size: int) -> Any:
        return torch.zeros(batch_size, dtype=torch.int64)

    def act(self, obs: dict[str, torch.Tensor], state: Any | None = None) -> tuple[torch.Tensor, Any]:
        assert state is not None and len(state) == len(obs["obs"])
        action, _ = super().act(obs, None)
        return action, state + 1

    def action_logits(self, obs: dict[str, torch.Tensor], state: Any | None = None) -> tuple[torch.Tensor, Any]:
        logits, _ = super().action_logits(obs, None)
        return logits, state + 1


def _config(steps: int, seed: int = 0) -> TrainConfig:
    return TrainConfig(
        steps=steps, batch_size=128, log_every=10**6, checkpoint_every=10**6, tensorboard=False, seed=seed
    )


def test_stateful_policies_are_scored_episode_by_episode_like_stateless_ones(maze_data: Dataset) -> None:
    config = policy_config_for("bc", maze_data)
    torch.manual_seed(0)
    flat = build_policy("bc", config)
    stateful = _CountingBC(flat.config)
    stateful.load_state_dict(flat.state_dict())
    one = policy_divergence(flat, maze_data, batch_size=97)
    two = policy_divergence(stateful, maze_data, batch_size=7)  # several groups of episodes, ragged lengths
    assert one.kind == two.kind == "mismatch"
    np.testing.assert_array_equal(one.per_step, two.per_step)
    assert one.nll is not None and two.nll is not None
    np.testing.assert_allclose(one.nll, two.nll, rtol=1e-6)


def test_training_on_the_data_lowers_the_divergence_and_the_cli_reports_it(
    maze_data: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_torch_thread: None
) -> None:
    before = tree_hash(maze_data.path)
    untrained = policy_divergence(build_policy("bc", policy_config_for("bc", maze_data)), maze_data)
    trained = train("bc", maze_data, tmp_path / "run", _config(150), show_progress=False)
    after = policy_divergence(trained, maze_data)
    assert untrained.per_step.mean() > 0.5  # four actions: a random network disagrees on ~3/4 of the steps
    assert after.per_step.mean() < 0.1, after.per_step.mean()
    summary = divergence_summary(maze_data, after, worst=3)
    assert len(summary["worst_episodes"]) == 3 and summary["mean"] == pytest.approx(after.per_step.mean())

    code = main(["inspect", str(maze_data.path), "--quality", "--json", "--policy", str(tmp_path / "run")])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["policy_divergence"]["mean"] == pytest.approx(after.per_step.mean())
    assert tree_hash(maze_data.path) == before
    code = main(["inspect", str(maze_data.path), "--policy", str(tmp_path / "run")])
    assert_one_error_line(code, capsys.readouterr().err, "--policy: only used with --quality")
    code = main(["inspect", str(maze_data.path), "--quality", "--compatibility", "bc"])
    assert_one_error_line(code, capsys.readouterr().err, "--compatibility: needs --out")


def test_continuous_divergence_is_in_action_standard_deviations(
    avoiding_data: Dataset, tmp_path: Path, one_torch_thread: None
) -> None:
    torch.manual_seed(0)
    fresh = build_policy("continuous_bc", policy_config_for("continuous_bc", avoiding_data, {"head": "mse"}))
    trained = train(
        "continuous_bc",
        avoiding_data,
        tmp_path / "run",
        _config(300),
        {"head": "mse"},
        show_progress=False,
    )
    untrained, fitted = policy_divergence(fresh, avoiding_data), policy_divergence(trained, avoiding_data)
    assert untrained.kind == "distance" and untrained.nll is None
    assert fitted.per_step.mean() < 0.6 * untrained.per_step.mean(), (fitted.per_step.mean(), untrained.per_step.mean())


def test_leave_one_out_compatibility_ranks_noisy_and_incompatible_demonstrators_last(
    tmp_path: Path, one_torch_thread: None
) -> None:
    tasks = sample_tasks(0, "train", 6, size=7)
    config = PollutionConfig(experts=2, noisy=1, wanderers=0, greedy=1, starts=4, noise_rate=0.3)
    data = polluted_demonstrations(tmp_path / "data", tasks, config, 0, {"size": 7})
    result = compatibility(data, "bc", tmp_path / "compat", _config(120))
    scores = {name: row["compatibility"] for name, row in result["demonstrators"].items()}
    assert set(scores) == {"expert_0", "expert_1", "noisy_0", "greedy_0"}
    assert min(scores["expert_0"], scores["expert_1"]) > max(scores["noisy_0"], scores["greedy_0"]) + 0.05, scores
    # A second call reuses the finished runs (an interrupted call resumes) and gives the same numbers.
    again = compatibility(data, "bc", tmp_path / "compat", _config(120))
    assert again == result
