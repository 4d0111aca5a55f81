"""Experiment ``maze-cognitive``: does priming with cognitive behaviours (verification, backtracking) change a
subsequent self-improvement loop? Thought cloning on mazes, primed with or without them, then STaR rounds.

Both arms start from the same ``demo_episodes`` episodes of the ``dfs-thoughts`` maze expert
(:mod:`clonekit.experts.maze_strategies`: depth-first search that checks before committing at a junction,
"check left not visited", "check goal ahead", announces dead ends, "dead end go back", and returns along its
path, "backtrack up"), on the first of ``train_mazes`` training mazes from random start cells:

* ``primed``: the expert's own thoughts, cognitive behaviours included.
* ``plain``: the same episodes (same mazes, starts and actions, step for step) with every thought replaced by
  the plain move it announces, "move DIR" (DIR the step's action). Only the cognitive content differs: a
  clean ablation of the thoughts, not of the behaviour shown.

Per arm, thought cloning trained on its demonstrations is ``ARM_round_0``; then ``rounds`` rounds of
:mod:`clonekit.quality.improve` (STaR): the current policy tries every training maze ``attempts`` times,
thoughts decoded greedily and actions sampled at ``temperature``, each step's own thought recorded; its
successful attempts (loops kept: cutting them would cut the backtracking out) join the data with the thoughts
that produced them, and thought cloning is retrained from scratch (``ARM_round_r``). No expert label is used
after the demonstrations.

Every policy is evaluated greedily on ``test_mazes`` unseen mazes (``test``) and on the training mazes
(``train``, new start cells). Metrics: ``success``, ``backtrack_thoughts`` (the share of episodes with at
least one thought that announces a dead end or a step back: "dead end", "backtrack", "go back"; 0 for the
``plain`` arm, whose thoughts cannot say it) and ``length``; 95% intervals are a cluster bootstrap over mazes.
Per round, the share of kept attempts whose thoughts show backtracking is recorded too. Every stage is
resumable (``OUT/data``, ``OUT/runs/ARM/round_0``, ``OUT/runs/ARM/star``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clonekit.checkpoint import load_policy
from clonekit.config import check
from clonekit.data import Dataset, DatasetWriter
from clonekit.data.formats.source import python_scalar
from clonekit.envs import get_env_family
from clonekit.envs.maze import ACTION_NAMES
from clonekit.errors import DatasetError
from clonekit.evaluation import split_tasks
from clonekit.evaluation.plots import _pyplot, save_figure
from clonekit.evaluation.stats import format_metric, summarize
from clonekit.evaluation.thoughts import thought_rollout
from clonekit.experiments.common import collected_once, report_tail, results_head, torch_threads
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.quality.improve import KEEP, ImproveConfig, improve
from clonekit.train import TrainConfig, train

NAME = "maze-cognitive"
ARMS = ("primed", "plain")
SPLITS = ("test", "train")
# Words by which a thought announces a dead end or a step back along the visited path.
BACKTRACK_PHRASES = ("dead end", "backtrack", "go back")


@dataclass(frozen=True)
class MazeCognitiveConfig:
    """Settings of ``maze-cognitive``.

    Args:
        size: Maze side (9: 7x7 inside the outer wall; the env cuts an episode after ``size**2 // 2`` steps).
        loop_fraction: Loop fraction of every maze (0: perfect mazes, one route, every wrong turn a dead end).
        train_mazes: Training mazes: the self-improvement rounds try every one of them.
        demo_episodes: dfs-thoughts demonstrations (episode ``k`` on maze ``k % train_mazes``, random start).
        test_mazes: Unseen mazes of the ``test`` split.
        rounds: Self-improvement rounds per arm (policy keys ``ARM_round_0`` .. ``ARM_round_R``).
        attempts: Attempts per training maze and round.
        keep: ``success`` or ``best`` (see :mod:`clonekit.quality.improve`).
        temperature: Sampling temperature of the attempts' actions (thoughts are decoded greedily).
        demo_steps: Gradient steps of ``round_0`` (thought cloning on the demonstrations).
        round_steps: Gradient steps of every later round (from scratch on everything so far).
        batch_size: Episodes per gradient step.
        window: Steps per training episode sample (at least the episode limit, so whole episodes fit).
        hidden_size: LSTM and feature width.
        lr: Adam learning rate.
        eval_episodes: Evaluation episodes per policy and split.
        threads: torch intra-op threads for the run (recorded: results depend on it).
    """

    size: int = 9
    loop_fraction: float = 0.0
    train_mazes: int = 200
    demo_episodes: int = 100
    test_mazes: int = 200
    rounds: int = 2
    attempts: int = 4
    keep: str = "success"
    temperature: float = 1.0
    demo_steps: int = 800
    round_steps: int = 1000
    batch_size: int = 16
    window: int = 40
    hidden_size: int = 64
    lr: float = 1e-3
    eval_episodes: int = 400
    threads: int = 1

    def __post_init__(self) -> None:
        check(self.size >= 5, "size", ">= 5", self.size)
        check(0 <= self.loop_fraction <= 1, "loop_fraction", "in [0, 1]", self.loop_fraction)
        for name in ("train_mazes", "demo_episodes", "test_mazes", "rounds", "attempts", "demo_steps"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        for name in ("round_steps", "batch_size", "window", "hidden_size", "eval_episodes", "threads"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check(self.keep in KEEP, "keep", f"one of {list(KEEP)}", self.keep)
        check(self.temperature >= 0, "temperature", ">= 0", self.temperature)
        check(self.lr > 0, "lr", "> 0", self.lr)


FULL = MazeCognitiveConfig()
QUICK = replace(
    FULL,
    size=7,
    train_mazes=40,
    demo_episodes=20,
    test_mazes=40,
    rounds=2,
    attempts=2,
    demo_steps=150,
    round_steps=150,
    batch_size=16,
    window=24,
    hidden_size=32,
    eval_episodes=80,
)


def shows_backtracking(thoughts: list[str]) -> bool:
    """True when any thought announces a dead end or a step back (:data:`BACKTRACK_PHRASES`)."""
    return any(phrase in thought for thought in thoughts for phrase in BACKTRACK_PHRASES)


def plain_thoughts(primed: Dataset, path: Path) -> Dataset:
    """``primed`` with every thought replaced by "move DIR", DIR the step's action (every other stream and the
    episode info copied); an existing ``path`` written from the same data is opened as it is."""
    if path.exists():
        plain = Dataset.open(path)
        if plain.extra.get("plain_thoughts", {}).get("source_fingerprint") != primed.fingerprint:
            raise DatasetError(f"{path}: exists but was written from other demonstrations; use a fresh --out")
        return plain
    info_names = list(primed.meta.get("episode_info", []))
    extra = {**primed.extra, "plain_thoughts": {"source": str(primed.path), "source_fingerprint": primed.fingerprint}}
    writer = DatasetWriter(
        path, list(primed.streams.values()), spaces=primed.spaces, env=primed.env, episode_info=info_names, extra=extra
    )
    with writer:
        for k in range(primed.num_episodes):
            episode = dict(primed.episode(k))
            episode["thought"] = [f"move {ACTION_NAMES[int(a)]}" for a in np.asarray(episode["action"])]
            info = {n: python_scalar(f"{primed.path}: episode {k}", primed.episode_info(n)[k]) for n in info_names}
            writer.add_episode(episode, info)
        return writer.close()


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: MazeCognitiveConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``)."""
    config = config or (QUICK if quick else FULL)
    with torch_threads(config.threads):
        return _run(out, seed, quick, show_progress, log, config)


def _run(
    out: Path, seed: int, quick: bool, show_progress: bool, log: Any, config: MazeCognitiveConfig
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    env_kwargs = {"size": config.size, "loop_fraction": config.loop_fraction}
    data = {"primed": _demonstrations(out / "data" / "primed", config, seed, env_kwargs)}
    data["plain"] = plain_thoughts(data["primed"], out / "data" / "plain")
    demos = data["primed"]
    demo_backtracking = _backtracking_share(demos, range(demos.num_episodes))
    log(
        f"demonstrations: {demos.num_episodes} episodes, {demos.num_steps} steps on {config.train_mazes} mazes; "
        f"{demo_backtracking:.2f} of them backtrack"
    )
    family = get_env_family("maze")
    tasks = {split: split_tasks(demos.env, split, seed, config.test_mazes) for split in SPLITS}
    metrics: dict[str, dict[str, Any]] = {}
    rounds: dict[str, list[dict[str, Any]]] = {}
    for arm in ARMS:
        runs = out / "runs" / arm
        train(
            "thought_cloning",
            data[arm],
            runs / "round_0",
            TrainConfig(
                steps=config.demo_steps,
                batch_size=config.batch_size,
                lr=config.lr,
                seed=seed,
                checkpoint_every=max(config.demo_steps // 2, 1),
                keep_checkpoints=1,
                tensorboard=False,
                val_fraction=0.0,
            ),
            {"hidden_size": config.hidden_size, "window": config.window},
            resume=True,
            same_settings=True,
            show_progress=show_progress,
        )
        improve_config = ImproveConfig(
            attempts=config.attempts,
            keep=config.keep,
            temperature=config.temperature,
            cut_loops=False,
            train_steps=config.round_steps,
        )
        star = improve(
            runs / "round_0",
            runs / "star",
            config.rounds,
            seed,
            improve_config,
            show_progress=show_progress,
            log=_prefixed(log, f"  {arm} "),
        )
        rounds[arm] = _round_stats(star.dataset, star.rounds)
        for r in range(config.rounds + 1):
            policy = load_policy(star.policy_dir(r))
            key = f"{arm}_round_{r}"
            metrics[key] = {
                split: _evaluate(policy, family, tasks[split], config.eval_episodes, seed, env_kwargs)
                for split in SPLITS
            }
            cell = metrics[key]["test"]
            log(
                f"  {key}: test success {format_metric(cell['success'])}, backtracking thoughts "
                f"{format_metric(cell['backtrack_thoughts'])}; train success "
                f"{format_metric(metrics[key]['train']['success'])}"
            )
    results = {
        **results_head(NAME, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
        "rounds": rounds,
        "demonstrations": {
            "episodes": demos.num_episodes,
            "steps": demos.num_steps,
            "backtracking_share": demo_backtracking,
        },
    }
    atomic_write_json(out / "results.json", results)
    plots = ["rounds.png"] if _plot(results, out / "rounds.png") else []
    atomic_write_text(out / "report.md", _report(results, plots))
    return results


def _prefixed(log: Any, prefix: str) -> Callable[[str], None]:
    """``log`` with ``prefix`` before every line."""
    return lambda line: log(prefix + line)


def _demonstrations(path: Path, config: MazeCognitiveConfig, seed: int, env_kwargs: dict[str, Any]) -> Dataset:
    """The dfs-thoughts demonstrations (collected once; a rerun checks they fit the settings)."""
    return collected_once(
        path,
        "maze",
        "dfs-thoughts",
        seed=seed,
        episodes=config.demo_episodes,
        num_tasks=config.train_mazes,
        env_kwargs=env_kwargs,
        show_progress=False,
    )


def _backtracking_share(dataset: Dataset, episodes: Any) -> float:
    """The share of ``episodes`` (indices into ``dataset``) whose thoughts show backtracking (0 for none)."""
    chosen = list(episodes)
    if not chosen:
        return 0.0
    return sum(shows_backtracking(list(dataset.episode(k)["thought"])) for k in chosen) / len(chosen)


def _round_stats(dataset: Dataset, stats: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The run's per-round counts, each with the share of its kept attempts whose thoughts show backtracking."""
    marks = [dataset.column("source")[int(s)] for s in dataset.episode_starts]
    rows = []
    for row in stats:
        kept = [k for k, mark in enumerate(marks) if mark == f"self:{row['round']}"]
        rows.append({**row, "kept_backtracking_share": _backtracking_share(dataset, kept)})
    return rows


def _evaluate(
    policy: Any, family: Any, tasks: list[Any], episodes: int, seed: int, env_kwargs: dict[str, Any]
) -> dict[str, Any]:
    """Greedy episodes of ``policy``: ``success`` and ``length`` (as ``clonekit eval``) and ``backtrack_thoughts``."""
    played = thought_rollout(policy, family, tasks, episodes, seed, env_kwargs)
    results = played.results
    shows = np.array([shows_backtracking(t) for t in played.thoughts], dtype=float)
    cells = results.metrics(seed)
    return {
        "success": cells["success"],
        "backtrack_thoughts": summarize(shows, seed, groups=results.task_index),
        "length": cells["length"],
    }


def _plot(results: dict[str, Any], path: Path) -> bool:
    plt = _pyplot()
    if plt is None:
        return False
    rounds = list(range(results["config"]["rounds"] + 1))
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.0))
    for ax, metric, label in (
        (axes[0], "success", "test success (unseen mazes)"),
        (axes[1], "backtrack_thoughts", "test: backtracking thoughts"),
    ):
        for arm, style in zip(ARMS, ("o-", "s--"), strict=True):
            cells = [results["metrics"][f"{arm}_round_{r}"]["test"][metric] for r in rounds]
            means = [c["mean"] for c in cells]
            low = [c["mean"] - c["ci95"][0] for c in cells]
            high = [c["ci95"][1] - c["mean"] for c in cells]
            ax.errorbar(rounds, means, yerr=[low, high], fmt=style, capsize=3, label=arm)
        ax.set_xticks(rounds, [f"round_{r}" for r in rounds])
        ax.set_xlabel("self-improvement round (round_0: TC on the demonstrations)")
        ax.set_ylabel(f"{label} (95% CI)")
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{results['experiment']} (seed {results['seed']}): primed with cognitive thoughts vs plain moves")
    save_figure(fig, path)
    return True


def _report(results: dict[str, Any], plots: list[str]) -> str:
    c = results["config"]
    demos = results["demonstrations"]
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        f"Thought cloning on {c['size']}x{c['size']} mazes (loop fraction {c['loop_fraction']}), primed on "
        f"{demos['episodes']} dfs-thoughts demonstrations ({demos['steps']} steps, {demos['backtracking_share']:.2f} "
        "of them backtrack). `primed`: the expert's thoughts (checks, dead ends, backtracking); `plain`: the same "
        "episodes with every thought replaced by 'move DIR'. Then per arm "
        f"{c['rounds']} STaR rounds: {c['attempts']} attempts per training maze (greedy thoughts, actions sampled "
        f"at temperature {c['temperature']}), successes kept with their own thoughts, TC retrained from scratch. "
        "Greedy evaluation; 95% intervals are a cluster bootstrap over mazes.",
        "",
        "| policy | test success | test backtracking thoughts | train success | test length |",
        "|---|---|---|---|---|",
    ]
    for name, splits in results["metrics"].items():
        test = splits["test"]
        lines.append(
            f"| {name} | {format_metric(test['success'])} | {format_metric(test['backtrack_thoughts'])} "
            f"| {format_metric(splits['train']['success'])} | {format_metric(test['length'], 1)} |"
        )
    lines += [
        "",
        "Attempts per round (actions sampled, on the training mazes):",
        "",
        "| arm | round | attempts | successes | kept steps | kept attempts that backtrack |",
        "|---|---|---|---|---|---|",
    ]
    for arm, stats in results["rounds"].items():
        for row in stats:
            lines.append(
                f"| {arm} | {row['round']} | {row['attempts']} | {row['successes']} | {row['kept_steps']} "
                f"| {row['kept_backtracking_share']:.2f} |"
            )
    lines += report_tail(results, plots)
    return "\n".join(lines)


def success_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(policy, test success, test backtracking thoughts, train success)``."""
    return [
        (
            name,
            format_metric(splits["test"]["success"]),
            format_metric(splits["test"]["backtrack_thoughts"]),
            format_metric(splits["train"]["success"]),
        )
        for name, splits in results["metrics"].items()
    ]


__all__ = [
    "ARMS",
    "FULL",
    "NAME",
    "QUICK",
    "MazeCognitiveConfig",
    "plain_thoughts",
    "run",
    "shows_backtracking",
    "success_table",
]
