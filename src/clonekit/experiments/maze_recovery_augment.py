"""Measurements of recovery splicing and guided augmentation on mazes, for ``maze-quality``'s ``bc_recovery`` and
``bc_augmented`` keys (each a function returning metrics cells; run both with
``python -m clonekit.experiments.maze_recovery_augment --seed S --out DIR [--quick]``).

:func:`bc_recovery`: BFS demonstrations on ``train_mazes`` mazes; failed and imperfect episodes from the BFS expert
with a random action at ``data_rate`` of its steps on the same mazes, spliced into recovery episodes
(:mod:`clonekit.quality.recovery`; the mistake step has weight 0 and training samples by weight). Policies, all
BC with the same training steps: ``bc_demos`` (the demonstrations), ``bc_recovery`` (demonstrations + recovery
episodes) and ``bc_more_demos`` (demonstrations + more demonstrations holding as many steps as the recovery
episodes: the equal-data-size control). Splits: ``test`` (unseen mazes) and ``test_perturbed`` (the same mazes,
with the policy's action replaced by a random one with probability ``eval_rate`` per step:
:class:`~clonekit.quality.recovery.RandomActionPolicy`). Metric ``success`` (cluster bootstrap over mazes) and
``data_steps`` (transitions in the training data, a count).

:func:`bc_augmented`: BC on a few demonstrations (``bc_demos``) against BC on them plus their rotations and
mirrors accepted by the ``grid-shortest-path`` guide (``bc_augmented``), on unseen mazes (``test``).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from clonekit.data import Dataset
from clonekit.envs import get_env_family
from clonekit.evaluation import rollout, split_tasks
from clonekit.experiments.common import torch_threads
from clonekit.experts import make_expert
from clonekit.experts.collect import collect
from clonekit.policies import Policy
from clonekit.quality.augment import augmented_episodes
from clonekit.quality.curate import Filter, curate
from clonekit.quality.recovery import ExpertActor, RandomActionPolicy, perturbed_rollouts, recovery_episodes
from clonekit.train import TrainConfig, train


@dataclass(frozen=True)
class RecoveryAugmentConfig:
    """Settings of both measurements.

    Args:
        maze_size: Side of the square mazes.
        train_mazes: Training mazes (demonstrations, noisy episodes).
        test_mazes: Unseen mazes of the ``test`` splits.
        demo_episodes: BFS demonstrations of ``bc_recovery``'s policies.
        noisy_episodes: Noisy expert episodes spliced into recovery episodes.
        data_rate: Random-action rate of the noisy expert.
        eval_rate: Random-action rate of the ``test_perturbed`` split.
        augment_mazes: Training mazes of ``bc_augmented`` (few: augmentation is for small data).
        augment_episodes: Demonstrations of ``bc_augmented``.
        train_steps: Gradient steps of every policy.
        batch_size: Transitions per gradient step.
        eval_episodes: Episodes per policy and split.
    """

    maze_size: int = 9
    train_mazes: int = 100
    test_mazes: int = 50
    demo_episodes: int = 200
    noisy_episodes: int = 200
    data_rate: float = 0.3
    eval_rate: float = 0.1
    augment_mazes: int = 10
    augment_episodes: int = 40
    train_steps: int = 1000
    batch_size: int = 128
    eval_episodes: int = 200


FULL = RecoveryAugmentConfig()
QUICK = replace(
    FULL, train_mazes=30, test_mazes=20, demo_episodes=60, noisy_episodes=60, train_steps=200, eval_episodes=60
)


def _count(value: int) -> dict[str, Any]:
    return {"mean": float(value), "ci95": [float(value), float(value)], "n": 1, "method": "count"}


def _train(data: Dataset, out: Path, config: RecoveryAugmentConfig, seed: int, weights: str | None) -> Policy:
    settings = TrainConfig(
        steps=config.train_steps,
        batch_size=config.batch_size,
        seed=seed,
        tensorboard=False,
        val_fraction=0.0,
        sample_weights=weights,
    )
    return train("bc", data, out, settings, resume=True, show_progress=False)


def _demos(out: Path, episodes: int, mazes: int, config: RecoveryAugmentConfig, seed: int) -> Dataset:
    if out.exists():
        return Dataset.open(out)
    kwargs = {"size": config.maze_size}
    return collect(
        "maze", "bfs", episodes=episodes, seed=seed, out=out, num_tasks=mazes, env_kwargs=kwargs, show_progress=False
    )


def bc_recovery(out: Path, seed: int, config: RecoveryAugmentConfig = FULL) -> dict[str, Any]:
    """``{policy: {split: {metric: cell}}}`` for ``bc_demos``, ``bc_recovery`` and ``bc_more_demos`` (see the
    module docstring); stages already in ``out`` are reused."""
    pool = _demos(out / "data" / "pool", 4 * config.demo_episodes, config.train_mazes, config, seed)
    demos_path = out / "data" / "demos"
    demos = (
        Dataset.open(demos_path) if demos_path.exists() else curate(pool, demos_path, [_first(config.demo_episodes)])
    )
    family = get_env_family("maze")
    kwargs = dict(pool.env["kwargs"])
    train_tasks = split_tasks(pool.env, "train", seed, 0)
    noisy_path = out / "data" / "noisy"
    noisy = (
        Dataset.open(noisy_path)
        if noisy_path.exists()
        else perturbed_rollouts(
            "maze",
            ExpertActor(make_expert("maze", "bfs")),
            tasks=train_tasks,
            episodes=config.noisy_episodes,
            seed=seed,
            rate=config.data_rate,
            out=noisy_path,
            env_kwargs=kwargs,
        )
    )
    recovery_path = out / "data" / "recovery"
    if not recovery_path.exists():
        curate(demos, recovery_path, [], added=[recovery_episodes(noisy, "bfs", seed=seed)])
    with_recovery = Dataset.open(recovery_path)
    extra_steps = with_recovery.num_steps - demos.num_steps
    cumulative = np.cumsum(pool.episode_lengths)
    more = int(np.searchsorted(cumulative, demos.num_steps + extra_steps)) + 1
    more_path = out / "data" / "more_demos"
    more_demos = Dataset.open(more_path) if more_path.exists() else curate(pool, more_path, [_first(more)])
    test_tasks = split_tasks(pool.env, "test", seed, config.test_mazes)
    action_space = family.spaces(**kwargs)[1]
    metrics: dict[str, Any] = {}
    arms = {"bc_demos": (demos, None), "bc_recovery": (with_recovery, "weight"), "bc_more_demos": (more_demos, None)}
    for key, (data, weights) in arms.items():
        policy = _train(data, out / "runs" / key, config, seed, weights)
        clean = rollout(policy, family, test_tasks, config.eval_episodes, seed, kwargs)
        noisy_policy = RandomActionPolicy(policy, action_space, config.eval_rate, seed)
        shaken = rollout(noisy_policy, family, test_tasks, config.eval_episodes, seed, kwargs)
        metrics[key] = {
            "test": {"success": clean.metrics(seed)["success"], "data_steps": _count(data.num_steps)},
            "test_perturbed": {"success": shaken.metrics(seed)["success"], "data_steps": _count(data.num_steps)},
        }
    metrics["bc_recovery"]["test"]["recovery_episodes"] = _count(with_recovery.num_episodes - demos.num_episodes)
    return metrics


def bc_augmented(out: Path, seed: int, config: RecoveryAugmentConfig = FULL) -> dict[str, Any]:
    """``{policy: {"test": {"success", "data_steps"}}}`` for ``bc_demos`` and ``bc_augmented`` (see the module
    docstring)."""
    demos = _demos(out / "data" / "few", config.augment_episodes, config.augment_mazes, config, seed)
    augmented_path = out / "data" / "augmented"
    if not augmented_path.exists():
        added = augmented_episodes(demos, ["rot90", "rot180", "rot270", "flip-lr", "flip-ud"], "grid-shortest-path")
        curate(demos, augmented_path, [], added=[added])
    augmented = Dataset.open(augmented_path)
    family = get_env_family("maze")
    kwargs = dict(demos.env["kwargs"])
    test_tasks = split_tasks(demos.env, "test", seed, config.test_mazes)
    metrics: dict[str, Any] = {}
    for key, data in {"bc_demos": demos, "bc_augmented": augmented}.items():
        policy = _train(data, out / "runs" / key, config, seed, None)
        played = rollout(policy, family, test_tasks, config.eval_episodes, seed, kwargs)
        metrics[key] = {"test": {"success": played.metrics(seed)["success"], "data_steps": _count(data.num_steps)}}
    return metrics


def _first(count: int) -> Filter:
    """The first ``count`` episodes of expert demonstrations (every return is 1; ``top-k`` keeps earlier ties)."""
    return Filter("top-k", count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    config = QUICK if args.quick else FULL
    with torch_threads(1):
        results = {
            "seed": args.seed,
            "config": asdict(config),
            "bc_recovery": bc_recovery(args.out / "recovery", args.seed, config),
            "bc_augmented": bc_augmented(args.out / "augmented", args.seed, config),
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    for part in ("bc_recovery", "bc_augmented"):
        for key, splits in results[part].items():
            for split, cells in splits.items():
                s, steps = cells["success"], int(cells["data_steps"]["mean"])
                interval = f"[{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}]"
                print(f"{part} {key} {split}: success {s['mean']:.3f} {interval} n={s['n']}, {steps} data steps")


if __name__ == "__main__":
    main()
