"""Collect expert demonstrations (with their annotation streams) into a clonekit dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from clonekit.data import Dataset, DatasetWriter, array_stream
from clonekit.data.spaces import space_to_json
from clonekit.envs import get_env_family
from clonekit.envs.maze import derive_seed
from clonekit.errors import ConfigError
from clonekit.experts import make_expert
from clonekit.progress import progress_bar


def collect(
    env: str,
    expert: str,
    *,
    episodes: int,
    seed: int,
    out: str | Path,
    num_tasks: int,
    env_kwargs: dict[str, Any] | None = None,
    batch_size: int = 256,
    overwrite: bool = False,
    show_progress: bool = True,
) -> Dataset:
    """Roll out ``expert`` on ``num_tasks`` training tasks of ``env`` drawn from ``seed``; write ``episodes``.

    Episode ``k`` plays task ``k % num_tasks`` from a random start. The dataset's ``env`` block records the
    env, its options, the seed and every task (so evaluation on the ``train`` split replays these tasks and
    the ``test`` split avoids them).
    """
    if episodes < 1:
        raise ConfigError(f"--episodes: expected >= 1, got {episodes}")
    if num_tasks < 1:
        raise ConfigError(f"--tasks: expected >= 1, got {num_tasks}")
    env_kwargs = dict(env_kwargs or {})
    family = get_env_family(env)
    the_expert = make_expert(env, expert)
    obs_space, act_space = family.spaces(**env_kwargs)
    tasks = family.sample_tasks(seed, "train", num_tasks, set(), **env_kwargs)
    assert obs_space.shape is not None
    streams = [
        array_stream("obs", obs_space.dtype or "float32", obs_space.shape, "observation"),
        array_stream("action", "int64", (), "expert action"),
        array_stream("reward", "float32", ()),
        array_stream("terminated", "bool", ()),
        array_stream("truncated", "bool", ()),
        *the_expert.streams(obs_space.shape),
    ]
    meta_env = {
        "id": env,
        "kwargs": env_kwargs,
        "expert": expert,
        "seed": seed,
        "tasks": [family.task_to_json(t) for t in tasks],
    }
    writer = DatasetWriter(
        out,
        streams,
        spaces={"observation": space_to_json(obs_space), "action": space_to_json(act_space)},
        env=meta_env,
        episode_info=("task_index",),
        overwrite=overwrite,
    )
    with writer, progress_bar("collect", total=episodes, enabled=show_progress) as advance:
        for first in range(0, episodes, batch_size):
            ids = np.arange(first, min(first + batch_size, episodes))
            task_index = ids % num_tasks
            vec = family.make_vec([tasks[i] for i in task_index], **env_kwargs)
            obs = vec.reset(seed=derive_seed(seed, f"collect:{first}"))
            the_expert.reset(vec)
            steps: dict[str, list[np.ndarray]] = {}
            active = np.ones(len(ids), dtype=bool)
            length = np.zeros(len(ids), dtype=np.int64)
            while active.any():
                action, annotations = the_expert.act(obs)
                record = {"obs": obs, "action": action, **annotations}
                obs, reward, terminated, truncated = vec.step(action)
                record |= {"reward": reward, "terminated": terminated, "truncated": truncated}
                for name, value in record.items():
                    steps.setdefault(name, []).append(value)
                length += active
                active &= ~(terminated | truncated)
            stacked = {name: np.stack(values, axis=1) for name, values in steps.items()}  # (B, T, ...)
            for slot in range(len(ids)):
                episode = {name: values[slot, : length[slot]] for name, values in stacked.items()}
                writer.add_episode(episode, {"task_index": int(task_index[slot])})
            advance(len(ids))
    return Dataset.open(out)
