"""Honest evaluation: batched rollouts on seen (``train``) and unseen (``test``) tasks, with CIs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clonekit.checkpoint import load_policy, load_run_config
from clonekit.distributed import init_ray, ordered_map, put
from clonekit.envs import default_num_tasks, env_block_for_eval, get_env_family
from clonekit.errors import CheckpointError, ConfigError
from clonekit.evaluation.rollout import (
    EpisodeResults,
    RolloutWatcher,
    StepHook,
    check_run_fits_env,
    episodes_to_play,
    rollout,
)
from clonekit.evaluation.stats import format_metric, summarize
from clonekit.progress import progress_bar

SPLITS = ("train", "test")
# How the policy runs during evaluation: eager torch, or its exported ONNX model in onnxruntime.
BACKENDS = ("torch", "onnxruntime")


def split_tasks(env: dict[str, Any], split: str, seed: int, num_tasks: int) -> list[Any]:
    """Tasks of ``split`` for the env block recorded in a dataset or run.

    ``train``: exactly the tasks the demonstrations came from. ``test``: ``num_tasks`` tasks drawn from
    ``seed`` whose content differs from every training task. A block without ``tasks`` (data from elsewhere,
    evaluated with ``--env``) has only a ``test`` split.
    """
    if split not in SPLITS:
        raise ConfigError(f"--split: expected one of {list(SPLITS)}, got {split!r}")
    if not isinstance(env, dict) or "id" not in env:
        raise CheckpointError(f"run config: the dataset's env block lacks 'id' (found {env!r})")
    if split == "train" and not env.get("tasks"):
        raise ConfigError(
            f"--split train: the env block records no training tasks (env {env['id']!r}); use --split test"
        )
    family = get_env_family(env["id"])
    kwargs = env.get("kwargs", {})
    train = [family.task_from_json(t, **kwargs) for t in env.get("tasks", [])]
    if split == "train":
        return train
    if num_tasks < 1:
        raise ConfigError(f"--tasks: expected >= 1, got {num_tasks}")
    return family.sample_tasks(seed, "test", num_tasks, {family.task_key(t) for t in train}, **kwargs)


def evaluate_run(
    run_dir: str | Path,
    split: str,
    episodes: int,
    seed: int,
    num_tasks: int | None = None,
    on_step: StepHook | None = None,
    max_parallel: int = 256,
    ray: bool = False,
    ray_address: str | None = None,
    workers: int | None = None,
    backend: str = "torch",
    env: str | None = None,
    show_progress: bool = False,
) -> EpisodeResults:
    """Load the policy of ``run_dir`` and evaluate it for ``episodes`` episodes on ``split``.

    ``num_tasks``: unseen tasks for ``split="test"`` (``None``: 25, or the family's own default: one reset
    seed per episode for gym envs). ``env`` (e.g. ``"gym:CartPole-v1"``) evaluates on that env instead of the
    one the dataset records, for data made elsewhere (only ``split="test"``); a dataset recording a registered
    gymnasium id (a Minari import) is evaluated on it without ``env``.

    ``backend``: ``"torch"``, or ``"onnxruntime"`` to run the policy's exported ONNX model (stateless
    policies; needs the ``onnx`` extra; see :class:`clonekit.export.OnnxRuntimePolicy`).

    Episodes are played ``max_parallel`` at a time. With ``ray=True`` each such wave is a Ray task that
    loads the policy from ``run_dir`` itself (at most ``workers`` at a time; see :mod:`clonekit.distributed`);
    the waves are the same as without Ray and seeded the same way, so the results are too.

    ``show_progress`` shows a progress bar of finished episodes on stderr (with Ray: of finished waves).
    """
    if episodes < 1:
        raise ConfigError(f"--episodes: expected >= 1, got {episodes}")
    if max_parallel < 1:
        raise ConfigError(f"--batch-size: expected >= 1, got {max_parallel}")
    if ray and on_step is not None:
        raise ConfigError("on_step: not available with --ray (the rollouts run in other processes)")
    if backend not in BACKENDS:
        raise ConfigError(f"--backend: expected one of {list(BACKENDS)}, got {backend!r}")
    config = load_run_config(Path(run_dir))
    policy = _load(run_dir, config, backend)
    env_block = env_block_for_eval(config.get("dataset", {}).get("env", {}), env)
    if not env_block.get("id"):
        raise CheckpointError(
            f"{Path(run_dir) / 'config.json'}: dataset.env has no 'id'; cannot tell which env to run "
            "(give one with --env, e.g. gym:CartPole-v1)"
        )
    family = get_env_family(env_block["id"])
    check_run_fits_env(str(Path(run_dir) / "config.json"), config, family, env_block.get("kwargs", {}))
    num_tasks = default_num_tasks(family, episodes, 25) if num_tasks is None else num_tasks
    tasks = split_tasks(env_block, split, seed, num_tasks)
    episodes = episodes_to_play(policy, family, tasks, episodes, env_block.get("kwargs", {}))
    with progress_bar(f"eval {split}", total=episodes, enabled=show_progress) as advance:
        if ray:
            init_ray(ray_address, workers)
            tasks_ref = put(tasks)
            waves = [(first, min(first + max_parallel, episodes)) for first in range(0, episodes, max_parallel)]
            run = str(Path(run_dir).resolve())
            calls = [(run, env_block, tasks_ref, seed, first, stop, max_parallel, backend) for first, stop in waves]
            parts = []
            for part in ordered_map(_rollout_wave_task, calls, workers):
                parts.append(part)
                advance(len(part.success))
            return EpisodeResults.concatenate(parts)
        return rollout(
            policy,
            family,
            tasks,
            episodes,
            seed,
            env_block.get("kwargs", {}),
            max_parallel=max_parallel,
            on_step=on_step,
            on_episodes_end=advance if show_progress else None,
        )


def _load(run_dir: str | Path, config: dict[str, Any], backend: str) -> Any:
    """The final policy of a run, on ``backend``."""
    policy = load_policy(run_dir)
    if backend == "onnxruntime":
        from clonekit.export import OnnxRuntimePolicy, run_obs_dtype

        return OnnxRuntimePolicy(policy, run_obs_dtype(Path(run_dir), config))
    return policy


def _rollout_wave_task(
    run_dir: str,
    env: dict[str, Any],
    tasks: list[Any],
    seed: int,
    first: int,
    stop: int,
    max_parallel: int,
    backend: str,
) -> EpisodeResults:
    """Episodes ``first .. stop - 1`` of :func:`evaluate_run`, as a Ray task: loads the policy itself."""
    config = load_run_config(Path(run_dir))
    family = get_env_family(env["id"])
    policy = _load(run_dir, config, backend)
    return rollout(policy, family, tasks, stop, seed, env.get("kwargs", {}), max_parallel, first_episode=first)


__all__ = [
    "BACKENDS",
    "SPLITS",
    "EpisodeResults",
    "RolloutWatcher",
    "episodes_to_play",
    "evaluate_run",
    "format_metric",
    "rollout",
    "split_tasks",
    "summarize",
]
