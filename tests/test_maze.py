"""Maze env, task splits and the BFS expert with its procedure stream."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from clonekit.envs import get_env_family
from clonekit.envs.maze import AGENT, GOAL, MOVES, WALL, MazeEnv, MazeVecEnv, bfs_from_goal, generate_maze
from clonekit.errors import UnknownNameError
from clonekit.experts.bfs import FIRST_ACTION_LABEL, GOAL_LABEL, LABEL, LAYER, BFSExpert


def test_maze_is_a_function_of_its_seed() -> None:
    a, b, c = generate_maze(7), generate_maze(7), generate_maze(8)
    np.testing.assert_array_equal(a.walls, b.walls)
    assert a.goal == b.goal
    assert a.layout_hash != c.layout_hash
    assert a.walls[0].all() and a.walls[-1].all() and a.walls[:, 0].all() and a.walls[:, -1].all()
    distance, _ = bfs_from_goal(a)
    assert (distance[~a.walls] >= 0).all(), "every free cell is reachable from the goal"


def test_train_and_test_mazes_are_disjoint_and_seeded() -> None:
    family = get_env_family("maze")
    train = family.sample_tasks(3, "train", 20, set())
    test = family.sample_tasks(3, "test", 50, {family.task_key(t) for t in train})
    keys_train = {family.task_key(t) for t in train}
    keys_test = {family.task_key(t) for t in test}
    assert len(keys_train) == 20 and len(keys_test) == 50
    assert not keys_train & keys_test
    other = family.sample_tasks(4, "test", 50, set())
    assert keys_test != {family.task_key(t) for t in other}, "another seed gives other unseen mazes"
    assert [t.maze_seed for t in family.sample_tasks(3, "train", 20, set())] == [t.maze_seed for t in train]


def test_unknown_env_is_a_clear_error() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown env 'mze'.*maze"):
        get_env_family("mze")


def test_vec_env_moves_blocks_terminates_and_truncates() -> None:
    task = generate_maze(1)
    distance, direction = bfs_from_goal(task)
    # Start next to the goal: one move ends the episode with reward 1.
    r, c = np.argwhere(distance == 1)[0]
    env = MazeVecEnv([task, task], max_steps=3)
    obs = env.reset(starts=np.array([[r, c], [r, c]]))
    assert obs.shape == (2, 3, 16, 16) and obs.dtype == np.uint8
    assert obs[0, AGENT, r, c] == 1 and obs[0, GOAL][task.goal] == 1 and obs[0, WALL].sum() == task.walls.sum()
    toward = direction[r, c]
    blocked = (
        next(a for a in range(4) if task.walls[r + MOVES[a][0], c + MOVES[a][1]])
        if any(task.walls[r + MOVES[a][0], c + MOVES[a][1]] for a in range(4))
        else None
    )
    other = blocked if blocked is not None else (toward + 1) % 4
    obs, reward, terminated, truncated = env.step(np.array([toward, other]))
    assert terminated.tolist() == [True, False] and reward.tolist() == [1.0, 0.0]
    if blocked is not None:
        assert env.agents[1].tolist() == [r, c], "a move into a wall leaves the agent in place"
    env.step(np.array([0, other]))
    _, _, terminated, truncated = env.step(np.array([0, other]))
    assert truncated[1] and not truncated[0], "slot 1 is truncated at max_steps, slot 0 stays done"
    assert env.done.all()


def test_gymnasium_env_passes_the_checker() -> None:
    env = MazeEnv(maze_seed=5)
    check_env(env, skip_render_check=True)
    made = gym.make("clonekit/Maze-v0", maze_seed=5)
    obs, _ = made.reset(seed=0)
    assert obs.shape == (3, 16, 16)


def test_bfs_expert_follows_shortest_paths_and_writes_its_search() -> None:
    family = get_env_family("maze")
    tasks = family.sample_tasks(0, "train", 8, set())
    env = MazeVecEnv(tasks)
    obs = env.reset(seed=1)
    expert = BFSExpert()
    expert.reset(env)
    distances = [bfs_from_goal(t)[0] for t in tasks]
    start_distance = np.array([d[tuple(a)] for d, a in zip(distances, env.agents, strict=True)])
    steps = 0
    while not env.done.all():
        active = ~env.done
        action, annotations = expert.act(obs)
        procedure = annotations["procedure"]
        assert procedure.shape == (8, 2, 16, 16) and procedure.dtype == np.int16
        for i in np.flatnonzero(active):
            r, c = env.agents[i]
            layer, label = procedure[i, LAYER], procedure[i, LABEL]
            assert label[r, c] == action[i] + FIRST_ACTION_LABEL, "the agent's label is the expert action"
            assert layer.max() == layer[r, c], "the search stops at the agent's layer"
            assert label[tasks[i].goal] == GOAL_LABEL
            # Each labelled cell points at a neighbour one layer closer to the goal.
            for rr, cc in np.argwhere(label >= FIRST_ACTION_LABEL):
                dr, dc = MOVES[label[rr, cc] - FIRST_ACTION_LABEL]
                assert layer[rr + dr, cc + dc] == layer[rr, cc] - 1
        obs, *_ = env.step(action)
        steps += 1
    assert env.done.all() and steps == start_distance.max()
    assert (env.agents == env.goals).all(), "the expert reaches every goal by a shortest path"
