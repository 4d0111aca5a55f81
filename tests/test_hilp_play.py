"""Goal reaching from undirected play: the ``avoiding-reach`` env, play data, ``hilp`` and ``play_lmp``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from clonekit.checkpoint import load_policy
from clonekit.data import Dataset
from clonekit.data.windows import sample_batch
from clonekit.envs import get_env_family
from clonekit.envs.avoiding import REACH_TOLERANCE, AvoidingReachVecEnv, AvoidingTask, collides, sample_reach_tasks
from clonekit.errors import ConfigError
from clonekit.experiments import avoiding_hilp
from clonekit.experts.play import write_play_data
from clonekit.policies import Policy, build_policy
from clonekit.pretrain.hilp import steps_to_episode_end
from clonekit.train import TrainConfig, policy_config_for, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {
    "hilp": {"hidden_sizes": [32, 32], "phi_hidden_sizes": [32, 32], "latent_dim": 8, "goal_window": 32},
    "play_lmp": {"hidden_sizes": [32, 32], "latent_dim": 4, "max_window": 16, "min_window": 8, "replan_every": 4},
}


@pytest.fixture(scope="module")
def play_data(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """12 play episodes of 150 steps (seed 0)."""
    return write_play_data(tmp_path_factory.mktemp("play") / "data", 12, 150, seed=0)


def test_reach_tasks_succeed_only_near_their_goal_and_crash_on_obstacles() -> None:
    tasks = [
        AvoidingTask((0.5, 0.1), (0.5, 0.2)),
        AvoidingTask((0.5, 0.1), (-0.5, 0.2)),
        AvoidingTask((0.0, 0.08), (0.5, 0.5)),
    ]
    env = AvoidingReachVecEnv(tasks, max_steps=3)
    env.reset()
    np.testing.assert_allclose(env.policy_inputs()["goal"], [[0.5, 0.2], [-0.5, 0.2], [0.5, 0.5]])
    # Slot 0 moves to within tolerance of its goal; slot 1 makes the same moves far from its own; slot 2 moves
    # into the obstacle at (0, 0.25).
    up = np.array([[0.0, 1.0]] * 3)
    _, reward, terminated, _ = env.step(up)
    assert reward.tolist() == [0.0, 0.0, 0.0] and not terminated.any()  # 0.06 from the goal: not yet
    _, reward, terminated, _ = env.step(up)
    assert reward.tolist() == [1.0, 0.0, 0.0] and terminated.tolist() == [True, False, True]
    assert env.crashed.tolist() == [False, False, True] and REACH_TOLERANCE == 0.05
    _, _, _, truncated = env.step(up)
    assert truncated.tolist() == [False, True, False] and env.done.all()


def test_reach_family_splits_roundtrip_and_rejects_unknown_options() -> None:
    family = get_env_family("avoiding-reach")
    train_tasks = family.sample_tasks(0, "train", 10, set())
    test_tasks = family.sample_tasks(0, "test", 10, {family.task_key(t) for t in train_tasks})
    assert not {family.task_key(t) for t in train_tasks} & {family.task_key(t) for t in test_tasks}
    assert [family.task_from_json(family.task_to_json(t)) for t in test_tasks] == test_tasks
    grouped = sample_reach_tasks(1, "test", 4, 3)
    assert len({t.goal for t in grouped}) == 4 and all(
        t.goal == grouped[3 * (i // 3)].goal for i, t in enumerate(grouped)
    )
    points = np.array([t.start for t in grouped] + [t.goal for t in grouped if t.goal is not None])
    assert not collides(points).any()
    with pytest.raises(ConfigError, match=r"avoiding-reach: unknown option\(s\) \['drift'\]"):
        family.make_vec(test_tasks, drift=0.01)


def test_play_data_is_long_collision_free_and_names_no_training_task(play_data: Dataset) -> None:
    obs = np.asarray(play_data.column("obs"), dtype=np.float64)
    assert play_data.num_episodes == 12 and list(play_data.episode_lengths) == [150] * 12
    assert not collides(obs).any() and play_data.env["id"] == "avoiding-reach" and play_data.env["tasks"] == []
    assert obs[:, 0].min() < -0.5 < 0.5 < obs[:, 0].max()  # the player wanders across the arena
    assert steps_to_episode_end([3, 2]).tolist() == [2, 1, 0, 1, 0]


def _fixed_batches(policy: Policy, data: Dataset, count: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(123)
    derived = policy.derived_streams(data)
    return [
        sample_batch(data, 128, generator, ["obs", "action"], policy.sample_windows(), derived) for _ in range(count)
    ]


def _loss_term(policy: Policy, batches: list[dict[str, torch.Tensor]], term: str) -> float:
    torch.manual_seed(7)  # the same relabeled goals / plan noise before and after training
    with torch.no_grad():
        return float(np.mean([policy.compute_loss(b)[1][term] for b in batches]))


@pytest.mark.parametrize(
    ("name", "term", "steps", "ratio"), [("hilp", "phi_loss", 150, 0.3), ("play_lmp", "action_mse", 150, 0.6)]
)
def test_objective_decreases_on_tiny_play(
    play_data: Dataset, tmp_path: Path, name: str, term: str, steps: int, ratio: float
) -> None:
    torch.manual_seed(0)
    untrained = build_policy(name, policy_config_for(name, play_data, TINY[name]))
    untrained.prepare(play_data)
    batches = _fixed_batches(untrained, play_data, 4)
    before = _loss_term(untrained, batches, term)
    config = TrainConfig(steps=steps, batch_size=128, lr=3e-3, grad_clip=0.0, tensorboard=False, val_fraction=0.0)
    trained = train(name, play_data, tmp_path / name, config, TINY[name], show_progress=False)
    after = _loss_term(trained, batches, term)
    # Measured (seed 0): hilp phi_loss 0.080 -> 0.0078 (x0.10); play_lmp action_mse 0.58 -> 0.21 (x0.35).
    assert after < ratio * before, (before, after)

    # Contract: the checkpoint alone reproduces the actions (goal input included), and the batch is untouched.
    loaded = load_policy(tmp_path / name)
    inputs = {"obs": torch.tensor([[0.5, 0.1], [-0.7, 0.9]]), "goal": torch.tensor([[-0.5, 0.6], [0.2, 0.3]])}
    state_a, state_b = trained.initial_state(2), loaded.initial_state(2)
    with torch.no_grad():
        for _ in range(3):
            (a, state_a), (b, state_b) = trained.act(inputs, state_a), loaded.act(inputs, state_b)
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    batch = batches[0]
    copy = {k: v.clone() for k, v in batch.items()}
    trained.compute_loss(batch)
    assert all(torch.equal(batch[k], copy[k]) for k in batch)
    with pytest.raises(ConfigError, match=f"^{name}: the policy reads a 'goal' input"):
        trained.act({"obs": inputs["obs"]}, trained.initial_state(2))


@pytest.mark.parametrize(
    ("name", "field", "value", "message"),
    [
        ("hilp", "p_random_goal", 0.9, r"p_current_goal \+ p_random_goal: expected <= 1"),
        ("hilp", "goal_window", 1, "goal_window: expected in \\[2, 4096\\], got 1"),
        ("play_lmp", "min_window", 64, "min_window: expected in \\[2, max_window=32\\], got 64"),
    ],
)
def test_bad_settings_are_one_line_errors(
    play_data: Dataset, name: str, field: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        build_policy(name, policy_config_for(name, play_data, {field: value}))
    assert "\n" not in str(error.value)


def test_hilp_experiment_smoke_writes_results_report_and_plots(tmp_path: Path) -> None:
    tiny = replace(
        avoiding_hilp.QUICK,
        play_episodes=4,
        play_length=60,
        test_goals=2,
        starts_per_goal=2,
        steps=10,
        hidden_sizes=(16,),
    )
    results = avoiding_hilp.run(tmp_path, 0, True, show_progress=False, log=lambda line: None, config=tiny)
    assert set(results["metrics"]) == {"gcbc", "hilp"}
    assert results["metrics"]["hilp"]["test"]["success"]["n"] == 4
    assert {"results.json", "report.md"} <= {p.name for p in tmp_path.iterdir()}
