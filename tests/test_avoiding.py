"""The Avoiding env, its multimodal expert, the collected dataset and the behaviour-entropy metric."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from clonekit.data import Dataset
from clonekit.envs import get_env_family
from clonekit.envs.avoiding import MODES, NUM_MODES, AvoidingEnv, AvoidingTask, AvoidingVecEnv, classify_paths
from clonekit.evaluation.diversity import behaviour_entropy, diversity_metrics
from clonekit.experts.avoiding import AvoidingExpert


def _play_expert(tasks: list[AvoidingTask], seed: int) -> tuple[AvoidingVecEnv, np.ndarray, np.ndarray]:
    env = AvoidingVecEnv(tasks)
    expert = AvoidingExpert()
    obs = env.reset()
    expert.reset(env, seed=seed)
    positions, style = [obs], None
    while not env.done.all():
        action, annotations = expert.act(obs)
        style = annotations["style"]
        obs, *_ = env.step(action)
        positions.append(obs)
    assert style is not None
    return env, np.stack(positions), style


def test_there_are_eight_collision_free_paths() -> None:
    assert NUM_MODES == 8 and len(set(MODES)) == 8
    tasks = get_env_family("avoiding").sample_tasks(0, "train", 200, set())
    env, positions, style = _play_expert(tasks, seed=1)
    assert not env.crashed.any() and (env.agents[:, 1] >= 1.0).all()
    assert set(style.tolist()) == set(range(NUM_MODES))
    np.testing.assert_array_equal(classify_paths(positions), style)


def test_crashing_into_an_obstacle_ends_the_episode_without_reward() -> None:
    env = AvoidingVecEnv([AvoidingTask((0.0, 0.0))])
    env.reset()
    rewards, terminated = [], False
    while not terminated:
        _, reward, term, trunc = env.step(np.array([[0.0, 1.0]]))  # straight up into the first obstacle
        rewards.append(float(reward[0]))
        terminated = bool(term[0])
        assert not trunc[0]
    assert env.crashed[0] and sum(rewards) == 0 and env.agents[0, 1] < 0.25


def test_train_and_test_start_states_differ_and_round_trip_through_json() -> None:
    family = get_env_family("avoiding")
    train = family.sample_tasks(3, "train", 20, set())
    test = family.sample_tasks(3, "test", 20, {family.task_key(t) for t in train})
    assert not {family.task_key(t) for t in train} & {family.task_key(t) for t in test}
    assert [family.task_from_json(family.task_to_json(t)) for t in train] == train


def test_gymnasium_env_passes_the_checker() -> None:
    env = gym.make("clonekit/Avoiding-v0")
    check_env(env.unwrapped)
    obs, info = env.reset(seed=0)
    assert obs.shape == (2,) and obs.dtype == np.float32 and "start" in info
    assert isinstance(AvoidingEnv().action_space, gym.spaces.Box)


def test_collected_dataset_has_continuous_actions_and_the_style_stream(avoiding_data: Dataset) -> None:
    assert avoiding_data.streams["action"].dtype == "float32" and avoiding_data.streams["action"].shape == (2,)
    assert avoiding_data.spaces["action"]["type"] == "Box"
    avoiding_data.check_values()
    styles = np.asarray(avoiding_data.column("style"))
    for i in range(avoiding_data.num_episodes):
        episode = avoiding_data.episode(i)
        assert len(set(np.asarray(episode["style"]).tolist())) == 1  # one path per episode
        assert classify_paths(np.asarray(episode["obs"])[:, None])[0] == episode["style"][0]
    assert len(set(styles.tolist())) >= 6  # 32 uniform draws over 8 paths


def test_behaviour_entropy_is_normalized_by_log_of_the_number_of_behaviours() -> None:
    assert behaviour_entropy(np.arange(8), 8) == pytest.approx(1.0)
    assert behaviour_entropy(np.zeros(10, dtype=np.int64), 8) == 0.0
    assert behaviour_entropy(np.array([0, 1, 0, 1]), 8) == pytest.approx(np.log(2) / np.log(8))


def test_diversity_metrics_count_successful_rollouts_only_with_intervals() -> None:
    rng = np.random.default_rng(0)
    modes = rng.integers(0, 8, 300)
    success = rng.random(300) < 0.8
    out = diversity_metrics(success, modes, 8, seed=0)
    assert out["entropy"]["n"] == out["modes"]["n"] == success.sum()
    lo, hi = out["entropy"]["ci95"]
    assert 0.9 < lo <= out["entropy"]["mean"] <= hi <= 1.0
    assert out["modes"]["mean"] == 8
    # Failures do not count, whatever behaviour they are labelled with.
    one = diversity_metrics(modes == 3, modes, 8)
    assert one["entropy"]["mean"] == 0 and one["modes"]["mean"] == 1 and one["modes"]["ci95"] == [1, 1]
    assert diversity_metrics(np.zeros(3, dtype=bool), modes[:3], 8)["entropy"]["n"] == 0
