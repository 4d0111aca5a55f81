"""The imitation threshold: how many demonstrations a policy needs to reach a target success
(``clonekit sweep-demos DATA --counts 5,10,20,40 --seeds 3 --target 0.8 --out DIR``).

For every count ``c`` (log-spaced by default) the first ``c`` episodes of the dataset become a training set
(``OUT/data/count_C``: nested sets, each holding the previous one), and a policy is trained on it with each of
``seeds`` training seeds (``OUT/runs/count_C/seed_S``, resumable). Every run is evaluated on the same unseen
tasks of the dataset's ``test`` split (``test_tasks`` tasks drawn from ``seed``, ``eval_episodes`` episodes).

A count's success is the mean over its training seeds with a 95% interval from the stratified bootstrap over
seeds (:func:`clonekit.evaluation.stats.stratified_bootstrap`, as ``clonekit run --seeds`` aggregates). The
**threshold** is the smallest count whose mean success reaches ``target``; the **confident threshold** the
smallest whose interval lies at or above it (both ``None`` when no count does). ``results.json`` holds the
curve and both thresholds, ``report.md`` the table, ``threshold.png`` the curve.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clonekit import __version__
from clonekit.config import check, config_to_json
from clonekit.data import Dataset
from clonekit.envs import get_env_family
from clonekit.errors import ConfigError
from clonekit.evaluation import rollout, split_tasks
from clonekit.evaluation.plots import _pyplot, save_figure
from clonekit.evaluation.stats import format_metric, rowwise_mean, stratified_bootstrap
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.quality.subset import write_subset
from clonekit.train import TrainConfig, train

METHOD = "stratified_bootstrap_over_seeds"


@dataclass(frozen=True)
class SweepConfig:
    """Settings of a threshold sweep.

    Args:
        counts: Numbers of demonstrations to train on, increasing (the first episodes of the dataset).
        seeds: Training seeds per count (0 .. seeds - 1; at least 2, for an interval).
        target: Success to reach, in (0, 1].
        policy: The policy every run trains (``bc``, ``procedure_cloning``, ...).
        train_steps: Gradient steps of every run.
        batch_size: Transitions per gradient step.
        test_tasks: Unseen tasks every run is evaluated on.
        eval_episodes: Evaluation episodes per run.
    """

    counts: tuple[int, ...]
    seeds: int = 3
    target: float = 0.8
    policy: str = "bc"
    train_steps: int = 500
    batch_size: int = 128
    test_tasks: int = 50
    eval_episodes: int = 100

    def __post_init__(self) -> None:
        check(len(self.counts) >= 1, "counts", "at least one count", self.counts)
        check(all(c >= 1 for c in self.counts), "counts", "counts >= 1", self.counts)
        check(all(a < b for a, b in itertools.pairwise(self.counts)), "counts", "increasing", self.counts)
        check(self.seeds >= 2, "seeds", ">= 2 (an interval needs several training seeds)", self.seeds)
        check(0 < self.target <= 1, "target", "a success rate in (0, 1]", self.target)
        for name in ("train_steps", "batch_size", "test_tasks", "eval_episodes"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))


def parse_counts(text: str) -> tuple[int, ...]:
    """``"5,10,20,40"`` -> ``(5, 10, 20, 40)``; positive and increasing."""
    parts = [p.strip() for p in text.split(",")]
    if not parts or not all(re.fullmatch(r"\d+", p) for p in parts):
        raise ConfigError(f"--counts: expected increasing positive integers like '5,10,20,40', got {text!r}")
    counts = tuple(int(p) for p in parts)
    if counts[0] < 1 or any(a >= b for a, b in itertools.pairwise(counts)):
        raise ConfigError(f"--counts: expected increasing positive integers like '5,10,20,40', got {text!r}")
    return counts


def log_counts(num_episodes: int, points: int = 4) -> tuple[int, ...]:
    """``points`` log-spaced counts from about ``num_episodes / 8`` up to ``num_episodes`` (fewer when they
    round to the same number)."""
    low = max(1.0, num_episodes / 8)
    return tuple(sorted({round(float(c)) for c in np.geomspace(low, num_episodes, points)}))


def smallest_count(curve: list[dict[str, Any]], target: float, confident: bool = False) -> dict[str, Any] | None:
    """The first point of ``curve`` (``{"count", "success": cell}``, by increasing count) whose mean success
    (``confident``: the lower end of its interval) reaches ``target``; None when none does."""
    for point in curve:
        cell = point["success"]
        value = cell["ci95"][0] if confident else cell["mean"]
        if np.isfinite(value) and value >= target:
            return point
    return None


def _cell(scores: list[float], n: int, seed: int) -> dict[str, Any]:
    """Mean success over training seeds with its stratified-bootstrap interval (one task: the test split)."""
    table = np.asarray(scores, dtype=np.float64)[:, None]
    lo, hi = stratified_bootstrap(table, rowwise_mean, seed)
    return {
        "mean": float(table.mean()),
        "ci95": [lo, hi],
        "n": n,
        "n_seeds": len(scores),
        "method": METHOD,
        "per_seed": [float(s) for s in scores],
    }


def sweep_demos(
    data: Dataset, out: str | Path, config: SweepConfig, seed: int = 0, show_progress: bool = True, log: Any = print
) -> dict[str, Any]:
    """Run the sweep (see the module docstring) into ``out``; returns the results (also ``out/results.json``)."""
    out = Path(out)
    if config.counts[-1] > data.num_episodes:
        raise ConfigError(f"--counts: {config.counts[-1]} is more than the {data.num_episodes} episodes of {data.path}")
    family = get_env_family(data.env["id"]) if isinstance(data.env, dict) and "id" in data.env else None
    if family is None:
        raise ConfigError(f"{data.path}: the env block names no env id; the sweep evaluates on the env's test tasks")
    env_kwargs = dict(data.env.get("kwargs", {}))
    tasks = split_tasks(data.env, "test", seed, config.test_tasks)
    out.mkdir(parents=True, exist_ok=True)
    curve: list[dict[str, Any]] = []
    for count in config.counts:
        subset = write_subset(data, out / "data" / f"count_{count}", list(range(count)), f"first {count} episodes")
        scores, episodes = [], 0
        for s in range(config.seeds):
            settings = TrainConfig(
                steps=config.train_steps, batch_size=config.batch_size, seed=s, tensorboard=False, val_fraction=0.0
            )
            run_dir = out / "runs" / f"count_{count}" / f"seed_{s}"
            policy = train(config.policy, subset, run_dir, settings, resume=True, show_progress=show_progress)
            played = rollout(policy, family, tasks, config.eval_episodes, seed, env_kwargs)
            scores.append(float(played.success.mean()))
            episodes += len(played.success)
        success = _cell(scores, episodes, seed)
        curve.append({"count": count, "data_steps": subset.num_steps, "success": success})
        log(f"  {count:5d} demonstrations: success {format_metric(success)}")
    results = {
        "study": "sweep-demos",
        "clonekit_version": __version__,
        "data": str(data.path),
        "data_fingerprint": data.fingerprint,
        "seed": seed,
        "config": config_to_json(config),
        "curve": curve,
        "threshold": smallest_count(curve, config.target),
        "confident_threshold": smallest_count(curve, config.target, confident=True),
    }
    atomic_write_json(out / "results.json", results)
    plots = ["threshold.png"] if _plot(results, out / "threshold.png") else []
    atomic_write_text(out / "report.md", _report(results, plots))
    return results


def _plot(results: dict[str, Any], path: Path) -> bool:
    plt = _pyplot()
    if plt is None:
        return False
    curve, target = results["curve"], results["config"]["target"]
    x = [p["count"] for p in curve]
    y = [p["success"]["mean"] for p in curve]
    lo = [p["success"]["mean"] - p["success"]["ci95"][0] for p in curve]
    hi = [p["success"]["ci95"][1] - p["success"]["mean"] for p in curve]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=3, label="mean over training seeds (95% CI)")
    for p in curve:
        ax.scatter([p["count"]] * len(p["success"]["per_seed"]), p["success"]["per_seed"], color="C0", s=10, alpha=0.5)
    ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target}")
    if results["threshold"] is not None:
        ax.axvline(results["threshold"]["count"], color="C1", linestyle=":", label="threshold")
    ax.set_xscale("log")
    ax.set_xticks(x, [str(c) for c in x])
    ax.set_xlabel("demonstrations (episodes)")
    ax.set_ylabel("success on unseen tasks")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"imitation threshold: {Path(results['data']).name}, {results['config']['policy']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)
    return True


def _describe(point: dict[str, Any] | None) -> str:
    if point is None:
        return "not reached"
    return f"{point['count']} demonstrations (success {format_metric(point['success'])})"


def _report(results: dict[str, Any], plots: list[str]) -> str:
    config = results["config"]
    lines = [
        f"# Imitation threshold of {results['data']}",
        "",
        f"`{config['policy']}`, {config['train_steps']} steps, {config['seeds']} training seeds per count; success on "
        f"{config['test_tasks']} unseen tasks ({config['eval_episodes']} episodes a run). Intervals: stratified",
        "bootstrap over training seeds.",
        "",
        f"- threshold (mean success >= {config['target']}): {_describe(results['threshold'])}",
        f"- confident threshold (interval >= {config['target']}): {_describe(results['confident_threshold'])}",
        "",
        "| demonstrations | steps | success | per seed |",
        "|---|---|---|---|",
    ]
    for p in results["curve"]:
        seeds = ", ".join(f"{s:.2f}" for s in p["success"]["per_seed"])
        lines.append(f"| {p['count']} | {p['data_steps']} | {format_metric(p['success'])} | {seeds} |")
    lines += ["", *[f"![{p}]({p})" for p in plots], "", "Settings:", "", "```json", json.dumps(config, indent=2), "```"]
    return "\n".join(lines) + "\n"


__all__ = ["SweepConfig", "log_counts", "parse_counts", "smallest_count", "sweep_demos"]
