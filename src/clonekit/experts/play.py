"""Undirected *play* in the Avoiding arena: a scripted player wandering between random waypoints.

Play data (Lynch et al., 2019) is long, unsegmented interaction with no task in mind; goal-reaching policies
are learned from it afterwards (hindsight goals, Hilbert representations, latent plans). The player here
starts at a random free point and, again and again, draws a waypoint uniformly from the free arena
(:func:`clonekit.envs.avoiding.free_points`, from its own seed stream, so it never aims at an evaluation
goal) and steers to it around the obstacles: straight at it unless the straight segment passes within
``PLAN_RADIUS`` of an obstacle centre, then along the tangent of that circle on the side nearer the
waypoint. It moves at a speed drawn per waypoint, with Gaussian action noise; a waypoint not reached within
``WAYPOINT_PATIENCE`` steps is replaced. An action whose step would touch an obstacle is replaced by the
noiseless steering action, so the data is collision-free in practice (an episode that still collides ends
there, ``terminated``).

Each episode is ``length`` steps (``truncated`` at the end), reward 0 everywhere (there is no task). The
dataset's env block names the ``avoiding-reach`` family and records no training tasks: every evaluation task
is a test task.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clonekit.data import Dataset, DatasetWriter, array_stream
from clonekit.data.spaces import space_to_json
from clonekit.envs import get_env_family
from clonekit.envs.avoiding import ARENA_X, ARENA_Y, MAX_STEP, OBSTACLES, collides, free_points
from clonekit.errors import ConfigError
from clonekit.seeding import derive_seed

PLAN_RADIUS = 0.14  # obstacle radius + agent radius is 0.10; the rest is a margin for noise
WAYPOINT_REACHED = 0.04
WAYPOINT_PATIENCE = 100
SPEED_RANGE = (0.5, 1.0)


def steer(positions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Unit steering directions ``(B, 2)`` from ``positions`` ``(B, 2)`` to ``targets`` ``(B, 2)`` around the
    obstacles (see the module docstring)."""
    to_target = targets - positions
    length = np.maximum(np.linalg.norm(to_target, axis=1), 1e-9)
    heading = to_target / length[:, None]
    rel = OBSTACLES[None] - positions[:, None]  # (B, O, 2) obstacle centres seen from the agent
    along = np.clip((rel * heading[:, None]).sum(-1) / length[:, None], 0.0, 1.0)  # (B, O) fraction of the segment
    closest = positions[:, None] + along[..., None] * to_target[:, None]
    blocking = (np.linalg.norm(closest - OBSTACLES[None], axis=-1) < PLAN_RADIUS) & (along > 0)
    directions = heading.copy()
    for i in np.flatnonzero(blocking.any(axis=1)):
        first = int(np.argmin(np.where(blocking[i], along[i], np.inf)))  # the first obstacle on the way
        v = rel[i, first]
        dist = float(np.linalg.norm(v))
        if dist <= PLAN_RADIUS:  # inside the margin: slide along the circle, away from its centre a little
            tangent = np.array([-v[1], v[0]]) / dist
            tangent *= np.sign(tangent @ heading[i]) or 1.0
            directions[i] = tangent - 0.5 * v / dist
        else:
            half = np.arcsin(PLAN_RADIUS / dist)
            base = np.arctan2(v[1], v[0])
            options = [np.array([np.cos(base + s * half), np.sin(base + s * half)]) for s in (-1.0, 1.0)]
            directions[i] = max(options, key=lambda d: float(d @ heading[i]))
    return directions / np.maximum(np.linalg.norm(directions, axis=1, keepdims=True), 1e-9)


def play_episodes(episodes: int, length: int, seed: int, action_noise: float = 0.2) -> list[dict[str, np.ndarray]]:
    """``episodes`` play episodes of ``length`` steps (fewer if one collides), played together; each a dict of
    ``obs`` ``(T, 2)``, ``action`` ``(T, 2)`` float32, ``reward``, ``terminated``, ``truncated`` ``(T,)``."""
    rng = np.random.default_rng(derive_seed(seed, "avoiding-play"))
    positions = free_points(rng, episodes)
    waypoints = free_points(rng, episodes)
    speed = rng.uniform(*SPEED_RANGE, episodes)
    patience = np.zeros(episodes, dtype=np.int64)
    alive = np.ones(episodes, dtype=bool)
    ended_at = np.full(episodes, length, dtype=np.int64)
    obs = np.zeros((length, episodes, 2), dtype=np.float32)
    actions = np.zeros((length, episodes, 2), dtype=np.float32)
    for t in range(length):
        renew = (np.linalg.norm(waypoints - positions, axis=1) < WAYPOINT_REACHED) | (patience >= WAYPOINT_PATIENCE)
        if renew.any():
            waypoints[renew] = free_points(rng, int(renew.sum()))
            speed[renew] = rng.uniform(*SPEED_RANGE, int(renew.sum()))
            patience[renew] = 0
        patience += 1
        distance = np.linalg.norm(waypoints - positions, axis=1)
        # Slow down on the last step to a waypoint, so it is reached rather than circled.
        clean = steer(positions, waypoints) * np.minimum(speed, distance / MAX_STEP)[:, None]
        action = np.clip(clean + rng.normal(0.0, action_noise, clean.shape), -1.0, 1.0)
        unsafe = collides(_moved(positions, action))
        action[unsafe] = np.clip(clean[unsafe], -1.0, 1.0)
        obs[t], actions[t] = positions, action
        positions = np.where(alive[:, None], _moved(positions, action), positions)
        crashed = alive & collides(positions)
        ended_at[crashed] = t + 1
        alive &= ~crashed
    result = []
    for e in range(episodes):
        steps = int(ended_at[e])
        terminated = np.zeros(steps, dtype=bool)
        truncated = np.zeros(steps, dtype=bool)
        if steps < length:
            terminated[-1] = True
        else:
            truncated[-1] = True
        result.append(
            {
                "obs": obs[:steps, e].copy(),
                "action": actions[:steps, e].copy(),
                "reward": np.zeros(steps, dtype=np.float32),
                "terminated": terminated,
                "truncated": truncated,
            }
        )
    return result


def _moved(positions: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Where the Avoiding dynamics take ``positions`` under ``actions`` (both ``(B, 2)``)."""
    moved = positions + np.clip(actions, -1.0, 1.0) * MAX_STEP
    return np.stack([moved[:, 0].clip(*ARENA_X), moved[:, 1].clip(*ARENA_Y)], axis=1)


def write_play_data(
    out: str | Path, episodes: int, length: int, seed: int, max_steps: int | None = None, overwrite: bool = False
) -> Dataset:
    """Write ``episodes`` play episodes of ``length`` steps (see the module docstring) as a dataset at ``out``.

    ``max_steps``: the evaluation episode limit the env block records for ``avoiding-reach`` (its default
    when ``None``).
    """
    if episodes < 1 or length < 2:
        raise ConfigError(f"play data: expected episodes >= 1 and length >= 2, got {episodes} and {length}")
    family = get_env_family("avoiding-reach")
    kwargs = {} if max_steps is None else {"max_steps": max_steps}
    obs_space, act_space = family.spaces(**kwargs)
    assert obs_space.shape is not None and act_space.shape is not None
    streams = [
        array_stream("obs", "float32", obs_space.shape, "agent position (x, y)"),
        array_stream("action", "float32", act_space.shape, "player's velocity command"),
        array_stream("reward", "float32", ()),
        array_stream("terminated", "bool", ()),
        array_stream("truncated", "bool", ()),
    ]
    env = {"id": family.name, "kwargs": kwargs, "expert": "play", "seed": seed, "tasks": []}
    writer = DatasetWriter(
        out,
        streams,
        spaces={"observation": space_to_json(obs_space), "action": space_to_json(act_space)},
        env=env,
        overwrite=overwrite,
    )
    with writer:
        for episode in play_episodes(episodes, length, seed):
            writer.add_episode(episode)
    return Dataset.open(out)


__all__ = ["play_episodes", "steer", "write_play_data"]
