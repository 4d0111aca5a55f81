"""Collect expert demonstrations (with their annotation streams) into a clonekit dataset."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from clonekit.data import Dataset, DatasetWriter, StreamSpec, array_stream
from clonekit.data.spaces import space_to_json
from clonekit.distributed import init_ray, ordered_map, put
from clonekit.envs import default_num_tasks, get_env_family, resolve_env
from clonekit.envs.family import EnvFamily
from clonekit.errors import ConfigError
from clonekit.experts import make_expert
from clonekit.progress import progress_bar
from clonekit.seeding import derive_seed


def collect(
    env: str,
    expert: str,
    *,
    episodes: int,
    seed: int,
    out: str | Path,
    num_tasks: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    batch_size: int = 256,
    overwrite: bool = False,
    show_progress: bool = True,
    ray: bool = False,
    ray_address: str | None = None,
    workers: int | None = None,
    expert_kwargs: dict[str, Any] | None = None,
    split: str = "train",
) -> Dataset:
    """Roll out ``expert`` on ``num_tasks`` training tasks of ``env`` drawn from ``seed``; write ``episodes``.

    ``env`` is a family name or ``gym:ID`` (any gymnasium env, see :mod:`clonekit.envs.gym`); ``expert`` a
    registered expert name or an outside expert spec (see :mod:`clonekit.experts.outside`). ``num_tasks``
    ``None``: the family's default (20; the gym family: one reset seed per episode).

    Episode ``k`` plays task ``k % num_tasks`` from a random start. The dataset's ``env`` block records the
    env, its options, the seed and every task (so evaluation on the ``train`` split replays these tasks and
    the ``test`` split avoids them).

    Episodes are played ``batch_size`` at a time, each batch seeded from ``seed`` and its first episode.
    With ``ray=True`` every batch is a Ray task (at most ``workers`` at a time; see
    :mod:`clonekit.distributed`) and this process writes the returned episodes in order, so the dataset,
    fingerprint included, is the same as without Ray.

    ``expert_kwargs`` are the expert's options (e.g. ``{"action_noise": 0.1}`` for the BabyAI bot). An
    episode the expert fails on (it sets ``failed`` for its slot) is left out and counted in the dataset's
    ``env.skipped_episodes``. ``split="test"`` plays held-out tasks instead (e.g. reference demonstrations
    to score a policy's predicted annotations against); the dataset's ``env.split`` records it.
    """
    if episodes < 1:
        raise ConfigError(f"--episodes: expected >= 1, got {episodes}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size: expected >= 1, got {batch_size}")
    family, env_kwargs = resolve_env(env, env_kwargs)
    num_tasks = default_num_tasks(family, episodes, 20) if num_tasks is None else num_tasks
    if num_tasks < 1:
        raise ConfigError(f"--tasks: expected >= 1, got {num_tasks}")
    expert_kwargs = dict(expert_kwargs or {})
    the_expert = make_expert(env, expert, **expert_kwargs)
    obs_space, act_space = family.spaces(**env_kwargs)
    # Experts read the env's state, which a pixel env (obs="pixels") draws; its family names the state's space.
    state_space = getattr(family, "state_spaces", family.spaces)(**env_kwargs)[0]
    tasks = family.sample_tasks(seed, split, num_tasks, set(), **env_kwargs)
    assert obs_space.shape is not None and state_space.shape is not None
    streams = [
        array_stream("obs", obs_space.dtype or "float32", obs_space.shape, "observation"),
        _action_stream(act_space),
        array_stream("reward", "float32", ()),
        array_stream("terminated", "bool", ()),
        array_stream("truncated", "bool", ()),
        *the_expert.streams(state_space.shape),
    ]
    meta_env = {
        "id": family.name,
        "kwargs": env_kwargs,
        "expert": expert,
        **({"expert_source": the_expert.source} if hasattr(the_expert, "source") else {}),
        **({"expert_kwargs": expert_kwargs} if expert_kwargs else {}),
        **({"split": split} if split != "train" else {}),
        "seed": seed,
        "tasks": [family.task_to_json(t) for t in tasks],
    }
    spans = [(first, min(first + batch_size, episodes)) for first in range(0, episodes, batch_size)]
    batches: Iterable[Batch]
    if ray:  # one Ray task per batch; results come back in batch order, so the file is the same as below
        init_ray(ray_address, workers)
        tasks_ref = put(tasks)
        calls = [(env, expert, expert_kwargs, tasks_ref, env_kwargs, seed, first, stop) for first, stop in spans]
        batches = ordered_map(_collect_batch_task, calls, workers)
    else:
        batches = (_collect_batch(family, the_expert, tasks, env_kwargs, seed, first, stop) for first, stop in spans)
    writer = DatasetWriter(
        out,
        streams,
        spaces={"observation": space_to_json(obs_space), "action": space_to_json(act_space)},
        env=meta_env,
        episode_info=("task_index",),
        overwrite=overwrite,
    )
    skipped = 0
    with writer, progress_bar("collect", total=episodes, enabled=show_progress) as advance:
        for batch, batch_skipped in batches:
            for episode, task_index in batch:
                writer.add_episode(episode, {"task_index": task_index})
            skipped += batch_skipped
            advance(len(batch) + batch_skipped, skipped=skipped)
        writer.env["skipped_episodes"] = skipped
    return Dataset.open(out)


Batch = tuple[list[tuple[dict[str, np.ndarray], int]], int]


def _collect_batch(
    family: EnvFamily,
    the_expert: Any,
    tasks: list[Any],
    env_kwargs: dict[str, Any],
    seed: int,
    first: int,
    stop: int,
) -> Batch:
    """Episodes ``first .. stop - 1`` played together in one batched env: ``([(streams, task_index), ...], skipped)``.

    The batch is seeded from ``seed`` and ``first`` alone, so it comes out the same wherever it runs.
    Episodes the expert failed on (its optional ``failed`` mask) are left out and counted in ``skipped``.
    """
    ids = np.arange(first, stop)
    task_index = ids % len(tasks)
    vec = family.make_vec([tasks[i] for i in task_index], **env_kwargs)
    obs = vec.reset(seed=derive_seed(seed, f"collect:{first}"))
    state_env: Any = getattr(vec, "state_env", vec)  # a pixel env's expert acts on the state it draws
    the_expert.reset(state_env, seed=derive_seed(seed, f"expert:{first}"))
    steps: dict[str, list[np.ndarray]] = {}
    active = np.ones(len(ids), dtype=bool)
    length = np.zeros(len(ids), dtype=np.int64)
    while active.any():
        action, annotations = the_expert.act(obs if state_env is vec else state_env.observe())
        record = {"obs": obs, "action": action, **annotations}
        obs, reward, terminated, truncated = vec.step(action)
        record |= {"reward": reward, "terminated": terminated, "truncated": truncated}
        for name, value in record.items():
            steps.setdefault(name, []).append(value)
        length += active
        active &= ~(terminated | truncated)
    stacked = {name: np.stack(values, axis=1) for name, values in steps.items()}  # (B, T, ...)
    failed = np.asarray(getattr(the_expert, "failed", np.zeros(len(ids), dtype=bool)), dtype=bool)
    kept = [
        ({name: values[slot, : length[slot]] for name, values in stacked.items()}, int(task_index[slot]))
        for slot in range(len(ids))
        if not failed[slot]
    ]
    return kept, int(failed.sum())


def _collect_batch_task(
    env: str,
    expert: str,
    expert_kwargs: dict[str, Any],
    tasks: list[Any],
    env_kwargs: dict[str, Any],
    seed: int,
    first: int,
    stop: int,
) -> Batch:
    """:func:`_collect_batch` run as a Ray task: makes its own env family and expert."""
    the_expert = make_expert(env, expert, **expert_kwargs)
    return _collect_batch(get_env_family(env.partition(":")[0]), the_expert, tasks, env_kwargs, seed, first, stop)


def _action_stream(space: Any) -> StreamSpec:
    """The ``action`` column: int64 scalars for a Discrete space, the Box's dtype and shape for a Box."""
    if space.shape:
        return array_stream("action", space.dtype, space.shape, "expert action")
    return array_stream("action", "int64", (), "expert action")
