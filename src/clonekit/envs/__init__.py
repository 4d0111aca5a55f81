"""Environments: clonekit's own batched envs and their task splits.

``ENVS`` is the one registry of env families by name. A family knows how to draw train and test tasks from
a seed (disjoint by content), how to describe a task in JSON (so a dataset and a checkpoint record exactly
which tasks they saw), and how to build a batched env over a list of tasks.
"""

from __future__ import annotations

from typing import Any

from clonekit.envs.arm import ArmFamily
from clonekit.envs.family import (
    AvoidingFamily,
    AvoidingGoalFamily,
    AvoidingReachFamily,
    BabyAIFamily,
    EnvFamily,
    MazeFamily,
)
from clonekit.envs.gym import GymFamily, env_block_for_gym_id
from clonekit.envs.metaworld import MetaWorldFamily
from clonekit.envs.terrain import TerrainFamily
from clonekit.errors import ConfigError, unknown_name
from clonekit.registry import load_plugins

ENVS: dict[str, EnvFamily] = {
    "maze": MazeFamily(),
    "avoiding": AvoidingFamily(),
    "avoiding-goal": AvoidingGoalFamily(),
    "avoiding-reach": AvoidingReachFamily(),
    "babyai": BabyAIFamily(),
    "gym": GymFamily(),
    "metaworld": MetaWorldFamily(),
    "arm": ArmFamily(),
    "terrain": TerrainFamily(),
}


def get_env_family(name: str) -> EnvFamily:
    """The env family called ``name``; an unknown name is a clear error (plugins are loaded first)."""
    load_plugins()
    if name not in ENVS:
        raise unknown_name("env", name, ENVS)
    return ENVS[name]


def resolve_env(spec: str, kwargs: dict[str, Any] | None = None) -> tuple[EnvFamily, dict[str, Any]]:
    """The family and full env options of ``spec``: a family name (``maze``) or ``FAMILY:ID`` (``gym:CartPole-v1``,
    for a family with ``with_id``), with ``kwargs`` (``--env-kwargs``); the family's optional
    ``resolve_kwargs`` fills in what the env block records."""
    name, sep, rest = spec.partition(":")
    family = get_env_family(name)
    options = dict(kwargs or {})
    if sep:
        with_id = getattr(family, "with_id", None)
        if with_id is None or not rest:
            raise ConfigError(f"env {spec!r}: expected a family name, or FAMILY:ID for a family such as 'gym:ID'")
        options = with_id(rest, options)
    resolve = getattr(family, "resolve_kwargs", None)
    return family, resolve(options) if resolve is not None else options


def default_num_tasks(family: EnvFamily, episodes: int, default: int) -> int:
    """How many tasks to draw when the user gives no ``--tasks``: the family's own choice (the gym family
    gives every episode its own reset seed), else ``default``."""
    choose = getattr(family, "default_num_tasks", None)
    return int(choose(episodes)) if choose is not None else default


def env_block_for_eval(env: dict[str, Any], override: str | None = None) -> dict[str, Any]:
    """The env block to evaluate a run on: ``override`` (``--env``, e.g. ``gym:CartPole-v1``: no training tasks
    known), else the recorded block; a block naming a registered gymnasium id rather than a clonekit env (a
    Minari import) becomes a gym block."""
    if override is not None:
        family, kwargs = resolve_env(override)
        return {"id": family.name, "kwargs": kwargs, "tasks": []}
    env_id = env.get("id") if isinstance(env, dict) else None
    load_plugins()
    if isinstance(env_id, str) and env_id not in ENVS:
        block = env_block_for_gym_id(env_id, env.get("minari"))
        if block is not None:
            return {**block, "kwargs": ENVS["gym"].resolve_kwargs(block["kwargs"]), "tasks": []}  # type: ignore[attr-defined]
    return env


__all__ = [
    "ENVS",
    "ArmFamily",
    "AvoidingFamily",
    "AvoidingGoalFamily",
    "AvoidingReachFamily",
    "BabyAIFamily",
    "EnvFamily",
    "GymFamily",
    "MazeFamily",
    "MetaWorldFamily",
    "TerrainFamily",
    "default_num_tasks",
    "env_block_for_eval",
    "get_env_family",
    "resolve_env",
]
