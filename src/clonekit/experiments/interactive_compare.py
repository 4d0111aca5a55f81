"""What the interactive-imitation experiments (``maze-interactive``, ``continuous-interactive``) share: the
policy keys, behaviour cloning at the same label budget, every method's rounds, the success-vs-labels curve,
the plot and the table.

Design: from one pool of expert demonstrations, ``bc`` trains on the first demonstrations holding
``demo_labels + label_budget`` labels (one label a step); every interactive method starts from the first
``demo_episodes`` of them and may spend ``label_budget`` labels in its rounds (:func:`interactive_methods`).
``expert_labels`` of a policy is every label its data holds (an exact count: its interval is the count).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clonekit.checkpoint import load_policy
from clonekit.config import check
from clonekit.data import Dataset, DatasetWriter
from clonekit.errors import ConfigError
from clonekit.evaluation.plots import _pyplot, save_figure
from clonekit.evaluation.stats import format_metric
from clonekit.experiments.common import exact_metric, results_head
from clonekit.interactive import InteractiveConfig, run_interactive
from clonekit.io import atomic_write_json
from clonekit.policies import Policy
from clonekit.train import TrainConfig, check_lr_schedule, train

SPLITS = ("test", "train")
# Every policy key, in the order they run; an experiment config's optional ``policies`` field picks some.
KEYS = ("bc", "dagger", "hg_dagger", "sirius", "sirius_uniform", "rlif", "hg_dagger_subopt", "rlif_subopt")
# evaluate(policy, split) -> that split's metrics (``success`` among them).
Evaluate = Callable[[Policy, str], dict[str, Any]]


# Settings every interactive experiment config has, each a count >= 1.
_COUNTS = (
    "demo_episodes",
    "label_budget",
    "rounds",
    "episodes_per_round",
    "dagger_episodes_per_round",
    "train_steps",
    "batch_size",
)


def check_interactive_settings(config: Any) -> None:
    """The checks of the settings every interactive experiment config shares: the counts ``demo_episodes``,
    ``label_budget``, ``rounds``, ``episodes_per_round``, ``dagger_episodes_per_round``, ``train_steps`` and
    ``batch_size`` >= 1, ``lr`` > 0, ``lr_schedule``, ``subopt_noise`` in [0, 1], the delays ``subopt_delay``
    and ``delay`` >= 0, and ``labels_per_round`` None or >= 1 (a :class:`~clonekit.errors.ConfigError` naming the
    first setting that fails)."""
    for name in _COUNTS:
        check(getattr(config, name) >= 1, name, ">= 1", getattr(config, name))
    check(config.lr > 0, "lr", "> 0", config.lr)
    check_lr_schedule(config.lr_schedule)
    check(0 <= config.subopt_noise <= 1, "subopt_noise", "in [0, 1]", config.subopt_noise)
    for name in ("subopt_delay", "delay"):
        check(getattr(config, name) >= 0, name, ">= 0", getattr(config, name))
    per_round = config.labels_per_round
    check(per_round is None or per_round >= 1, "labels_per_round", "null or >= 1", per_round)


def interactive_methods(config: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    """Policy key -> (method, :class:`InteractiveConfig` settings besides the shared ones), from an experiment
    config with ``beta``, ``beta_decay``, ``dagger_episodes_per_round``, ``subopt_noise``, ``subopt_delay`` and
    ``delay`` (the reaction delay of the intervener of ``hg_dagger``, ``sirius``, ``sirius_uniform`` and
    ``rlif``), and optionally ``dagger_max_steps`` (DAgger's own episode cut, in place of the shared one).

    ``sirius_uniform`` is Sirius's rounds with every weight 1; ``*_subopt`` plays with the suboptimal
    intervener (``expert_noise = subopt_noise``, ``delay = subopt_delay``)."""
    late = {"delay": config.delay}
    uniform = {**late, "weight_intervention": 1.0, "weight_pre_intervention": 1.0}
    subopt = {"expert_noise": config.subopt_noise, "delay": config.subopt_delay}
    dagger = {
        "beta": config.beta,
        "beta_decay": config.beta_decay,
        "episodes_per_round": config.dagger_episodes_per_round,
    }
    if getattr(config, "dagger_max_steps", None) is not None:
        dagger["max_episode_steps"] = config.dagger_max_steps
    return {
        "dagger": ("dagger", dagger),
        "hg_dagger": ("hg_dagger", late),
        "sirius": ("sirius", late),
        "sirius_uniform": ("sirius", uniform),
        "rlif": ("rlif", late),
        "hg_dagger_subopt": ("hg_dagger", subopt),
        "rlif_subopt": ("rlif", subopt),
    }


def episodes_within(pool: Dataset, labels: int) -> int:
    """How many of the pool's first episodes hold at most ``labels`` steps."""
    within = int(np.searchsorted(np.cumsum(pool.episode_lengths), labels, side="right"))
    if within == pool.num_episodes:
        raise ConfigError(f"label_budget: the demonstration pool ({pool.num_steps} steps) is too small for {labels}")
    return within


def dataset_prefix(pool: Dataset, path: Path, episodes: int) -> Dataset:
    """The pool's first ``episodes`` episodes as a dataset at ``path`` (kept when already there)."""
    if path.exists():
        return Dataset.open(path)
    task_index = pool.episode_info("task_index")
    writer = DatasetWriter(
        path, list(pool.streams.values()), spaces=pool.spaces, env=pool.env, episode_info=("task_index",)
    )
    with writer:
        for k in range(episodes):
            writer.add_episode(pool.episode(k), {"task_index": int(task_index[k])})
        return writer.close()


def compare(
    name: str,
    out: Path,
    seed: int,
    quick: bool,
    config: Any,
    pool: Dataset,
    evaluate: Evaluate,
    shared: dict[str, Any],
    bc_policy: tuple[str, dict[str, Any]] = ("bc", {}),
    curve_evaluate: Evaluate | None = None,
    show_progress: bool = True,
    log: Any = print,
) -> dict[str, Any]:
    """Train ``bc`` and run every :func:`interactive_methods` key from ``pool`` into ``out``; the results dict.

    ``config`` is the experiment's config (the settings :func:`check_interactive_settings` checks, among them
    ``lr_schedule``, every training's, ``bc``'s too, and ``labels_per_round``, every interactive method's; and
    the fields :func:`interactive_methods` reads); ``shared`` holds the
    :class:`InteractiveConfig` settings every method gets; ``bc_policy`` is the policy name and overrides of
    ``bc``; ``curve_evaluate`` (default ``evaluate``) evaluates every round's policy for the curve. Every stage
    resumes (``OUT/runs/KEY``). An optional ``config.policies`` (keys among ``KEYS``) runs only those keys."""
    curve_evaluate = curve_evaluate or evaluate
    policies = getattr(config, "policies", KEYS)
    demos = dataset_prefix(pool, out / "data" / "demos", config.demo_episodes)
    demo_labels = demos.num_steps
    bc_data = dataset_prefix(pool, out / "data" / "bc", episodes_within(pool, demo_labels + config.label_budget))
    log(f"demonstrations: {demos.num_episodes} episodes ({demo_labels} labels); bc: {bc_data.num_steps} labels")

    def cell(policy: Policy, labels: int) -> dict[str, Any]:
        count = exact_metric(labels)
        return {split: {"success": evaluate(policy, split)["success"], "expert_labels": count} for split in SPLITS}

    policy_name, overrides = bc_policy
    shared = {**shared, "lr_schedule": config.lr_schedule, "labels_per_round": config.labels_per_round}
    train_config = TrainConfig(
        steps=config.train_steps,
        batch_size=config.batch_size,
        lr=config.lr,
        lr_schedule=config.lr_schedule,
        seed=seed,
        tensorboard=False,
        val_fraction=0.0,
    )
    metrics: dict[str, dict[str, Any]] = {}
    if "bc" in policies:
        bc = train(
            policy_name,
            bc_data,
            out / "runs" / "bc",
            train_config,
            policy_overrides=overrides,
            resume=True,
            same_settings=True,
            show_progress=show_progress,
        )
        metrics["bc"] = cell(bc, bc_data.num_steps)
        log(f"  bc               test success {format_metric(metrics['bc']['test']['success'])}")
    curves: dict[str, list[dict[str, Any]]] = {}
    for key, (method, settings) in interactive_methods(config).items():
        if key not in policies:
            continue
        result = run_interactive(
            method,
            demos,
            out / "runs" / key,
            config.rounds,
            seed,
            InteractiveConfig(**{**shared, **settings}),
            show_progress=show_progress,
        )
        labels = demo_labels + result.expert_labels
        metrics[key] = cell(result.policy, labels)
        curve, spent = [], demo_labels
        for i in range(len(result.rounds) + 1):
            final = i == len(result.rounds)
            policy = result.policy if final else load_policy(result.policy_dir(i))
            success = (metrics[key]["test"] if final else curve_evaluate(policy, "test"))["success"]
            curve.append({"round": i, "expert_labels": spent, "success": success["mean"], "ci95": success["ci95"]})
            if not final:
                spent += result.rounds[i]["expert_labels"]
        curves[key] = curve
        log(f"  {key:16s} test success {format_metric(metrics[key]['test']['success'])}, {labels} labels")
    results = {
        **results_head(name, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
        "curves": curves,
        "demo_labels": demo_labels,
    }
    atomic_write_json(out / "results.json", results)
    return results


def plot_success_vs_labels(results: dict[str, Any], path: Path, ylabel: str) -> bool:
    """Test success against expert labels after every round, ``bc`` as one point; False without matplotlib."""
    plt = _pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    if "bc" in results["metrics"]:
        bc = results["metrics"]["bc"]["test"]
        mean, (lo, hi) = bc["success"]["mean"], bc["success"]["ci95"]
        ax.errorbar(
            [bc["expert_labels"]["mean"]], [mean], yerr=[[mean - lo], [hi - mean]], fmt="ks", capsize=3, label="bc"
        )
    for key, curve in results["curves"].items():
        x = [point["expert_labels"] for point in curve]
        y = [point["success"] for point in curve]
        lo = [point["success"] - point["ci95"][0] for point in curve]
        hi = [point["ci95"][1] - point["success"] for point in curve]
        ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=2, label=key, alpha=0.85)
    ax.set_xlabel("expert labels (demonstration steps + labels given in rounds)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{results['experiment']} (seed {results['seed']}): success vs expert labels")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)
    return True


def success_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(policy, test success, train success, expert labels)``."""
    return [
        (
            name,
            format_metric(splits["test"]["success"]),
            format_metric(splits["train"]["success"]),
            str(int(splits["test"]["expert_labels"]["mean"])),
        )
        for name, splits in results["metrics"].items()
    ]


__all__ = [
    "KEYS",
    "SPLITS",
    "compare",
    "dataset_prefix",
    "episodes_within",
    "interactive_methods",
    "plot_success_vs_labels",
    "success_table",
]
