"""Interactive imitation on a gymnasium env: the Pendulum swing-up expert, the intervener made from the expert
that recorded the data, and the ``gym-interactive`` settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from clonekit.data import DatasetWriter
from clonekit.envs import get_env_family
from clonekit.errors import ConfigError
from clonekit.evaluation import rollout, split_tasks
from clonekit.experiments.gym_interactive import GymInteractiveConfig
from clonekit.experts import make_expert
from clonekit.experts.collect import collect
from clonekit.interactive import InteractiveConfig, run_interactive
from clonekit.quality.subset import write_subset
from clonekit.train import TrainConfig, train

PENDULUM = {"success_threshold": -400.0}


def test_the_swing_up_expert_balances_the_pendulum_from_every_start(tmp_path: Path) -> None:
    data = collect(
        "gym:Pendulum-v1", "swing-up", episodes=40, seed=0, out=tmp_path / "d", env_kwargs=PENDULUM, show_progress=False
    )
    for k in range(data.num_episodes):
        steps = data.episode(k)
        cos, sin = np.asarray(steps["obs"])[-40:, 0], np.asarray(steps["obs"])[-40:, 1]
        assert np.abs(np.arctan2(sin, cos)).max() < 0.05, k  # upright through the episode's last 40 steps
        assert float(np.sum(steps["reward"])) >= -400.0, k
    torques, _ = make_expert("gym:Pendulum-v1", "swing-up").act(np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]))
    assert torques.shape == (2, 1) and torques.dtype == np.float32
    assert torques[0, 0] == 0.0 and torques[1, 0] == 2.0  # at rest upright: nothing; at rest hanging: full push


def test_an_interactive_run_on_a_gym_env_is_labelled_by_the_expert_that_recorded_the_data(
    tmp_path: Path, one_torch_thread: None
) -> None:
    demos = collect(  # 8 start states, 4 demonstrated: the round plays a start no demonstration saw
        "gym:Pendulum-v1",
        "swing-up",
        episodes=4,
        seed=1,
        out=tmp_path / "d",
        num_tasks=8,
        env_kwargs=PENDULUM,
        show_progress=False,
    )
    config = InteractiveConfig(
        policy_overrides={"hidden_sizes": [16]},
        train_steps=5,
        batch_size=32,
        episodes_per_round=1,
        max_episode_steps=30,
        beta=0.0,
    )
    run = run_interactive("dagger", demos, tmp_path / "run", rounds=1, seed=0, config=config)
    assert run.rounds[0]["expert_labels"] == 30
    played = np.asarray(run.dataset.column("round")) == 0
    obs, labels = np.asarray(run.dataset.column("obs"))[played], np.asarray(run.dataset.column("expert_action"))[played]
    expected, _ = make_expert("gym:Pendulum-v1", "swing-up").act(obs)
    np.testing.assert_array_equal(labels, expected)
    # beta = 0: the policy's own actions ran, and they are not the expert's
    assert not np.allclose(np.asarray(run.dataset.column("action"))[played], labels)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("policies", ("bc", "nope"), "policies"),
        ("threshold", 0.0, "threshold"),
        ("demo_episodes", 500, "demo_episodes"),
        ("dagger_max_steps", 0, "dagger_max_steps"),
        ("delay", -1, "delay"),
    ],
)
def test_gym_interactive_settings_are_checked(field: str, value: object, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        GymInteractiveConfig(**{field: value})  # type: ignore[arg-type]


def test_data_of_an_env_without_an_intervener_or_a_recorded_expert_is_a_clear_error(tmp_path: Path) -> None:
    demos = collect(
        "gym:Pendulum-v1", "swing-up", episodes=1, seed=0, out=tmp_path / "d", env_kwargs=PENDULUM, show_progress=False
    )
    env = {key: value for key, value in demos.env.items() if key != "expert"}
    writer = DatasetWriter(tmp_path / "anon", list(demos.streams.values()), spaces=demos.spaces, env=env)
    with writer:
        writer.add_episode(demos.episode(0))
        anonymous = writer.close()
    with pytest.raises(ConfigError, match=r"env 'gym' has none .* names no expert that recorded it"):
        run_interactive("dagger", anonymous, tmp_path / "run", rounds=1)
    assert not (tmp_path / "run").exists()


def test_a_rounds_successes_follow_the_envs_own_rule(tmp_path: Path, one_torch_thread: None) -> None:
    """Pendulum never terminates: a success is a return over its threshold when the episode ends (the env's
    rule, as in evaluation), not a terminal positive reward."""
    demos = collect(
        "gym:Pendulum-v1", "swing-up", episodes=2, seed=1, out=tmp_path / "d", num_tasks=4, env_kwargs=PENDULUM,
        show_progress=False,
    )  # fmt: skip
    config = InteractiveConfig(
        policy_overrides={"hidden_sizes": [16]}, train_steps=5, batch_size=32, episodes_per_round=2, beta=1.0
    )  # beta = 1: the expert drives whole 200-step episodes, and it swings up from every start
    run = run_interactive("dagger", demos, tmp_path / "run", rounds=1, seed=0, config=config)
    assert run.rounds[0]["steps"] == 400 and run.rounds[0]["successes"] == 2


def test_hg_dagger_beats_bc_at_the_same_number_of_expert_labels(tmp_path: Path, one_torch_thread: None) -> None:
    """The README's gym-interactive claim at a small size: from 1 demonstration (200 labels) and at most 400 labels
    of take-overs, HG-DAgger swings up on unseen start states where BC on 3 demonstrations (600 labels) mostly does
    not, and its actions are nearer the expert's on the states it visits itself."""
    success, error, labels = hg_dagger_against_bc(tmp_path, seed=0)
    # Measured (`python benchmarks/gym_interactive_claim.py --seeds 0-11`): HG-DAgger 0.88-1.00 success, BC
    # 0.00-0.94, HG-DAgger >= BC on every seed (by 0.06-0.07 on seeds 2 and 9); own-state error HG/BC 0.06-0.38
    # (1.03 on seed 9). Seed 0: success 0.94 vs 0.44, error 0.29 vs 0.78.
    assert labels <= 400
    assert success["hg_dagger"] >= 0.8 and success["hg_dagger"] >= success["bc"] + 0.3, success
    assert error["hg_dagger"] <= 0.6 * error["bc"], error


def hg_dagger_against_bc(out: Path, seed: int) -> tuple[dict[str, float], dict[str, float], int]:
    """The claim test's comparison for one data/run seed: test success on 16 unseen start states and own-state
    action error of ``bc`` (3 demonstrations) and ``hg_dagger`` (1 demonstration, 2 rounds of 8 episodes), and
    HG-DAgger's labels."""
    pool = collect(
        "gym:Pendulum-v1", "swing-up", episodes=3, seed=seed, out=out / "pool", num_tasks=40, env_kwargs=PENDULUM,
        show_progress=False,
    )  # fmt: skip
    one = write_subset(pool, out / "one", [0], "the first demonstration")
    net = {"hidden_sizes": [128, 128]}
    settings = TrainConfig(steps=1000, batch_size=64, seed=seed, tensorboard=False)
    bc = train("continuous_bc", pool, out / "bc", settings, net, show_progress=False)
    config = InteractiveConfig(
        policy_overrides=net, train_steps=1000, batch_size=64, episodes_per_round=8, max_episode_steps=100,
        threshold=0.5, label_budget=400,
    )  # fmt: skip
    hg = run_interactive("hg_dagger", one, out / "run", rounds=2, seed=seed, config=config)
    family, env_kwargs = get_env_family("gym"), {"id": "Pendulum-v1", **PENDULUM}
    tasks = split_tasks(pool.env, "test", seed, 16)
    policies = {"bc": bc, "hg_dagger": hg.policy}
    success = {k: float(rollout(p, family, tasks, 16, seed, env_kwargs).success.mean()) for k, p in policies.items()}
    error = {k: _own_state_error(p, family, tasks) for k, p in policies.items()}
    return success, error, sum(r["expert_labels"] for r in hg.rounds)


def _own_state_error(policy: Any, family: Any, tasks: list[Any], steps: int = 100) -> float:
    """Mean L1 distance of ``policy``'s torque from the swing-up expert's on the states it visits itself."""
    expert = make_expert("gym:Pendulum-v1", "swing-up")
    vec = family.make_vec(tasks, id="Pendulum-v1", **PENDULUM)
    obs, errors = vec.reset(seed=123), []
    policy.eval()
    with torch.inference_mode():
        for _ in range(steps):
            action = policy.act({"obs": torch.from_numpy(obs)}, None)[0].numpy()
            errors.append(np.abs(action - expert.act(obs)[0]).sum(axis=1))
            obs, *_ = vec.step(action)
    return float(np.mean(errors))
