"""Experiment ``avoiding-ood-dynamics``: demonstrations recorded under other dynamics, weighted by a learned
transferability score (issue 19, item 6).

Data, all on ``train_starts`` training start states of Avoiding (continuous 2-D), in stated proportions:

* ``target_episodes`` episodes of the ``paths`` expert under the **target** dynamics (env kwarg ``drift`` 0,
  the dynamics of every evaluation), a minority;
* ``source_episodes`` episodes under each of the ``source_drifts`` (a side wind along ``x`` per step), the
  majority. The demonstrator feels the wind and counter-steers, as a person teleoperating in it would: its
  action is the expert's minus ``drift / MAX_STEP`` along ``x`` (clipped to [-1, 1]), so it moves along its
  usual path, but its actions, replayed without the wind, push sideways. The drifts share one sign (a
  prevailing wind): with winds of both signs the counter-steering could cancel in an averaging head.
* ``scorer_episodes`` further expert episodes under the target dynamics (the same training starts, other
  draws), only for fitting the transferability scorer (:mod:`clonekit.quality.transfer`); no policy trains
  on them.

Policy keys, both ``continuous_bc`` with the same head, widths, steps, batch and learning rate, on the same
demonstrations: ``bc_all`` samples every step uniformly; ``bc_weighted`` samples steps by the ``weight``
stream of :func:`clonekit.quality.transfer.write_transfer_weights` (``sample_weights="weight"``). Split
``test``: ``test_starts`` held-out start states under the target dynamics; metric ``success`` (one rollout per
start state; Wilson interval over start states). ``scores`` in the results holds the AUC of the score at
telling target episodes from the others (1: every target episode scores better than every other one).
Every stage is skipped or resumed when its output is already in ``OUT``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clonekit.checkpoint import load_policy
from clonekit.config import check
from clonekit.data import Dataset, DatasetWriter
from clonekit.data.spaces import space_to_json
from clonekit.envs import get_env_family
from clonekit.envs.avoiding import MAX_STEP, AvoidingTask, AvoidingVecEnv
from clonekit.errors import DatasetError
from clonekit.evaluation import rollout, split_tasks
from clonekit.evaluation.plots import plot_success_bars
from clonekit.evaluation.stats import format_metric
from clonekit.experiments.common import (
    avoiding_step_streams,
    check_policy_keys,
    play_episodes,
    report_tail,
    results_head,
    torch_threads,
)
from clonekit.experts.avoiding import AvoidingExpert
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.quality.transfer import TransferConfig, separation_auc, write_transfer_weights
from clonekit.seeding import derive_seed
from clonekit.train import TrainConfig, train

NAME = "avoiding-ood-dynamics"
KEYS = ("bc_all", "bc_weighted")


@dataclass(frozen=True)
class AvoidingOODDynamicsConfig:
    """Settings of ``avoiding-ood-dynamics``.

    Args:
        train_starts: Training start states (episode ``k`` of each dynamics starts at ``k % train_starts``).
        target_episodes: Demonstrations under the target dynamics (drift 0).
        source_drifts: Side winds (per step, along ``x``; ``|drift| <= MAX_STEP``) of the other demonstrations.
        source_episodes: Demonstrations under each of ``source_drifts``.
        scorer_episodes: Target-dynamics expert episodes that only the transferability scorer sees.
        test_starts: Held-out start states of the ``test`` split (one rollout each, target dynamics).
        policies: Policy keys to run, a subset of ``bc_all, bc_weighted``.
        head: Action head of both ``continuous_bc`` policies (``gmm`` keeps Avoiding's 8 paths apart).
        steps: Gradient steps of each policy.
        batch_size: Steps per gradient step.
        lr: Adam learning rate.
        hidden_sizes: MLP widths of both policies.
        scorer_steps: Gradient steps of the scorer's forward model.
        temperature: The scorer's weight temperature (see :class:`clonekit.quality.transfer.TransferConfig`).
    """

    train_starts: int = 40
    target_episodes: int = 40
    source_drifts: tuple[float, ...] = (0.01, 0.02)
    source_episodes: int = 80
    scorer_episodes: int = 8
    test_starts: int = 200
    policies: tuple[str, ...] = KEYS
    head: str = "gmm"
    steps: int = 4000
    batch_size: int = 256
    lr: float = 3e-4
    hidden_sizes: tuple[int, ...] = (256, 256)
    scorer_steps: int = 1000
    temperature: float = 1.0

    def __post_init__(self) -> None:
        for name in ("train_starts", "target_episodes", "scorer_episodes", "test_starts", "steps", "batch_size"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check(self.source_episodes >= 0, "source_episodes", ">= 0", self.source_episodes)
        check(
            all(d != 0 and abs(d) <= MAX_STEP for d in self.source_drifts),
            "source_drifts",
            f"nonzero winds within [-{MAX_STEP}, {MAX_STEP}]",
            self.source_drifts,
        )
        check_policy_keys(self.policies, KEYS)
        check(
            self.head in ("mse", "gaussian", "gmm", "diffusion"), "head", "mse, gaussian, gmm or diffusion", self.head
        )
        check(self.lr > 0, "lr", "> 0", self.lr)
        check(len(self.hidden_sizes) >= 1, "hidden_sizes", "at least one width", self.hidden_sizes)
        check(self.scorer_steps >= 1, "scorer_steps", ">= 1", self.scorer_steps)
        check(self.temperature > 0, "temperature", "> 0", self.temperature)


FULL = AvoidingOODDynamicsConfig()
QUICK = replace(
    FULL,
    train_starts=20,
    target_episodes=20,
    source_episodes=40,
    scorer_episodes=5,
    test_starts=60,
    steps=3000,
    hidden_sizes=(128, 128),
    scorer_steps=500,
)


class CounterSteeringExpert(AvoidingExpert):
    """The ``paths`` expert in a side wind ``drift``: it subtracts the wind from its action, so it keeps to its
    path under the wind (up to the action bound) and its actions carry the wind's dynamics."""

    def __init__(self, drift: float) -> None:
        super().__init__()
        self.drift = drift

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        action, annotations = super().act(obs)
        action[:, 0] -= self.drift / MAX_STEP
        return np.clip(action, -1.0, 1.0), annotations


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: AvoidingOODDynamicsConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``)."""
    config = config or (QUICK if quick else FULL)
    with torch_threads(1):  # small networks: more intra-op threads buy nothing on a shared machine
        return _run(out, seed, quick, show_progress, log, config)


def _run(
    out: Path, seed: int, quick: bool, show_progress: bool, log: Any, config: AvoidingOODDynamicsConfig
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    demos, scorer_data = _datasets(out, config, seed)
    weighted_path = out / "data" / "weighted"
    transfer = TransferConfig(steps=config.scorer_steps, temperature=config.temperature, seed=seed)
    if weighted_path.exists():
        weighted = Dataset.open(weighted_path)
        if weighted.extra.get("transfer", {}).get("source_fingerprint") != demos.fingerprint:
            raise DatasetError(f"{weighted_path}: exists but was weighted from other data; use a fresh --out")
    else:
        weighted, _ = write_transfer_weights(demos, scorer_data, weighted_path, transfer)
    record = weighted.extra["transfer"]
    score = np.asarray(record["score"])
    weight = np.asarray(record["weight"])
    drift = np.asarray(weighted.episode_info("drift"), dtype=np.float64)
    is_target = drift == 0
    auc = separation_auc(-score[is_target], -score[~is_target]) if (~is_target).any() else None
    by_drift = {
        f"{d:g}": {
            "episodes": int((drift == d).sum()),
            "mean_score": float(score[drift == d].mean()),
            "mean_weight": float(weight[drift == d].mean()),
        }
        for d in sorted(set(drift.tolist()))
    }
    lengths = np.asarray(weighted.episode_lengths, dtype=np.float64)
    target_share = float((weight * lengths)[is_target].sum() / max((weight * lengths).sum(), 1e-12))
    log(f"score AUC (target vs other dynamics) {auc}; weighted step share of target episodes {target_share:.3f}")
    for d, facts in by_drift.items():
        log(
            f"  drift {d:>6s}: {facts['episodes']} episodes, "
            f"score {facts['mean_score']:.3g}, weight {facts['mean_weight']:.3f}"
        )

    family = get_env_family("avoiding")
    tasks = split_tasks(weighted.env, "test", seed, config.test_starts)
    metrics: dict[str, dict[str, Any]] = {}
    for key in config.policies:
        run_dir = out / "runs" / key
        train_config = TrainConfig(
            steps=config.steps,
            batch_size=config.batch_size,
            lr=config.lr,
            seed=seed,
            checkpoint_every=max(config.steps // 2, 1),
            keep_checkpoints=1,
            tensorboard=False,
            val_fraction=0.0,
            sample_weights="weight" if key == "bc_weighted" else None,
        )
        overrides = {"hidden_sizes": list(config.hidden_sizes), "head": config.head}
        train(
            "continuous_bc",
            weighted,
            run_dir,
            train_config,
            overrides,
            resume=True,
            same_settings=True,
            show_progress=show_progress,
        )
        policy = load_policy(run_dir)
        torch.manual_seed(derive_seed(seed, f"{NAME}:{key}"))  # the head's sampling noise
        metrics[key] = {
            "test": {"success": rollout(policy, family, tasks, config.test_starts, seed).metrics(seed)["success"]}
        }
        log(f"  {key:12s} test success {format_metric(metrics[key]['test']['success'])}")

    results = {
        **results_head(NAME, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
        "scores": {
            "auc_target_vs_other": auc,
            "by_drift": by_drift,
            "target_step_share_weighted": target_share,
            "target_step_share_uniform": float(lengths[is_target].sum() / lengths.sum()),
            "calibration_error": record["calibration_error"],
            "fit_error": record["fit_error"],
        },
    }
    atomic_write_json(out / "results.json", results)
    plots = ["success.png"] if plot_success_bars(results, out / "success.png", metric="success") else []
    atomic_write_text(out / "report.md", _report(results, plots))
    return results


def _datasets(out: Path, config: AvoidingOODDynamicsConfig, seed: int) -> tuple[Dataset, Dataset]:
    """The demonstrations (``data/demos``) and the scorer's target episodes (``data/scorer``); written once, a
    rerun checks that they fit the settings."""
    root = out / "data"
    plan = {"target_episodes": config.target_episodes, "source_drifts": list(config.source_drifts)}
    plan |= {"source_episodes": config.source_episodes, "train_starts": config.train_starts}
    plan |= {"scorer_episodes": config.scorer_episodes}
    paths = (root / "demos", root / "scorer")
    if all(p.exists() for p in paths):
        demos, scorer = Dataset.open(paths[0]), Dataset.open(paths[1])
        if demos.env.get("seed") != seed or demos.extra.get("ood_dynamics") != plan:
            raise DatasetError(f"{paths[0]}: exists but was written with other settings; use a fresh --out")
        return demos, scorer
    family = get_env_family("avoiding")
    tasks = family.sample_tasks(seed, "train", config.train_starts, set())
    groups = [(0.0, config.target_episodes, "demos")]
    groups += [(d, config.source_episodes, "demos") for d in config.source_drifts if config.source_episodes]
    demos = write_drift_demos(paths[0], seed, tasks, groups, plan)
    scorer = write_drift_demos(paths[1], seed, tasks, [(0.0, config.scorer_episodes, "scorer")], plan)
    return demos, scorer


def write_drift_demos(
    path: Path, seed: int, tasks: list[AvoidingTask], groups: list[tuple[float, int, str]], plan: dict[str, Any]
) -> Dataset:
    """Write a dataset at ``path`` of :class:`CounterSteeringExpert` episodes, ``count`` per ``(drift, count,
    role)`` group of ``groups`` (episode ``k`` of a group on ``tasks[k % len(tasks)]``, draws seeded by ``seed``,
    the drift and the role), with episode info ``task_index`` and ``drift`` and ``plan`` as
    ``extra["ood_dynamics"]``; the env block is the target dynamics' (drift 0). Returns the dataset."""
    family = get_env_family("avoiding")
    obs_space, act_space = family.spaces()
    streams = avoiding_step_streams()
    env = {"id": family.name, "kwargs": {}, "expert": "paths", "seed": seed}
    env["tasks"] = [family.task_to_json(t) for t in tasks]
    writer = DatasetWriter(
        path,
        streams,
        spaces={"observation": space_to_json(obs_space), "action": space_to_json(act_space)},
        env=env,
        episode_info=("task_index", "drift"),
        extra={"ood_dynamics": plan},
    )
    with writer:
        for drift, count, role in groups:
            task_index = np.arange(count) % len(tasks)
            episodes = _play([tasks[i] for i in task_index], drift, derive_seed(seed, f"{NAME}:{role}:{drift}"))
            for episode, index in zip(episodes, task_index, strict=True):
                writer.add_episode(episode, {"task_index": int(index), "drift": float(drift)})
        return writer.close()


def _play(tasks: list[AvoidingTask], drift: float, seed: int) -> list[dict[str, Any]]:
    """One counter-steering expert episode per task under side wind ``drift``; their streams, one dict each."""
    vec = AvoidingVecEnv(tasks, drift=drift)
    expert = CounterSteeringExpert(drift)
    obs = vec.reset()
    expert.reset(vec, seed=seed)

    def decide(obs: np.ndarray) -> dict[str, np.ndarray]:
        action, _ = expert.act(obs)
        return {"action": action}

    return play_episodes(vec, obs, decide)


def _report(results: dict[str, Any], plots: list[str]) -> str:
    config = results["config"]
    scores = results["scores"]
    auc = scores["auc_target_vs_other"]
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        f"Avoiding, {config['train_starts']} training start states. Demonstrations: {config['target_episodes']} "
        f"under the target dynamics (no wind), {config['source_episodes']} under each side wind "
        f"{config['source_drifts']} (a counter-steering expert); {config['scorer_episodes']} more target episodes "
        "fit the transferability scorer only.",
        "",
        "| drift | episodes | mean score | mean weight |",
        "|---|---|---|---|",
    ]
    for d, facts in scores["by_drift"].items():
        lines.append(f"| {d} | {facts['episodes']} | {facts['mean_score']:.3g} | {facts['mean_weight']:.3f} |")
    lines += [
        "",
        f"Score AUC, target vs other dynamics: {'-' if auc is None else f'{auc:.3f}'}. Share of sampled steps "
        f"from target episodes: {scores['target_step_share_uniform']:.3f} uniform, "
        f"{scores['target_step_share_weighted']:.3f} weighted.",
        "",
        f"Success from {config['test_starts']} held-out start states under the target dynamics (`test`), one "
        "rollout each, Wilson 95% intervals:",
        "",
        "| policy | test success |",
        "|---|---|",
    ]
    for key, splits in results["metrics"].items():
        lines.append(f"| {key} | {format_metric(splits['test']['success'])} |")
    lines += report_tail(results, plots)
    return "\n".join(lines)


def success_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(policy, test success)``."""
    return [(key, format_metric(splits["test"]["success"])) for key, splits in results["metrics"].items()]


__all__ = [
    "FULL",
    "KEYS",
    "NAME",
    "QUICK",
    "AvoidingOODDynamicsConfig",
    "CounterSteeringExpert",
    "run",
    "success_table",
    "write_drift_demos",
]
