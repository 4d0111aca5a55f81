"""Experiment ``maze-interactive``: interactive imitation (DAgger, HG-DAgger, Sirius) against behaviour cloning
at an equal budget of expert labels, on unseen mazes.

From one pool of BFS-expert demonstrations on ``train_mazes`` mazes:

* ``bc`` trains on the first demonstrations holding ``demo_labels + label_budget`` labels (one label a step);
* every interactive method starts from the first ``demo_episodes`` of them and runs ``rounds`` rounds on the
  same training mazes with a simulated intervener (:mod:`clonekit.interactive`), spending at most
  ``label_budget`` labels in its rounds: ``dagger``, ``hg_dagger``, ``sirius`` (weighted BC) and
  ``sirius_uniform`` (the same rounds with every weight 1), plus ``hg_dagger_subopt``, HG-DAgger with a
  suboptimal intervener (``subopt_noise``: that share of its actions are wrong; ``subopt_delay`` steps late).

Every final policy is evaluated on ``test_mazes`` unseen mazes (``test``) and on the training mazes
(``train``). Metrics: ``success`` and ``expert_labels`` (every label the policy's data holds: demonstration
steps plus the labels the rounds used; an exact count, so its interval is the count itself). The plot shows
test success against expert labels after every round. Every stage is resumable (``OUT/runs/KEY``).
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
from clonekit.envs import get_env_family
from clonekit.errors import ConfigError, DatasetError
from clonekit.evaluation import rollout, split_tasks
from clonekit.evaluation.plots import _pyplot
from clonekit.evaluation.stats import format_metric
from clonekit.experiments.common import report_tail, results_head
from clonekit.experts.collect import collect
from clonekit.interactive import InteractiveConfig, run_interactive
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.policies import Policy
from clonekit.train import TrainConfig, train

NAME = "maze-interactive"
SPLITS = ("test", "train")


@dataclass(frozen=True)
class MazeInteractiveConfig:
    """Settings of ``maze-interactive``.

    Args:
        maze_size: Side of the square mazes.
        train_mazes: Training mazes (demonstrations and interactive rounds play on them).
        test_mazes: Unseen mazes of the ``test`` split.
        demo_episodes: Demonstrations every interactive method starts from.
        label_budget: Expert labels each interactive method may spend in its rounds; ``bc`` gets as many
            more demonstration steps.
        rounds: Interactive rounds per method.
        episodes_per_round: Episodes per round of the gated methods (HG-DAgger, Sirius), which spend labels
            only where the policy errs, so they need more episodes than DAgger to spend the same budget.
        dagger_episodes_per_round: Episodes per DAgger round (every visited state is a label).
        train_steps: Gradient steps of every training (each round retrains from scratch).
        batch_size: Transitions per gradient step.
        lr: Adam learning rate.
        beta: DAgger's round-0 mixing probability (decays by ``beta_decay`` a round).
        beta_decay: DAgger's mixing decay per round.
        subopt_noise: Share of wrong actions of the suboptimal intervener (``hg_dagger_subopt``).
        subopt_delay: Reaction delay of the suboptimal intervener, in steps.
        eval_episodes: Evaluation episodes per policy and split (the final policies).
        curve_episodes: Test episodes per round's policy for the success-vs-labels plot.
    """

    maze_size: int = 11
    train_mazes: int = 200
    test_mazes: int = 100
    demo_episodes: int = 100
    label_budget: int = 1600
    rounds: int = 4
    episodes_per_round: int = 200
    dagger_episodes_per_round: int = 50
    train_steps: int = 800
    batch_size: int = 128
    lr: float = 1e-3
    beta: float = 0.5
    beta_decay: float = 0.5
    subopt_noise: float = 0.3
    subopt_delay: int = 1
    eval_episodes: int = 300
    curve_episodes: int = 100

    def __post_init__(self) -> None:
        check(self.maze_size >= 5, "maze_size", ">= 5", self.maze_size)
        for name in ("train_mazes", "test_mazes", "demo_episodes", "rounds", "episodes_per_round", "train_steps"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        for name in ("dagger_episodes_per_round",):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        for name in ("batch_size", "eval_episodes", "curve_episodes"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check(self.label_budget >= 1, "label_budget", ">= 1", self.label_budget)
        check(self.lr > 0, "lr", "> 0", self.lr)
        check(0 <= self.subopt_noise <= 1, "subopt_noise", "in [0, 1]", self.subopt_noise)
        check(self.subopt_delay >= 0, "subopt_delay", ">= 0", self.subopt_delay)


FULL = MazeInteractiveConfig()
QUICK = replace(
    FULL,
    maze_size=9,
    train_mazes=30,
    test_mazes=30,
    demo_episodes=30,
    label_budget=300,
    rounds=2,
    episodes_per_round=40,
    dagger_episodes_per_round=8,
    train_steps=150,
    batch_size=64,
    eval_episodes=60,
    curve_episodes=30,
)


def interactive_methods(config: MazeInteractiveConfig) -> dict[str, tuple[str, dict[str, Any]]]:
    """Policy key -> (method, :class:`InteractiveConfig` settings besides the shared ones)."""
    uniform = {"weight_intervention": 1.0, "weight_pre_intervention": 1.0}
    subopt = {"expert_noise": config.subopt_noise, "delay": config.subopt_delay}
    return {
        "dagger": (
            "dagger",
            {
                "beta": config.beta,
                "beta_decay": config.beta_decay,
                "episodes_per_round": config.dagger_episodes_per_round,
            },
        ),
        "hg_dagger": ("hg_dagger", {}),
        "sirius": ("sirius", {}),
        "sirius_uniform": ("sirius", uniform),
        "hg_dagger_subopt": ("hg_dagger", subopt),
    }


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: MazeInteractiveConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``)."""
    config = config or (QUICK if quick else FULL)
    out.mkdir(parents=True, exist_ok=True)
    pool = _pool(out, config, seed)
    demos = _prefix(pool, out / "data" / "demos", config.demo_episodes)
    demo_labels = demos.num_steps
    bc_data = _prefix(pool, out / "data" / "bc", _episodes_within(pool, demo_labels + config.label_budget))
    log(f"demonstrations: {demos.num_episodes} episodes ({demo_labels} labels); bc: {bc_data.num_steps} labels")
    family = get_env_family("maze")
    env_kwargs = dict(pool.env["kwargs"])
    tasks = {split: split_tasks(pool.env, split, seed, config.test_mazes) for split in SPLITS}

    def evaluate(policy: Policy, split: str, episodes: int) -> dict[str, Any]:
        return rollout(policy, family, tasks[split], episodes, seed, env_kwargs).metrics(seed)

    metrics: dict[str, dict[str, Any]] = {}
    curves: dict[str, list[dict[str, Any]]] = {}
    shared = {
        "train_steps": config.train_steps,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "episodes_per_round": config.episodes_per_round,
        "label_budget": config.label_budget,
    }
    bc = train(
        "bc",
        bc_data,
        out / "runs" / "bc",
        TrainConfig(
            steps=config.train_steps,
            batch_size=config.batch_size,
            lr=config.lr,
            seed=seed,
            tensorboard=False,
            val_fraction=0.0,
        ),
        resume=True,
        show_progress=show_progress,
    )
    metrics["bc"] = _cell(evaluate, bc, config, bc_data.num_steps)
    log(f"  bc               test success {format_metric(metrics['bc']['test']['success'])}")
    for key, (method, settings) in interactive_methods(config).items():
        interactive_config = InteractiveConfig(**{**shared, **settings})
        result = run_interactive(
            method, demos, out / "runs" / key, config.rounds, seed, interactive_config, show_progress=show_progress
        )
        labels = demo_labels + result.expert_labels
        metrics[key] = _cell(evaluate, result.policy, config, labels)
        curve, spent = [], demo_labels
        for i in range(len(result.rounds) + 1):
            policy = result.policy if i == len(result.rounds) else load_policy(result.policy_dir(i))
            success = evaluate(policy, "test", config.curve_episodes)["success"]
            curve.append({"round": i, "expert_labels": spent, "success": success["mean"], "ci95": success["ci95"]})
            if i < len(result.rounds):
                spent += result.rounds[i]["expert_labels"]
        curves[key] = curve
        log(f"  {key:16s} test success {format_metric(metrics[key]['test']['success'])}, {labels} labels")

    results = {
        **results_head(NAME, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
        "curves": curves,
        "demo_labels": demo_labels,
    }
    atomic_write_json(out / "results.json", results)
    plots = ["success_vs_labels.png"] if _plot_curves(results, out / "success_vs_labels.png") else []
    atomic_write_text(out / "report.md", _report(results, plots))
    return results


def _cell(evaluate: Any, policy: Policy, config: MazeInteractiveConfig, labels: int) -> dict[str, Any]:
    count = {"mean": float(labels), "ci95": [float(labels), float(labels)], "n": 1, "method": "count"}
    return {
        split: {"success": evaluate(policy, split, config.eval_episodes)["success"], "expert_labels": count}
        for split in SPLITS
    }


def _pool(out: Path, config: MazeInteractiveConfig, seed: int) -> Dataset:
    """Expert demonstrations enough for the demonstrations and ``bc``'s larger set (collected once)."""
    path = out / "data" / "pool"
    episodes = config.demo_episodes + config.label_budget // 2  # every maze episode has >= 2 steps but a few
    if path.exists():
        pool = Dataset.open(path)
        if pool.env.get("seed") != seed or pool.num_episodes != episodes:
            raise DatasetError(f"{path}: exists but was collected with other settings; use a fresh --out")
        return pool
    return collect(
        "maze",
        "bfs",
        episodes=episodes,
        seed=seed,
        out=path,
        num_tasks=config.train_mazes,
        env_kwargs={"size": config.maze_size},
        show_progress=False,
    )


def _episodes_within(pool: Dataset, labels: int) -> int:
    """How many of the pool's first episodes hold at most ``labels`` steps."""
    within = int(np.searchsorted(np.cumsum(pool.episode_lengths), labels, side="right"))
    if within == pool.num_episodes:
        raise ConfigError(f"label_budget: the demonstration pool ({pool.num_steps} steps) is too small for {labels}")
    return within


def _prefix(pool: Dataset, path: Path, episodes: int) -> Dataset:
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


def _plot_curves(results: dict[str, Any], path: Path) -> bool:
    plt = _pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    bc = results["metrics"]["bc"]["test"]
    ax.errorbar(
        [bc["expert_labels"]["mean"]],
        [bc["success"]["mean"]],
        yerr=[[bc["success"]["mean"] - bc["success"]["ci95"][0]], [bc["success"]["ci95"][1] - bc["success"]["mean"]]],
        fmt="ks",
        capsize=3,
        label="bc",
    )
    for key, curve in results["curves"].items():
        x = [point["expert_labels"] for point in curve]
        y = [point["success"] for point in curve]
        lo = [point["success"] - point["ci95"][0] for point in curve]
        hi = [point["ci95"][1] - point["success"] for point in curve]
        ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=2, label=key, alpha=0.85)
    ax.set_xlabel("expert labels (demonstration steps + labels given in rounds)")
    ax.set_ylabel("success on unseen mazes (95% CI)")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{results['experiment']} (seed {results['seed']}): success vs expert labels")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _report(results: dict[str, Any], plots: list[str]) -> str:
    config = results["config"]
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        f"Every interactive method starts from the same {results['demo_labels']} demonstration steps and may spend",
        f"{config['label_budget']} more expert labels in {config['rounds']} rounds; `bc` trains on as many",
        "demonstration steps. `hg_dagger_subopt`: an intervener whose actions are wrong with probability",
        f"{config['subopt_noise']} and who reacts {config['subopt_delay']} step(s) late. `sirius_uniform`: Sirius's",
        "rounds with every sample weight 1. Intervals: cluster bootstrap over mazes (see `clonekit.evaluation.stats`).",
        "",
        "| policy | test (unseen) success | train success | expert labels |",
        "|---|---|---|---|",
    ]
    for name, splits in results["metrics"].items():
        labels = int(splits["test"]["expert_labels"]["mean"])
        lines.append(
            f"| {name} | {format_metric(splits['test']['success'])} | {format_metric(splits['train']['success'])} "
            f"| {labels} |"
        )
    lines += report_tail(results, plots)
    return "\n".join(lines)


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


__all__ = ["FULL", "NAME", "QUICK", "MazeInteractiveConfig", "interactive_methods", "run", "success_table"]
