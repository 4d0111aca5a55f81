"""The registered gymnasium env a dataset's env block stands for, so that a foreign format can name it
(robomimic's ``env_args``, Minari's ``env_spec``).

Two shapes of env block name one:

* ``{"id": ID, ...}`` with ``ID`` a registered gymnasium id (a Minari import, whose recorded ``env_spec`` gives
  the ``gymnasium.make`` kwargs and ``max_episode_steps``);
* ``{"id": FAMILY, "kwargs": {"id": ID, "make_kwargs": {...}, ...}}``: an env family that plays any gymnasium
  env by id (``clonekit collect gym:CartPole-v1 ...``).

clonekit's own families (maze, avoiding, ...) record many tasks under one block, which no single gymnasium
env spec describes, so they name none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import gymnasium

# EnvSpec fields that say which env it is, never set from make kwargs.
_SPEC_IDENTITY = {"id", "entry_point", "kwargs", "namespace", "name", "version", "vector_entry_point"}


def gymnasium_env(env: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """``(id, make_kwargs)`` of the registered gymnasium env that the env block ``env`` names, else ``None``.

    ``gymnasium.make(id, **make_kwargs)`` recreates it (``max_episode_steps`` is one of the kwargs when recorded).
    """
    from clonekit.envs.gym import env_block_for_gym_id

    env_id = env.get("id")
    if isinstance(env_id, str) and env_id in gymnasium.registry:
        minari = env.get("minari")
        block = env_block_for_gym_id(env_id, minari if isinstance(minari, Mapping) else None)
        if block is not None:
            return env_id, dict(block["kwargs"]["make_kwargs"])
    kwargs = env.get("kwargs")
    if isinstance(kwargs, Mapping) and isinstance(kwargs.get("id"), str) and kwargs["id"] in gymnasium.registry:
        make_kwargs = kwargs.get("make_kwargs")
        return kwargs["id"], dict(make_kwargs) if isinstance(make_kwargs, Mapping) else {}
    return None


def gymnasium_env_spec(env_id: str, make_kwargs: Mapping[str, Any]) -> gymnasium.envs.registration.EnvSpec:
    """The ``EnvSpec`` that ``gymnasium.make(env_id, **make_kwargs)`` builds: the registered one, with the
    spec fields ``make_kwargs`` sets (``max_episode_steps``, ``disable_env_checker``, ...) and the rest of it
    added to the env kwargs."""
    spec = gymnasium.spec(env_id)
    settable = {field.name for field in dataclasses.fields(spec)} - _SPEC_IDENTITY
    fields = {key: value for key, value in make_kwargs.items() if key in settable}
    kwargs = {key: value for key, value in make_kwargs.items() if key not in settable}
    return dataclasses.replace(spec, **fields, kwargs={**spec.kwargs, **kwargs})
