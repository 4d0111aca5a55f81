"""Batched rollouts with a watcher: halting before an action executes, and equivalence without halting."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from clonekit.envs import get_env_family
from clonekit.evaluation import RolloutWatcher, rollout
from clonekit.evaluation.thoughts import thought_rollout
from clonekit.policies import build_policy


def _maze_policy() -> Any:
    torch.manual_seed(0)
    family = get_env_family("maze")
    obs_space, act_space = family.spaces()
    config = {"obs_shape": list(obs_space.shape), "num_actions": int(act_space.n), "hidden_sizes": [32]}
    return family, build_policy("bc", {**config, "encoder": "mlp"})


class _HaltAt(RolloutWatcher):
    """Halts slot ``slot`` before its action at step ``step``; records what executed."""

    def __init__(self, slot: int, step: int) -> None:
        self.slot, self.step, self.t, self.executed = slot, step, 0, []

    def before_step(self, obs: np.ndarray, actions: np.ndarray, state: Any, active: np.ndarray) -> np.ndarray:
        stop = np.zeros(len(active), dtype=bool)
        stop[self.slot] = self.t == self.step
        self.t += 1
        return stop

    def after_step(self, executed: np.ndarray) -> None:
        self.executed.append(executed.copy())


@pytest.mark.parametrize("env", ["maze", "avoiding"])
def test_a_halted_episode_ends_before_its_action_and_others_are_unchanged(env: str) -> None:
    if env == "maze":
        family, policy = _maze_policy()
    else:
        family = get_env_family("avoiding")
        torch.manual_seed(0)
        policy = build_policy("continuous_bc", {"obs_shape": [2], "action_shape": [2], "head": "mse"})
    tasks = family.sample_tasks(0, "test", 6, set())
    plain = rollout(policy, family, tasks, 6, seed=3)
    assert (plain.lengths >= 3).all()
    watcher = _HaltAt(slot=1, step=2)
    watched = rollout(policy, family, tasks, 6, seed=3, watcher=watcher)
    assert watched.lengths[1] == 2 and not watched.success[1] and watched.returns[1] == 0
    others = np.arange(6) != 1
    for name in ("lengths", "success", "returns"):
        np.testing.assert_array_equal(getattr(watched, name)[others], getattr(plain, name)[others])
    assert not watcher.executed[2][1] and watcher.executed[1][1]  # the halted action never ran
    assert not any(e[1] for e in watcher.executed[3:])


def test_thought_rollout_without_halting_plays_the_same_episodes_as_rollout() -> None:
    family, policy = _maze_policy()
    tasks = family.sample_tasks(1, "test", 5, set())
    plain = rollout(policy, family, tasks, 7, seed=2, max_parallel=4)
    watched = thought_rollout(policy, family, tasks, 7, seed=2, max_parallel=4)
    for name in ("lengths", "success", "returns", "task_index"):
        np.testing.assert_array_equal(getattr(watched.results, name), getattr(plain, name))
    assert [len(a) for a in watched.actions] == plain.lengths.tolist()
    assert all(t == "" for episode in watched.thoughts for t in episode)  # bc does not think
    assert not watched.halted.any() and not watched.unsafe_actions.any()
