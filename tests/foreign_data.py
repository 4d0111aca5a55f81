"""Test data written by other libraries' own APIs (shared by several test modules)."""

from __future__ import annotations

from pathlib import Path

import gymnasium
import numpy as np
import pytest


def write_cartpole_minari(root: Path, episodes: int, max_steps: int) -> Path:
    """A Minari dataset of CartPole-v1 played by a balancing controller, written with minari's own API.

    The episodes go through ``EpisodeBuffer`` and ``minari.create_dataset_from_buffers``, as DataCollector
    would store them (without stepping through its wrapper: faster, and no jax in the loop).
    """
    import minari
    from minari.data_collector import EpisodeBuffer

    env = gymnasium.make("CartPole-v1", max_episode_steps=max_steps)
    buffers = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=episode)
        observations, actions, rewards, terminations, truncations = [obs], [], [], [], []
        done = False
        while not done:
            action = int(obs[2] + 0.5 * obs[3] > 0)  # push the cart under the pole
            obs, reward, terminated, truncated, _ = env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
            terminations.append(terminated)
            truncations.append(truncated)
            done = terminated or truncated
        buffers.append(
            EpisodeBuffer(
                id=episode,
                seed=episode,
                observations=np.array(observations),
                actions=np.array(actions),
                rewards=np.array(rewards),
                terminations=np.array(terminations),
                truncations=np.array(truncations),
            )
        )
    with pytest.MonkeyPatch.context() as patch, pytest.warns(UserWarning):  # minari warns about missing metadata
        patch.setenv("MINARI_DATASETS_PATH", str(root))
        minari.create_dataset_from_buffers("cartpole/pd-v0", buffers, env=env, algorithm_name="pd", data_format="hdf5")
    env.close()
    return root / "cartpole" / "pd-v0"
