"""The maze's ``start`` option (every episode at the free cell farthest from the goal) and the
``maze-interactive-farthest`` preset built on it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from clonekit.data import Dataset
from clonekit.envs import get_env_family
from clonekit.envs.maze import AGENT, MazeEnv, MazeVecEnv, bfs_from_goal, farthest_cell, generate_maze, sample_tasks
from clonekit.errors import ConfigError
from clonekit.evaluation import episodes_to_play, rollout, split_tasks
from clonekit.experiments import maze_interactive
from clonekit.policies.bc import BCConfig, BCPolicy


def test_farthest_start_is_the_cell_farthest_from_the_goal_on_every_reset() -> None:
    tasks = sample_tasks(0, "train", 6, size=9)
    vec = get_env_family("maze").make_vec(tasks, size=9, start="farthest")
    first = vec.reset(seed=1)
    np.testing.assert_array_equal(vec.reset(seed=2), first)  # the reset seed no longer moves the start
    for task, obs in zip(tasks, first, strict=True):
        distance, _ = bfs_from_goal(task)
        cell = farthest_cell(task)
        assert obs[AGENT][cell] == 1 and distance[cell] == distance.max() > 0
    random_starts = MazeVecEnv(tasks)  # the default still draws a cell per episode
    assert not np.array_equal(random_starts.reset(seed=1), random_starts.reset(seed=2))


def test_the_gymnasium_env_takes_the_start_rule() -> None:
    env = MazeEnv(maze_seed=3, size=9, start="farthest")
    first, _ = env.reset(seed=1)
    second, _ = env.reset(seed=2)
    np.testing.assert_array_equal(first, second)
    assert first[AGENT][farthest_cell(generate_maze(3, size=9))] == 1
    with pytest.raises(ConfigError, match="start"):
        MazeEnv(start="far")


def test_a_deterministic_policy_plays_each_maze_once_with_farthest_starts() -> None:
    """With ``start="farthest"`` a maze fixes its whole episode, so repeating an argmax policy on it would copy one
    outcome (and count it as several); with random start cells every asked episode is played."""
    family, tasks = get_env_family("maze"), sample_tasks(0, "test", 4, size=7)
    policy = BCPolicy(BCConfig(obs_shape=(3, 7, 7), num_actions=4))
    farthest = {"size": 7, "start": "farthest"}
    assert episodes_to_play(policy, family, tasks, 12, farthest) == 4
    assert len(rollout(policy, family, tasks, 12, 0, farthest).success) == 4
    assert len(rollout(policy, family, tasks, 12, 0, {"size": 7}).success) == 12


def test_an_unknown_start_rule_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"env maze: start: expected one of \['random', 'farthest'\], got 'far'"):
        get_env_family("maze").make_vec(sample_tasks(0, "train", 1, size=7), size=7, start="far")


@pytest.mark.usefixtures("one_torch_thread")
def test_maze_interactive_farthest_starts_every_episode_at_the_farthest_cell_and_runs_the_chosen_keys(
    tmp_path: Path,
) -> None:
    """The ``maze-interactive-farthest`` preset on a tiny scale with ``policies`` picking two keys: only those
    run, and every demonstration and every round's episode starts at its maze's farthest cell."""
    config = replace(
        maze_interactive.FARTHEST_QUICK,
        maze_size=7,
        train_mazes=6,
        test_mazes=6,
        demo_episodes=6,
        label_budget=30,
        rounds=1,
        dagger_episodes_per_round=3,
        train_steps=10,
        eval_episodes=6,
        curve_episodes=6,
        policies=("bc", "dagger"),
    )
    results = maze_interactive.run_farthest(tmp_path, 0, True, show_progress=False, log=lambda _: None, config=config)
    assert results["experiment"] == "maze-interactive-farthest" and list(results["metrics"]) == ["bc", "dagger"]
    for data in (Dataset.open(tmp_path / "data" / "pool"), Dataset.open(tmp_path / "runs" / "dagger" / "data-001")):
        assert data.env["kwargs"]["start"] == "farthest"
        tasks = split_tasks(data.env, "train", 0, 1)
        task_index = data.episode_info("task_index")
        for k in range(data.num_episodes):
            first = np.asarray(data.episode(k)["obs"][0])
            assert first[AGENT][farthest_cell(tasks[int(task_index[k])])] == 1, (data.path, k)


def test_maze_interactive_rejects_an_unknown_policy_key() -> None:
    with pytest.raises(ConfigError, match=r"policies: expected distinct keys among bc, dagger.*got \('bc', 'dagr'\)"):
        replace(maze_interactive.FARTHEST_QUICK, policies=("bc", "dagr"))
