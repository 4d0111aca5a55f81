"""Task splits of every registered env family: train and test tasks share no task, test tasks are a function of
the seed, and another seed gives other tasks.

Parametrised over ``ENVS``, so a family registered later is covered without editing this file, unless it needs
env kwargs to draw tasks: then it gets an entry in ``TASK_KWARGS`` (the test says so when it is missing).
"""

from __future__ import annotations

from typing import Any

import pytest

from clonekit.envs import ENVS, EnvFamily
from clonekit.errors import ClonekitError
from clonekit.evaluation import split_tasks

# Env kwargs a family needs to draw tasks (families that need none are left out).
TASK_KWARGS: dict[str, dict[str, Any]] = {
    "babyai": {"level": "BabyAI-PutNextS5N2-v0"},  # not the default level, so kwargs reach the sampler
    "gym": {"id": "CartPole-v1"},
}
NUM_TRAIN = 20
NUM_TEST = 30


def _kwargs(name: str) -> dict[str, Any]:
    return TASK_KWARGS.get(name, {})


def _sample(name: str, seed: int, split: str, count: int) -> list[Any]:
    """``count`` tasks of ``split`` drawn from ``seed``; a family that needs kwargs missing here fails clearly."""
    try:
        return ENVS[name].sample_tasks(seed, split, count, set(), **_kwargs(name))
    except ClonekitError as err:
        pytest.fail(
            f"env family {name!r} cannot draw tasks with kwargs {_kwargs(name)} ({err}); "
            f"give it the env kwargs it needs in TASK_KWARGS in tests/test_splits.py"
        )


def _train_env(family: EnvFamily, name: str, seed: int) -> dict[str, Any]:
    """The env block a dataset collected on ``NUM_TRAIN`` training tasks of ``seed`` records."""
    tasks = _sample(name, seed, "train", NUM_TRAIN)
    return {"id": name, "kwargs": _kwargs(name), "tasks": [family.task_to_json(t) for t in tasks]}


def _keys(family: EnvFamily, tasks: list[Any]) -> list[str]:
    return [family.task_key(t) for t in tasks]


@pytest.mark.parametrize("name", sorted(ENVS))
def test_train_and_test_tasks_share_nothing(name: str) -> None:
    family = ENVS[name]
    for seed in (0, 1, 7):
        env = _train_env(family, name, seed)
        train = split_tasks(env, "train", seed, NUM_TRAIN)  # rebuilt from JSON, as evaluation does
        test = split_tasks(env, "test", seed, NUM_TEST)
        train_keys, test_keys = _keys(family, train), _keys(family, test)
        assert len(train_keys) == NUM_TRAIN and len(set(train_keys)) == NUM_TRAIN, f"{name}: duplicate train tasks"
        assert len(test_keys) == NUM_TEST and len(set(test_keys)) == NUM_TEST, f"{name}: duplicate test tasks"
        shared = set(train_keys) & set(test_keys)
        assert not shared, f"{name}, seed {seed}: tasks in both splits: {sorted(shared)[:3]}"
        assert train_keys == _keys(family, _sample(name, seed, "train", NUM_TRAIN)), (
            f"{name}: a task changed through task_to_json/task_from_json"
        )


@pytest.mark.parametrize("name", sorted(ENVS))
def test_test_tasks_are_reproducible_from_the_seed(name: str) -> None:
    family = ENVS[name]
    env = _train_env(family, name, 3)
    first = _keys(family, split_tasks(env, "test", 3, NUM_TEST))
    again = _keys(family, split_tasks(_train_env(family, name, 3), "test", 3, NUM_TEST))
    assert first == again, f"{name}: seed 3 gave other test tasks the second time"


@pytest.mark.parametrize("name", sorted(ENVS))
def test_other_seeds_give_other_tasks(name: str) -> None:
    family = ENVS[name]
    for split in ("train", "test"):
        by_seed = [set(_keys(family, _sample(name, s, split, NUM_TEST))) for s in (0, 1)]
        # Independent draws from a large task space overlap little; the same list twice would overlap fully.
        overlap = len(by_seed[0] & by_seed[1]) / NUM_TEST
        assert overlap <= 0.5, f"{name} {split}: seeds 0 and 1 share {overlap:.0%} of their tasks"
