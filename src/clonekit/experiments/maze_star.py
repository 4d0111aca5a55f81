"""Experiment ``maze-star``: self-improvement (STaR / OREAL) lifts a behaviour-cloning policy trained on a few
maze demonstrations, on its training mazes and on unseen ones.

``demo_episodes`` BFS-expert demonstrations are collected on the first of ``train_mazes`` mazes (episode
``k`` plays maze ``k % train_mazes``, so with fewer demonstrations than mazes most training mazes have none:
STaR's setting of many problems and a few worked solutions). BC trained on them is ``round_0``. Then
``rounds`` rounds of :mod:`clonekit.quality.improve`: the current policy tries every training maze
``attempts`` times from random start cells with actions sampled at ``temperature``, its successful attempts
(loops cut when ``cut_loops``) join the data, and BC is retrained from scratch (``round_r``). No expert
label is used after the demonstrations.

Every round's policy is evaluated (greedy, as ``clonekit eval`` does) on the training mazes (``train``, new
start cells) and on ``test_mazes`` unseen mazes (``test``); metric ``success``, 95% intervals clustered by
maze. The plot shows success per round on both splits. Every stage is resumable (``OUT/data``,
``OUT/runs/round_0``, ``OUT/runs/star``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from clonekit.checkpoint import load_policy
from clonekit.config import check
from clonekit.data import Dataset
from clonekit.envs import get_env_family
from clonekit.evaluation import rollout, split_tasks
from clonekit.evaluation.plots import _pyplot, save_figure
from clonekit.evaluation.stats import format_metric
from clonekit.experiments.common import collected_once, report_tail, results_head
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.quality.improve import KEEP, ImproveConfig, improve
from clonekit.train import TrainConfig, train

NAME = "maze-star"
SPLITS = ("test", "train")


@dataclass(frozen=True)
class MazeStarConfig:
    """Settings of ``maze-star``.

    Args:
        maze_size: Side of the square mazes.
        train_mazes: Training mazes: the self-improvement rounds try every one of them.
        demo_episodes: Expert demonstrations (on the first ``min(demo_episodes, train_mazes)`` mazes).
        test_mazes: Unseen mazes of the ``test`` split.
        rounds: Self-improvement rounds (policy keys ``round_0`` .. ``round_R``).
        attempts: Attempts per training maze and round.
        keep: ``success`` or ``best`` (see :mod:`clonekit.quality.improve`).
        temperature: Sampling temperature of the attempts.
        cut_loops: Cut loops out of the kept attempts.
        bc_steps: Gradient steps of ``round_0`` (BC on the demonstrations).
        round_steps: Gradient steps of every later round (BC from scratch on everything so far).
        hidden_sizes: BC's MLP widths after its conv layers.
        batch_size: Transitions per gradient step.
        lr: Adam learning rate.
        eval_episodes: Evaluation episodes per policy and split.
    """

    maze_size: int = 9
    train_mazes: int = 200
    demo_episodes: int = 40
    test_mazes: int = 200
    rounds: int = 3
    attempts: int = 16
    keep: str = "success"
    temperature: float = 1.0
    cut_loops: bool = True
    bc_steps: int = 1000
    round_steps: int = 2000
    hidden_sizes: tuple[int, ...] = (128,)
    batch_size: int = 128
    lr: float = 1e-3
    eval_episodes: int = 800

    def __post_init__(self) -> None:
        check(self.maze_size >= 5, "maze_size", ">= 5", self.maze_size)
        for name in ("train_mazes", "demo_episodes", "test_mazes", "rounds", "attempts", "bc_steps", "round_steps"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check(self.keep in KEEP, "keep", f"one of {list(KEEP)}", self.keep)
        check(self.temperature >= 0, "temperature", ">= 0", self.temperature)
        check(len(self.hidden_sizes) >= 1, "hidden_sizes", "at least one width", self.hidden_sizes)
        check(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
        check(self.lr > 0, "lr", "> 0", self.lr)
        check(self.eval_episodes >= 1, "eval_episodes", ">= 1", self.eval_episodes)


FULL = MazeStarConfig()
QUICK = replace(
    FULL,
    maze_size=7,
    train_mazes=40,
    demo_episodes=10,
    test_mazes=40,
    rounds=3,
    attempts=4,
    bc_steps=200,
    round_steps=300,
    hidden_sizes=(64,),
    batch_size=64,
    eval_episodes=120,
)


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: MazeStarConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``)."""
    config = config or (QUICK if quick else FULL)
    out.mkdir(parents=True, exist_ok=True)
    demos = _demonstrations(out, config, seed)
    log(f"demonstrations: {demos.num_episodes} episodes, {demos.num_steps} steps on {config.train_mazes} mazes")
    train(
        "bc",
        demos,
        out / "runs" / "round_0",
        TrainConfig(
            steps=config.bc_steps,
            batch_size=config.batch_size,
            lr=config.lr,
            seed=seed,
            checkpoint_every=max(config.bc_steps // 2, 1),
            keep_checkpoints=1,
            tensorboard=False,
            val_fraction=0.0,
        ),
        policy_overrides={"hidden_sizes": list(config.hidden_sizes)},
        resume=True,
        same_settings=True,
        show_progress=show_progress,
    )
    improve_config = ImproveConfig(
        attempts=config.attempts,
        keep=config.keep,
        temperature=config.temperature,
        cut_loops=config.cut_loops,
        train_steps=config.round_steps,
    )
    star = improve(
        out / "runs" / "round_0",
        out / "runs" / "star",
        config.rounds,
        seed,
        improve_config,
        show_progress=show_progress,
        log=lambda line: log(f"  {line}"),
    )
    family = get_env_family("maze")
    env_kwargs = dict(demos.env["kwargs"])
    tasks = {split: split_tasks(demos.env, split, seed, config.test_mazes) for split in SPLITS}
    metrics: dict[str, dict[str, Any]] = {}
    for r in range(config.rounds + 1):
        policy = load_policy(star.policy_dir(r))
        key = f"round_{r}"
        metrics[key] = {
            split: rollout(policy, family, tasks[split], config.eval_episodes, seed, env_kwargs).metrics(seed)
            for split in SPLITS
        }
        log(
            f"  {key}: test success {format_metric(metrics[key]['test']['success'])}, "
            f"train {format_metric(metrics[key]['train']['success'])}"
        )
    results = {
        **results_head(NAME, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
        "rounds": star.rounds,
        "demonstrations": {"episodes": demos.num_episodes, "steps": demos.num_steps},
    }
    atomic_write_json(out / "results.json", results)
    plots = ["success_per_round.png"] if _plot(results, out / "success_per_round.png") else []
    atomic_write_text(out / "report.md", _report(results, plots))
    return results


def _demonstrations(out: Path, config: MazeStarConfig, seed: int) -> Dataset:
    """The expert demonstrations (collected once; a rerun checks they fit the settings)."""
    path = out / "data" / "demos"
    return collected_once(
        path,
        "maze",
        "bfs",
        seed=seed,
        episodes=config.demo_episodes,
        num_tasks=config.train_mazes,
        env_kwargs={"size": config.maze_size},
        show_progress=False,
    )


def _plot(results: dict[str, Any], path: Path) -> bool:
    plt = _pyplot()
    if plt is None:
        return False
    rounds = list(range(len(results["metrics"])))
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for split, label, style in (("test", "test (unseen mazes)", "o-"), ("train", "train (seen mazes)", "s--")):
        cells = [results["metrics"][f"round_{r}"][split]["success"] for r in rounds]
        means = [c["mean"] for c in cells]
        low = [c["mean"] - c["ci95"][0] for c in cells]
        high = [c["ci95"][1] - c["mean"] for c in cells]
        ax.errorbar(rounds, means, yerr=[low, high], fmt=style, capsize=3, label=label)
    ax.set_xticks(rounds, [f"round_{r}" for r in rounds])
    ax.set_xlabel("self-improvement round (round_0: BC on the demonstrations)")
    ax.set_ylabel("success (95% CI, clustered by maze)")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{results['experiment']} (seed {results['seed']}): success per round")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)
    return True


def _report(results: dict[str, Any], plots: list[str]) -> str:
    config = results["config"]
    demos = results["demonstrations"]
    with_demos = min(demos["episodes"], config["train_mazes"])
    kept = "successful attempts" if config["keep"] == "success" else "best successful attempt per maze"
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        f"`round_0` is BC on {demos['episodes']} expert demonstrations ({demos['steps']} steps) on {with_demos} of the",
        f"{config['train_mazes']} training mazes ({config['maze_size']}x{config['maze_size']}); the others have none.",
        f"Each later round, the previous round's policy tries every training maze {config['attempts']} times from",
        f"random start cells (actions sampled at temperature {config['temperature']}), its {kept} are kept",
        f"({'loops cut, ' if config['cut_loops'] else ''}see `clonekit.quality.improve`), and BC is retrained from",
        "scratch on the demonstrations plus everything kept so far. No expert label is used after the",
        "demonstrations. Success: the greedy policy from new start cells; 95% intervals are a cluster bootstrap",
        "over mazes. `n=E/M tasks`: E episodes on M mazes.",
        "",
        "| policy | test (unseen) success | train success | mean length (test) |",
        "|---|---|---|---|",
    ]
    for name, splits in results["metrics"].items():
        lines.append(
            f"| {name} | {format_metric(splits['test']['success'])} | {format_metric(splits['train']['success'])} "
            f"| {format_metric(splits['test']['length'], 1)} |"
        )
    lines += [
        "",
        "Attempts per round (sampled actions, on the training mazes):",
        "",
        "| round | attempts | successes | kept episodes | kept steps |",
        "|---|---|---|---|---|",
    ]
    for stats in results["rounds"]:
        lines.append(
            f"| {stats['round']} | {stats['attempts']} | {stats['successes']} | {stats['kept_episodes']} "
            f"| {stats['kept_steps']} |"
        )
    lines += report_tail(results, plots)
    return "\n".join(lines)


def success_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(policy, test success, train success)``."""
    return [
        (name, format_metric(splits["test"]["success"]), format_metric(splits["train"]["success"]))
        for name, splits in results["metrics"].items()
    ]


__all__ = ["FULL", "NAME", "QUICK", "MazeStarConfig", "run", "success_table"]
