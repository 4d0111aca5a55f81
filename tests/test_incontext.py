"""In-context RL (ReLIC-lite): the hidden-goal env, the relic policy's contract, learning, exact resume, errors."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from clonekit.checkpoint import MODEL_FILE, checkpoint_dirs, load_policy, load_tensors
from clonekit.envs.hidden_goal import (
    NEW_TRIAL_FEATURE,
    REWARD_FEATURE,
    HiddenGoalSpec,
    HiddenGoalTask,
    HiddenGoalVecEnv,
    train_test_tasks,
)
from clonekit.errors import CheckpointError, ConfigError
from clonekit.experiments.common import torch_threads
from clonekit.experiments.incontext import InContextConfig
from clonekit.policies.relic import RelicConfig, RelicPolicy
from clonekit.rl.incontext import InContextPPOConfig, evaluate_trials, play_episodes, train_incontext

UP, DOWN, LEFT, RIGHT = 0, 1, 2, 3
# A two-armed bandit: a 1 x 3 corridor, start in the middle, the goal left or right, one step per trial.
BANDIT = HiddenGoalSpec(height=1, width=3, obstacles=0, trials=2, trial_steps=1, center_start=True, min_distance=1)
BANDIT_PPO = InContextPPOConfig(
    iterations=35, num_envs=32, lr=5e-3, d_model=16, num_heads=2, num_layers=1, feedforward=32, checkpoint_every=10
)


def bandit_tasks() -> list[HiddenGoalTask]:
    walls = np.zeros((1, 3), dtype=bool)
    return [HiddenGoalTask(walls, (0, 1), (0, 0)), HiddenGoalTask(walls, (0, 1), (0, 2))]


@pytest.fixture(scope="module")
def bandit_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RelicPolicy]:
    run = tmp_path_factory.mktemp("incontext") / "bandit"
    with torch_threads(1):
        policy = train_incontext(BANDIT_PPO, BANDIT, bandit_tasks(), run, show_progress=False)
    return run, policy


def test_goal_is_hidden_and_trials_reset_the_agent_but_not_the_goal() -> None:
    spec = HiddenGoalSpec(height=3, width=3, obstacles=0, trials=3, trial_steps=4, center_start=True)
    walls = np.zeros((3, 3), dtype=bool)
    tasks = [HiddenGoalTask(walls, (1, 1), (0, 0)), HiddenGoalTask(walls, (1, 1), (2, 2))]
    env = HiddenGoalVecEnv(spec, tasks)
    first = env.reset()
    assert first.shape == (2, spec.obs_dim) and np.array_equal(first[0], first[1])  # goals differ, obs do not
    obs, reward, trial_end, done = env.step(np.array([RIGHT, RIGHT]))
    assert np.array_equal(obs[0], obs[1]) and not reward.any() and not trial_end.any()
    obs, reward, trial_end, _ = env.step(np.array([UP, DOWN]))  # task 1 reaches (2, 2)
    assert reward.tolist() == [0.0, 1.0] and trial_end.tolist() == [False, True]
    assert env.pos[1].tolist() == [1, 1] and env.trial_index[1] == 1  # back at the start, next trial
    assert obs[1, NEW_TRIAL_FEATURE] == 1 and obs[1, REWARD_FEATURE] == 1 and obs[0, NEW_TRIAL_FEATURE] == 0
    for action in (RIGHT, DOWN):  # the same route finds the goal again: it stayed
        obs, reward, trial_end, done = env.step(np.array([LEFT, action]))
    assert reward[1] == 1.0 and env.trial_index[1] == 2 and not done.any()
    train, test = train_test_tasks(HiddenGoalSpec(), seed=0, num_train=50, num_test=20)
    assert not {t.layout_key for t in train} & {t.layout_key for t in test}  # unseen layouts


def test_bandit_learns_to_use_its_context(bandit_run: tuple[Path, RelicPolicy]) -> None:
    # Measured (seeds 0-4 of this config): trial 1 0.62-0.63, trial 2 0.94-1.00 (chance after a miss: 0.25).
    _, policy = bandit_run
    success = evaluate_trials(policy, BANDIT, bandit_tasks(), seed=0, episodes_per_task=64)["success"].mean(axis=0)
    assert success[1] >= 0.85 and success[1] >= success[0] + 0.2, success


def test_save_load_same_actions_and_inputs_untouched(bandit_run: tuple[Path, RelicPolicy]) -> None:
    run, policy = bandit_run
    loaded = load_policy(run)
    assert isinstance(loaded, RelicPolicy)
    spec = HiddenGoalSpec(height=3, width=3, obstacles=1, trials=2, trial_steps=3)
    net = RelicPolicy(InContextPPOConfig(d_model=16, num_heads=2).policy_config(spec))
    tasks = train_test_tasks(spec, 0, 4, 1)[0]
    greedy = play_episodes(net, spec, tasks, generator=None)
    state = net.initial_state(4)
    for t in range(greedy.obs.shape[1]):  # act (cached context) repeats the greedy rollout of the whole context
        obs = {"obs": greedy.obs[:, t].clone()}
        before = obs["obs"].clone()
        actions, state = net.act(obs, state)
        assert torch.equal(obs["obs"], before)
        assert torch.equal(actions[greedy.valid[:, t]], greedy.actions[greedy.valid[:, t], t])
    for a, b in zip(loaded.state_dict().values(), policy.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    obs = {"obs": torch.from_numpy(HiddenGoalVecEnv(BANDIT, bandit_tasks()).reset())}
    assert torch.equal(loaded.act(obs)[0], policy.act(obs)[0])


def test_no_memory_sees_only_its_own_trial() -> None:
    spec = HiddenGoalSpec(height=3, width=3, obstacles=1, trials=3, trial_steps=3)
    tasks = train_test_tasks(spec, 0, 4, 1)[0]
    for memory, isolated in (("trial", True), ("episode", False)):
        config = InContextPPOConfig(d_model=16, num_heads=2, memory=memory)  # type: ignore[arg-type]
        net = RelicPolicy(config.policy_config(spec))
        episodes = play_episodes(net, spec, tasks, generator=torch.Generator().manual_seed(0))
        logits, _ = net.forward_sequence(episodes.obs, episodes.prev_actions)
        last = episodes.trial[0] == episodes.trial[0, -1]  # the last trial of episode 0 (it ran to the end)
        alone, _ = net.forward_sequence(episodes.obs[:1, last], episodes.prev_actions[:1, last])
        assert torch.allclose(alone[0], logits[0, last], atol=1e-5) == isolated, memory


def test_exact_resume(tmp_path: Path) -> None:
    config = dataclasses.replace(BANDIT_PPO, iterations=2, checkpoint_every=1, keep_checkpoints=2, num_envs=8)
    whole = train_incontext(config, BANDIT, bandit_tasks(), tmp_path / "a", show_progress=False)
    train_incontext(config, BANDIT, bandit_tasks(), tmp_path / "b", show_progress=False)
    shutil.rmtree(checkpoint_dirs(tmp_path / "b")[-1])  # as if killed after the checkpoint at update 1
    (tmp_path / "b" / MODEL_FILE).unlink()
    train_incontext(config, BANDIT, bandit_tasks(), tmp_path / "b", resume=True, show_progress=False)
    resumed = load_tensors(tmp_path / "b" / MODEL_FILE)
    for name, value in whole.state_dict().items():
        assert torch.equal(value, resumed[name]), name
    with pytest.raises(CheckpointError, match="iterations: 2 -> 3"):
        train_incontext(dataclasses.replace(config, iterations=3), BANDIT, bandit_tasks(), tmp_path / "b", resume=True)
    with pytest.raises(CheckpointError, match="already exists"):
        train_incontext(config, BANDIT, bandit_tasks(), tmp_path / "b")


@pytest.mark.parametrize(
    ("build", "needle"),
    [
        (lambda: HiddenGoalSpec(trials=0), "trials: expected in [1, 64], got 0"),
        (lambda: HiddenGoalSpec(obstacles=20), "obstacles: expected in [0, 8]"),
        (lambda: InContextPPOConfig(num_envs=6, num_minibatches=4), "num_minibatches: expected a divisor of"),
        (lambda: InContextPPOConfig(d_model=30, num_heads=4), "num_heads: expected a divisor of d_model=30"),
        (lambda: RelicConfig(obs_dim=8, num_actions=4, memory="all"), "memory: expected 'episode' or 'trial'"),
        (lambda: InContextConfig(policies=("relic", "dt")), "policies: expected distinct keys among"),
        (lambda: InContextConfig(trials=1), "trials: expected >= 2"),
    ],
)
def test_bad_settings_are_one_line_errors(build: object, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        build()  # type: ignore[operator]
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_bad_actions_and_overlong_context() -> None:
    env = HiddenGoalVecEnv(BANDIT, bandit_tasks())
    env.reset()
    with pytest.raises(ValueError, match=r"actions: expected \(2,\) ints in \[0, 4\)"):
        env.step(np.array([0, 4]))
    net = RelicPolicy(RelicConfig(obs_dim=BANDIT.obs_dim, num_actions=4, d_model=8, num_heads=2, max_context=2))
    state = None
    with pytest.raises(ConfigError, match="context: expected at most max_context=2 steps, got 3"):
        for _ in range(3):
            _, state = net.act({"obs": torch.zeros(1, BANDIT.obs_dim)}, state)


def test_experiment_smoke(tmp_path: Path) -> None:
    from clonekit.experiments import incontext

    config = InContextConfig(
        height=2, width=3, obstacles=0, trials=2, trial_steps=3, train_tasks=4, test_tasks=3, episodes_per_task=2,
        iterations=1, num_envs=4, d_model=8, num_heads=2, num_layers=1, feedforward=16, policies=("relic",),
    )  # fmt: skip
    results = incontext.run(tmp_path, seed=0, quick=True, show_progress=False, log=lambda _: None, config=config)
    assert set(results["metrics"]) == {"relic"}
    cell = results["metrics"]["relic"]["trial_2"]["success"]
    assert cell["n"] == 6 and cell["n_tasks"] == 3 and isinstance(results["target_met"], bool)
    assert (tmp_path / "report.md").is_file() and (tmp_path / "trials.png").is_file()
    again = incontext.run(tmp_path, seed=0, quick=True, show_progress=False, log=lambda _: None, config=config)
    assert again["metrics"] == results["metrics"]  # the finished runs are reused, the evaluation is seeded
