"""Environments: clonekit's own batched envs and their task splits.

``ENVS`` is the one registry of env families by name. A family knows how to draw train and test tasks from
a seed (disjoint by content), how to describe a task in JSON (so a dataset and a checkpoint record exactly
which tasks they saw), and how to build a batched env over a list of tasks.
"""

from __future__ import annotations

from clonekit.envs.family import AvoidingFamily, AvoidingGoalFamily, BabyAIFamily, EnvFamily, MazeFamily
from clonekit.errors import unknown_name

ENVS: dict[str, EnvFamily] = {
    "maze": MazeFamily(),
    "avoiding": AvoidingFamily(),
    "avoiding-goal": AvoidingGoalFamily(),
    "babyai": BabyAIFamily(),
}


def get_env_family(name: str) -> EnvFamily:
    """The env family called ``name``; an unknown name is a clear error."""
    if name not in ENVS:
        raise unknown_name("env", name, ENVS)
    return ENVS[name]


__all__ = ["ENVS", "AvoidingFamily", "AvoidingGoalFamily", "BabyAIFamily", "EnvFamily", "MazeFamily", "get_env_family"]
