"""Training seeds as the unit of a claim: ``clonekit run NAME --seeds 0-4``.

One training run says little about a method: another seed can move a success rate by 0.1. This runs an
experiment once per seed (each into ``OUT/seed_S``, resumable as any run) and writes one aggregate
``OUT/results.json``: per (policy, split, metric) the mean and the interquartile mean (IQM) over the runs,
each with a 95% interval from a stratified bootstrap (runs resampled within each task, as rliable does, see
:func:`clonekit.evaluation.stats.stratified_bootstrap`). The tasks of a split are its per-task breakdowns
``SPLIT:TASK`` where the experiment reports them (e.g. ``metaworld-mt``); otherwise the split is one task
and the interval is a bootstrap over seeds. Each seed draws its own tasks (its own unseen mazes), so the
interval covers the choice of tasks as well as the training noise. Per-seed values stay beside it
(``per_seed``), and each seed's own ``results.json`` stays in its folder.

With few seeds a bootstrap interval is itself uncertain (5 seeds give at most 5 distinct values to
resample); the number of seeds is recorded next to every interval (``n_seeds``). When every seed scores
exactly 0 or 1 (e.g. every episode of every seed succeeds), resampling seeds has no spread: the interval
is then the Wilson interval over the tasks of all seeds (``method="wilson_over_tasks_of_all_seeds"``),
never a zero-width one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clonekit import __version__
from clonekit.distributed import init_ray, ordered_map
from clonekit.errors import ConfigError
from clonekit.evaluation.plots import _pyplot, save_figure
from clonekit.evaluation.stats import (
    format_metric,
    interquartile_mean,
    rowwise_iqm,
    rowwise_mean,
    stratified_bootstrap,
    wilson_interval,
)
from clonekit.io import atomic_write_json, atomic_write_text

METHOD = "stratified_bootstrap_over_seeds"


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` -> ``[0, 1, 2, 3, 4]``; ``"0,3,7"`` and mixes (``"0-2,9"``) work too; at least 2 seeds."""
    seeds: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None:
            raise ConfigError(f"--seeds: expected seeds like '0-4' or '0,3,7', got {text!r}")
        first, last = int(match[1]), int(match[2] or match[1])
        if last < first:
            raise ConfigError(f"--seeds: range {part.strip()!r} ends before it starts")
        seeds.extend(range(first, last + 1))
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: seed listed twice in {text!r}")
    if len(seeds) < 2:
        raise ConfigError(f"--seeds: expected at least 2 seeds (use --seed for one), got {text!r}")
    return seeds


def _seed_task(run: Callable[..., dict[str, Any]], out: str, seed: int, quick: bool, config: Any) -> dict[str, Any]:
    """One seed's experiment as a Ray task (one CPU, one torch thread)."""
    torch.set_num_threads(1)
    return run(Path(out), seed, quick, show_progress=False, log=lambda message: None, config=config)


def run_seeds(
    spec: Any,
    out: Path,
    seeds: list[int],
    quick: bool,
    config: Any = None,
    show_progress: bool = True,
    log: Callable[[str], None] = print,
    ray: bool = False,
    ray_address: str | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Run experiment ``spec`` (an :class:`~clonekit.experiments.ExperimentSpec`) once per seed and aggregate.

    Writes ``out/seed_S/`` per seed and the aggregate ``out/results.json``, ``out/report.md`` and
    ``out/seeds.png``; returns the aggregate. With ``ray=True`` each seed is a Ray task (at most
    ``workers`` at a time, one torch thread each); ``out`` must be visible to every Ray node.
    """
    config = config if config is not None else (spec.quick if quick else spec.full)
    out.mkdir(parents=True, exist_ok=True)
    if ray:
        init_ray(ray_address, workers)
        calls = [(spec.run, str((out / f"seed_{s}").resolve()), s, quick, config) for s in seeds]
        runs = list(ordered_map(_seed_task, calls, workers))
    else:
        runs = []
        for s in seeds:
            log(f"seed {s}")
            runs.append(spec.run(out / f"seed_{s}", s, quick, show_progress=show_progress, log=log, config=config))
    results = aggregate_results(runs, seeds)
    atomic_write_json(out / "results.json", results)
    plots = ["seeds.png"] if plot_seeds(results, out / "seeds.png") else []
    atomic_write_text(out / "report.md", seeds_report(results, plots))
    return results


def aggregate_results(runs: list[dict[str, Any]], seeds: list[int], seed: int = 0) -> dict[str, Any]:
    """The aggregate of per-seed ``results.json`` dicts ``runs`` (same experiment and settings)."""
    first = runs[0]
    for run, s in zip(runs, seeds, strict=True):
        if run["experiment"] != first["experiment"] or run["seed"] != s:
            raise ConfigError(f"--seeds: results of seed {s} belong to {run['experiment']} seed {run['seed']}")
    metrics: dict[str, dict[str, dict[str, Any]]] = {}
    for policy, splits in first["metrics"].items():
        metrics[policy] = {}
        for split, split_metrics in splits.items():
            if ":" in split:
                continue  # per-task breakdowns are the strata of their split, aggregated below
            metrics[policy][split] = {}
            for name, metric in split_metrics.items():
                if not isinstance(metric, dict) or "mean" not in metric:
                    continue
                task_splits = sorted(s for s in splits if s.startswith(f"{split}:") and name in splits[s])
                columns = task_splits or [split]
                scores = np.array([[run["metrics"][policy][c][name]["mean"] for c in columns] for run in runs])
                metrics[policy][split][name] = _aggregate(scores, runs, policy, split, name, seed)
                for task_split in task_splits:
                    metrics[policy].setdefault(task_split, {})[name] = _aggregate(
                        scores[:, [columns.index(task_split)]], runs, policy, task_split, name, seed
                    )
    return {
        "experiment": first["experiment"],
        "clonekit_version": __version__,
        "seed": seeds[0],
        "seeds": seeds,
        "quick": first["quick"],
        "metrics": metrics,
        "config": first["config"],
        "aggregation": {
            "method": METHOD,
            "statistics": ["mean", "iqm"],
            "unit": "training seed; resampled within each task (SPLIT:TASK) where the experiment has tasks",
            "per_seed_results": [f"seed_{s}/results.json" for s in seeds],
        },
    }


def _aggregate(
    scores: np.ndarray, runs: list[dict[str, Any]], policy: str, split: str, name: str, seed: int
) -> dict[str, Any]:
    """``scores`` ``(runs, tasks)`` of one metric -> mean, IQM, their intervals, counts and the per-seed values."""
    finite = scores[np.all(np.isfinite(scores), axis=1)]  # a seed with no value (e.g. no success) is left out
    if finite.size == 0:
        nan = float("nan")
        return {"mean": nan, "ci95": [nan, nan], "n": 0, "n_seeds": 0, "n_tasks": scores.shape[1], "method": METHOD}
    cells = [run["metrics"][policy][split][name] for run in runs]
    value = float(finite.flat[0])
    if np.all(finite == value) and value in (0.0, 1.0) and all("n_tasks" in c for c in cells):
        # Every seed at 0 or 1: resampling seeds has no spread; the unit is then the tasks of all seeds.
        tasks = sum(int(c["n_tasks"]) for c in cells)
        ci, method = list(wilson_interval(tasks if value else 0, tasks)), "wilson_over_tasks_of_all_seeds"
        iqm_ci = ci
    else:
        ci, method = list(stratified_bootstrap(finite, rowwise_mean, seed)), METHOD
        iqm_ci = list(stratified_bootstrap(finite, rowwise_iqm, seed))
    return {
        "mean": float(finite.mean()),
        "ci95": ci,
        "iqm": interquartile_mean(finite),
        "iqm_ci95": iqm_ci,
        "n": int(sum(c.get("n", 0) for c in cells)),
        "n_seeds": len(finite),
        "n_tasks": int(scores.shape[1]),
        "method": method,
        "per_seed": [float(v) for v in scores.mean(axis=1)],
    }


def seeds_report(results: dict[str, Any], plots: list[str]) -> str:
    """``report.md`` of an aggregate: one table per split of every metric (mean and IQM with intervals)."""
    seeds = results["seeds"]
    lines = [
        f"# {results['experiment']} over {len(seeds)} training seeds ({', '.join(map(str, seeds))})"
        + (" (quick)" if results["quick"] else ""),
        "",
        "Each cell: the mean over training seeds [95% stratified bootstrap interval over seeds, within tasks],",
        "then the IQM with its interval. `n` counts episodes over all seeds. Per-seed results are in",
        "`seed_S/results.json`.",
    ]
    splits = list(dict.fromkeys(s for m in results["metrics"].values() for s in m))
    for split in splits:
        names = list(dict.fromkeys(n for m in results["metrics"].values() for n in m.get(split, {})))
        lines += ["", f"## {split}", "", "| policy | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for policy, policy_metrics in results["metrics"].items():
            cells = []
            for name in names:
                m = policy_metrics.get(split, {}).get(name)
                if m is None or m["n_seeds"] == 0:
                    cells.append("")
                    continue
                lo, hi = m["iqm_ci95"]
                cells.append(f"{format_metric(m)}; IQM {m['iqm']:.2f} [{lo:.2f}, {hi:.2f}]")
            lines.append(f"| {policy} | " + " | ".join(cells) + " |")
    lines += ["", *[f"![{p}]({p})" for p in plots], "", "Settings (every seed):", "", "```json"]
    lines += [json.dumps(results["config"], indent=2), "```", ""]
    return "\n".join(lines)


def plot_seeds(results: dict[str, Any], path: Path, metric: str = "success") -> bool:
    """Per policy and split (no per-task splits): each seed's ``metric`` as a dot, the mean as a bar with its
    interval; False without matplotlib or without the metric."""
    plt = _pyplot()
    if plt is None:
        return False
    names = [p for p, splits in results["metrics"].items() if any(metric in m for m in splits.values())]
    splits = [s for s in dict.fromkeys(s for p in names for s in results["metrics"][p]) if ":" not in s]
    if not names or not splits:
        return False
    fig, ax = plt.subplots(figsize=(1.5 * len(names) + 2, 3.8))
    width = 0.8 / len(splits)
    for j, split in enumerate(splits):
        for i, name in enumerate(names):
            m = results["metrics"][name].get(split, {}).get(metric)
            if m is None or m["n_seeds"] == 0:
                continue
            x = i + (j - (len(splits) - 1) / 2) * width
            lo, hi = m["ci95"]
            ax.bar(x, m["mean"], width, color=f"C{j}", alpha=0.45, label=split if i == 0 else None)
            ax.errorbar(x, m["mean"], yerr=[[m["mean"] - lo], [hi - m["mean"]]], color="black", capsize=3)
            ax.scatter(np.full(len(m["per_seed"]), x), m["per_seed"], color=f"C{j}", s=12, zorder=3)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel(metric)
    ax.set_title(f"{results['experiment']}: {len(results['seeds'])} training seeds (dots), mean and 95% interval")
    ax.legend()
    save_figure(fig, path)
    return True
