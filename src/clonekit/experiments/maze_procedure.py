"""Experiment ``maze-procedure``: procedure cloning generalizes to unseen mazes, behaviour cloning does not.

For each number of training mazes N (5 and 20): collect BFS-expert demonstrations on N mazes, train BC
and procedure cloning (PC) on the same data, and evaluate both on the N training mazes (``train``, new
start cells) and on unseen mazes (``test``). Everything is derived from ``--seed``, including which mazes
are generated, so another seed gives other training and test mazes.

Every stage writes into ``OUT`` and is skipped or resumed when its output is already there, so an
interrupted run continues where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from clonekit.checkpoint import load_policy
from clonekit.config import check
from clonekit.data import Dataset
from clonekit.distributed import init_ray, ordered_map
from clonekit.envs import get_env_family
from clonekit.evaluation import rollout, split_tasks
from clonekit.evaluation.stats import format_metric
from clonekit.experiments.common import collected_once, report_tail, results_head
from clonekit.experiments.maze_plots import plot_maze_procedure
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.policies import Policy
from clonekit.train import TrainConfig, train

NAME = "maze-procedure"


@dataclass(frozen=True)
class MazeProcedureConfig:
    """Settings of ``maze-procedure``.

    Args:
        train_sizes: Numbers of training mazes N; one BC and one PC policy per N (keys ``bc_nN``, ``pc_nN``).
        episodes_per_maze: Expert demonstrations per training maze (random start cells).
        test_mazes: Number of unseen mazes in the ``test`` split.
        eval_episodes: Episodes per (policy, split) cell.
        bc_steps: Gradient steps for BC.
        pc_steps: Gradient steps for procedure cloning.
        batch_size: Transitions per gradient step.
        lr: Adam learning rate.
    """

    train_sizes: tuple[int, ...] = (5, 20)
    episodes_per_maze: int = 20
    test_mazes: int = 50
    eval_episodes: int = 200
    bc_steps: int = 2000
    pc_steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3

    def __post_init__(self) -> None:
        check(
            len(self.train_sizes) >= 1 and min(self.train_sizes) >= 1,
            "train_sizes",
            "sizes >= 1",
            self.train_sizes,
        )
        check(self.episodes_per_maze >= 1, "episodes_per_maze", ">= 1", self.episodes_per_maze)
        check(self.test_mazes >= 1, "test_mazes", ">= 1", self.test_mazes)
        check(self.eval_episodes >= 1, "eval_episodes", ">= 1", self.eval_episodes)
        for name in ("bc_steps", "pc_steps", "batch_size"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check(self.lr > 0, "lr", "> 0", self.lr)


FULL = MazeProcedureConfig()
QUICK = replace(FULL, episodes_per_maze=4, test_mazes=20, eval_episodes=40, bc_steps=200, pc_steps=300, batch_size=64)


@dataclass(frozen=True)
class Cell:
    """One independent unit of the experiment: train ``policy`` on the ``num_mazes``-maze data, evaluate it."""

    num_mazes: int
    key: str  # short name in results: "bc" or "pc"
    policy: str  # policy registry name

    @property
    def name(self) -> str:
        return f"{self.key}_n{self.num_mazes}"


def cells(config: MazeProcedureConfig) -> list[Cell]:
    """The cells of ``config`` in results order (``bc_nN``, ``pc_nN`` for each N)."""
    return [
        Cell(n, key, policy) for n in config.train_sizes for key, policy in (("bc", "bc"), ("pc", "procedure_cloning"))
    ]


def run_cell(
    out: Path, config: MazeProcedureConfig, seed: int, cell: Cell, show_progress: bool = False
) -> tuple[dict[str, Any], Policy]:
    """Train (or resume) ``cell`` in ``out/runs/NAME`` and evaluate it; returns ``({split: metrics}, policy)``.

    A function of (``config``, ``seed``, ``cell``) only, with the cell's data already in ``out/data``.
    """
    dataset = Dataset.open(out / "data" / f"n{cell.num_mazes}")
    steps = config.bc_steps if cell.key == "bc" else config.pc_steps
    train_config = TrainConfig(steps=steps, batch_size=config.batch_size, lr=config.lr, seed=seed, checkpoint_every=500)
    policy = train(
        cell.policy,
        dataset,
        out / "runs" / cell.name,
        train_config,
        resume=True,
        same_settings=True,
        show_progress=show_progress,
    )
    family = get_env_family("maze")
    metrics: dict[str, Any] = {}
    for split in ("train", "test"):
        tasks = split_tasks(dataset.env, split, seed, config.test_mazes)
        metrics[split] = rollout(policy, family, tasks, config.eval_episodes, seed).metrics(seed)
    return metrics, policy


def _cell_task(out: str, config: MazeProcedureConfig, seed: int, cell: Cell) -> dict[str, Any]:
    """:func:`run_cell` as a Ray task (one CPU, one torch thread); returns the metrics."""
    torch.set_num_threads(1)
    return run_cell(Path(out), config, seed, cell)[0]


def _dataset(
    out: Path, num_mazes: int, config: MazeProcedureConfig, seed: int, show_progress: bool, **ray: Any
) -> Dataset:
    path = out / "data" / f"n{num_mazes}"
    episodes = num_mazes * config.episodes_per_maze
    return collected_once(
        path, "maze", "bfs", seed=seed, episodes=episodes, num_tasks=num_mazes, show_progress=show_progress, **ray
    )


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: MazeProcedureConfig | None = None,
    ray: bool = False,
    ray_address: str | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``).

    ``config`` replaces the preset chosen by ``quick`` (``FULL`` or ``QUICK``). With ``ray=True`` the data
    is collected with Ray and the cells (one per policy and N) run as Ray tasks, at most ``workers`` at a
    time, each with one torch thread; the metrics equal those of a local run with the same
    ``torch_threads`` (recorded in the config block; e.g. ``OMP_NUM_THREADS=1``), since training rounds
    differently with another thread count. ``out`` must be visible to every Ray node.
    """
    config = config or (QUICK if quick else FULL)
    out.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, dict[str, Any]] = {}
    policies: dict[str, Policy] = {}
    ray_options: dict[str, Any] = {}
    if ray:
        init_ray(ray_address, workers)
        ray_options = {"ray": True, "ray_address": ray_address, "workers": workers}
    datasets = {n: _dataset(out, n, config, seed, show_progress, **ray_options) for n in config.train_sizes}
    for n, dataset in datasets.items():
        log(f"N={n}: {dataset.num_episodes} expert episodes, {dataset.num_steps} steps")
    test_tasks = split_tasks(datasets[config.train_sizes[-1]].env, "test", seed, config.test_mazes)
    todo = cells(config)
    if ray:
        calls = [(str(out.resolve()), config, seed, cell) for cell in todo]
        done = zip(todo, ordered_map(_cell_task, calls, workers), strict=True)
        results_of = ((cell, (cell_metrics, load_policy(out / "runs" / cell.name))) for cell, cell_metrics in done)
    else:
        results_of = ((cell, run_cell(out, config, seed, cell, show_progress)) for cell in todo)
    for cell, (cell_metrics, policy) in results_of:
        metrics[cell.name], policies[cell.name] = cell_metrics, policy
        for split in ("train", "test"):
            log(f"  {cell.name:8s} {split:5s} success {format_metric(metrics[cell.name][split]['success'])}")

    results = {
        **results_head(NAME, seed, quick, config, 1 if ray else torch.get_num_threads()),
        "metrics": metrics,
    }
    atomic_write_json(out / "results.json", results)
    plots = plot_maze_procedure(out, results, policies, test_tasks[0] if test_tasks else None, seed)
    atomic_write_text(out / "report.md", _report(results, plots))
    return results


def _report(results: dict[str, Any], plots: list[str]) -> str:
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        "Success rate on the training mazes (new start cells) and on unseen mazes, with 95% intervals over",
        "the right unit: episodes on the same maze are not independent, so the interval is a cluster",
        "bootstrap over mazes (mazes, then episodes within them); when every episode agrees, the Wilson",
        "interval over the mazes. `n=E/M tasks`: E episodes on M mazes. `bc` = behaviour cloning,",
        "`pc` = procedure cloning, `nN` = N training mazes.",
        "",
        "| policy | train success | test (unseen) success |",
        "|---|---|---|",
    ]
    for name, splits in results["metrics"].items():
        lines.append(
            f"| {name} | {format_metric(splits['train']['success'])} | {format_metric(splits['test']['success'])} |"
        )
    methods = sorted({s["success"]["method"] for splits in results["metrics"].values() for s in splits.values()})
    lines += ["", f"Interval methods used: {', '.join(methods)} (see `clonekit.evaluation.stats`)."]
    lines += ["", "Mean episode length (steps):", "", "| policy | train | test |", "|---|---|---|"]
    for name, splits in results["metrics"].items():
        lines.append(
            f"| {name} | {format_metric(splits['train']['length'], 1)} | {format_metric(splits['test']['length'], 1)} |"
        )
    lines += report_tail(results, plots)
    return "\n".join(lines)


def success_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(policy, train, test)`` of formatted success metrics."""
    return [
        (name, format_metric(splits["train"]["success"]), format_metric(splits["test"]["success"]))
        for name, splits in results["metrics"].items()
    ]


__all__ = ["FULL", "NAME", "QUICK", "Cell", "MazeProcedureConfig", "cells", "run", "run_cell", "success_table"]
