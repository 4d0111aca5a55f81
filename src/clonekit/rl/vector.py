"""Vectorized gymnasium envs for online RL, observed as clonekit records observations.

The envs step in a ``gymnasium.vector.SyncVectorEnv`` with ``autoreset_mode=SAME_STEP``: when an episode ends
at a step, that same step returns the *next* episode's first observation, and the last observation of the
ended episode comes in ``info["final_obs"]`` (masked by ``info["_final_obs"]``). Every step is then a real
transition (gymnasium 1.x's default, ``NEXT_STEP``, would instead return one extra step per episode end whose
action is ignored and which must be masked out), and a truncated episode can be bootstrapped from the value of
its true last observation.

Observations are converted as the ``gym`` env family converts them (:mod:`clonekit.envs.gym`: float Boxes to
float32, Dict, Tuple and Discrete observations flattened, channel-last pictures channel-first), and actions are
taken as clonekit records them (a Box of several dimensions flat, a MultiDiscrete as one Discrete), so a policy
trained here rolls out unchanged through clonekit's evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from clonekit.envs.gym import GymFamily, action_space, env_actions, flatten_obs, make_env, observation_space
from clonekit.errors import ConfigError

EnvFactory = Callable[[], gymnasium.Env[Any, Any]]


def gym_env_factories(env: str, env_kwargs: dict[str, Any], num_envs: int) -> tuple[list[EnvFactory], dict[str, Any]]:
    """``num_envs`` factories of gymnasium env ``env`` (an id, or ``gym:ID``) and the env block a run records
    for it (the ``gym`` family's, so ``clonekit eval RUN`` plays the same env)."""
    env_id = env.removeprefix("gym:")
    options = GymFamily().options({**env_kwargs, "id": env_id})
    factory = partial(make_env, options.id, options.make_kwargs)
    return [factory] * num_envs, {"id": "gym", "kwargs": options.to_json(), "tasks": []}


class VectorEnv:
    """``SyncVectorEnv`` over ``factories`` (same-step autoreset), with observations as clonekit arrays.

    ``obs_keys``: the flattening order of a Dict observation; ``transpose_images``: channel-last images are
    observed channel-first (both as the env block records them, see :mod:`clonekit.envs.gym`).
    """

    def __init__(
        self, factories: list[EnvFactory], obs_keys: list[str] | None = None, transpose_images: bool = False
    ) -> None:
        if not factories:
            raise ConfigError("num_envs: expected >= 1 env factories, got none")
        self.envs = SyncVectorEnv(factories, autoreset_mode=AutoresetMode.SAME_STEP)
        self.num_envs = len(factories)
        self.raw_observation_space = self.envs.single_observation_space
        self.obs_keys = obs_keys
        self.transpose_images = transpose_images
        self.observation_space = observation_space(self.raw_observation_space, obs_keys, transpose_images)
        self.raw_action_space = self.envs.single_action_space
        self.action_space = action_space(self.raw_action_space)  # as clonekit records actions
        if not isinstance(self.action_space, gymnasium.spaces.Discrete | gymnasium.spaces.Box):
            raise ConfigError(f"env: action space: expected Discrete or Box, found {self.action_space}")
        if isinstance(self.action_space, gymnasium.spaces.Discrete) and int(self.action_space.start) != 0:
            raise ConfigError(
                f"env: action space: expected a Discrete space starting at 0 (the discrete policies act in 0..n-1), "
                f"found {self.action_space}; wrap the env so its actions are 0..n-1 (a gymnasium ActionWrapper)"
            )

    @classmethod
    def for_block(cls, factories: list[EnvFactory], block: dict[str, Any]) -> VectorEnv:
        """The vector env over ``factories`` observed as the gym env block ``block`` records (its ``obs_keys``
        and ``transpose_images``)."""
        kwargs = block["kwargs"]
        return cls(factories, kwargs["obs_keys"], kwargs.get("transpose_images", False))

    def _convert(self, obs: Any, batch: int) -> np.ndarray:
        return flatten_obs(obs, self.raw_observation_space, self.obs_keys, batch, self.transpose_images)

    def reset(self, seed: int) -> np.ndarray:
        """Reset every env; env ``i`` with seed ``seed + i``. Returns observations ``(N, *obs_shape)``."""
        obs, _ = self.envs.reset(seed=seed)
        return self._convert(obs, self.num_envs)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[int, np.ndarray]]:
        """Apply ``actions``; returns ``(next_obs, reward, terminated, truncated, final_obs)``: ``next_obs`` is a new
        episode's first observation where one ended; ``final_obs`` maps those envs to the ended episode's last
        observation."""
        if self.action_space is not self.raw_action_space:
            actions = env_actions(actions, self.raw_action_space)
        obs, reward, terminated, truncated, info = self.envs.step(actions)
        final: dict[int, np.ndarray] = {}
        if "_final_obs" in info:
            for i in np.flatnonzero(info["_final_obs"]):
                last = info["final_obs"][i]
                if isinstance(self.raw_observation_space, gymnasium.spaces.Box):
                    last = np.asarray(last)[None]  # a Box observation has no batch axis of its own
                final[int(i)] = self._convert(last, 1)[0]
        return (
            self._convert(obs, self.num_envs),
            np.asarray(reward, dtype=np.float32),
            np.asarray(terminated, dtype=bool),
            np.asarray(truncated, dtype=bool),
            final,
        )

    def close(self) -> None:
        """Close the envs."""
        self.envs.close()
