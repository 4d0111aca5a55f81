"""Experiment ``maze-procedure-size``: procedure cloning trained on 16x16 mazes runs its search on larger
unseen mazes (24x24, 32x32); behaviour cloning does not.

Collect BFS-expert demonstrations on ``num_mazes`` training mazes of size ``train_size`` (16), then train:

* ``pc``: procedure cloning on the native 16x16 maps. Its search step is fully convolutional, so it runs on
  a maze of any size as it is (at most ``H * W`` search layers, ``max_search_steps`` 0).
* ``bc``: the usual maze BC (conv encoder) needs one input shape, so every maze is observed in the top-left
  corner of a ``canvas`` x ``canvas`` map (the largest test size, 32) whose other cells are wall: the env
  option ``canvas`` (:func:`clonekit.envs.maze.pad_to_canvas`), used for its demonstrations and for every
  evaluation. Its demonstrations are the same episodes as PC's (same mazes, same start cells, same expert
  moves), only observed on the canvas.

Both are evaluated on the same episodes: ``train`` (the training mazes, new start cells) and ``testS`` for
every ``S`` in ``test_sizes`` (unseen mazes of size ``S``), with the env's step budget ``S * S / 2`` for a
maze of size ``S`` for both policies. ``pc`` also reports ``search_exact`` per split: the fraction of mazes
on which its search, run to the end from an empty map, labels every reachable cell exactly as the expert's
BFS does (a diagnostic of where the learned step stops being exact).

Every stage writes into ``OUT`` and is skipped or resumed when its output is already there.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clonekit.config import check
from clonekit.data import Dataset
from clonekit.envs import get_env_family
from clonekit.envs.maze import MazeTask, bfs_from_goal
from clonekit.evaluation import rollout, split_tasks
from clonekit.evaluation.plots import _pyplot, save_figure
from clonekit.evaluation.stats import format_metric, summarize
from clonekit.experiments.common import collected_once, report_tail, results_head
from clonekit.experiments.maze_plots import plot_maze_procedure
from clonekit.experts.bfs import UNLABELLED, procedure_maps
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.policies import Policy
from clonekit.policies.procedure_cloning import ProcedureCloningPolicy
from clonekit.train import TrainConfig, train

NAME = "maze-procedure-size"
KEYS = ("bc", "pc")
POLICY_OF_KEY = {"bc": "bc", "pc": "procedure_cloning"}


@dataclass(frozen=True)
class MazeProcedureSizeConfig:
    """Settings of ``maze-procedure-size``.

    Args:
        train_size: Side of the training mazes.
        test_sizes: Sides of the unseen test mazes (splits ``testS``); BC's canvas is the largest of these
            and ``train_size``.
        num_mazes: Number of training mazes.
        episodes_per_maze: Expert demonstrations per training maze (random start cells).
        test_mazes: Unseen mazes per test split.
        eval_episodes: Episodes per (policy, split) cell.
        bc_steps: Gradient steps for BC (as many as PC's by default: BC fits its training data by then).
        pc_steps: Gradient steps for procedure cloning.
        batch_size: Transitions per gradient step.
        lr: Adam learning rate.
    """

    train_size: int = 16
    test_sizes: tuple[int, ...] = (16, 24, 32)
    num_mazes: int = 20
    episodes_per_maze: int = 20
    test_mazes: int = 50
    eval_episodes: int = 200
    bc_steps: int = 1000
    pc_steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3

    def __post_init__(self) -> None:
        check(5 <= self.train_size <= 256, "train_size", "in [5, 256]", self.train_size)
        check(
            len(self.test_sizes) >= 1
            and len(set(self.test_sizes)) == len(self.test_sizes)
            and all(5 <= s <= 256 for s in self.test_sizes),
            "test_sizes",
            "distinct sizes in [5, 256]",
            self.test_sizes,
        )
        for name in ("num_mazes", "episodes_per_maze", "test_mazes", "eval_episodes"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        for name in ("bc_steps", "pc_steps", "batch_size"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check(self.lr > 0, "lr", "> 0", self.lr)

    @property
    def canvas(self) -> int:
        """Side of BC's observation canvas: the largest maze it meets."""
        return max(self.train_size, *self.test_sizes)

    @property
    def splits(self) -> tuple[str, ...]:
        """``train``, then ``testS`` per test size."""
        return ("train", *(f"test{s}" for s in self.test_sizes))


FULL = MazeProcedureSizeConfig()
QUICK = replace(
    FULL, num_mazes=10, episodes_per_maze=4, test_mazes=20, eval_episodes=40, bc_steps=300, pc_steps=300, batch_size=64
)


def env_kwargs(key: str, size: int, config: MazeProcedureSizeConfig) -> dict[str, Any]:
    """The maze env options policy ``key`` plays (and ``bc`` learns) mazes of side ``size`` with."""
    return {"size": size, **({"canvas": config.canvas} if key == "bc" else {})}


def _dataset(out: Path, key: str, config: MazeProcedureSizeConfig, seed: int, show_progress: bool) -> Dataset:
    """The demonstrations of ``key`` in ``out/data/KEY``: the same episodes for both keys (BC's on the canvas)."""
    return collected_once(
        out / "data" / key,
        "maze",
        "bfs",
        seed=seed,
        episodes=config.num_mazes * config.episodes_per_maze,
        num_tasks=config.num_mazes,
        env_kwargs=env_kwargs(key, config.train_size, config),
        show_progress=show_progress,
    )


def split_mazes(dataset: Dataset, config: MazeProcedureSizeConfig, seed: int) -> dict[str, list[MazeTask]]:
    """The mazes of every split: the training mazes, then ``test_mazes`` unseen mazes per test size (those of
    the training size exclude the training layouts)."""
    family = get_env_family("maze")
    train_tasks = split_tasks(dataset.env, "train", seed, config.num_mazes)
    exclude = {family.task_key(t) for t in train_tasks}
    tasks = {"train": train_tasks}
    for size in config.test_sizes:
        tasks[f"test{size}"] = family.sample_tasks(seed, "test", config.test_mazes, exclude, size=size)
    return tasks


def search_exact(policy: ProcedureCloningPolicy, tasks: list[MazeTask]) -> np.ndarray:
    """``(len(tasks),)`` bool: whether ``policy``'s search, run from an empty map until it stops growing (at
    most ``H * W`` layers), labels every cell exactly as the expert's full BFS from the goal does."""
    exact = np.zeros(len(tasks), dtype=bool)
    for i, task in enumerate(tasks):
        distance, direction = bfs_from_goal(task)
        truth = procedure_maps(distance[None], direction[None], np.array([distance.max()]))[0, 1]
        h, w = task.walls.shape
        obs = np.zeros((1, 3, h, w), dtype=np.float32)
        obs[0, policy.config.wall_channel] = task.walls
        obs[0, policy.config.goal_channel, task.goal[0], task.goal[1]] = 1
        x = torch.from_numpy(obs)
        labels = torch.zeros(1, h, w, dtype=torch.long)
        with torch.inference_mode():
            for _ in range(h * w):
                pred = policy.search_step_logits(x, labels).argmax(1)
                new = torch.where(labels == UNLABELLED, pred, labels)
                if bool((new == labels).all()):
                    break
                labels = new
        exact[i] = bool((labels[0].numpy() == truth).all())
    return exact


def run_key(
    out: Path,
    key: str,
    dataset: Dataset,
    tasks: dict[str, list[MazeTask]],
    config: MazeProcedureSizeConfig,
    seed: int,
    show_progress: bool = False,
) -> tuple[dict[str, Any], Policy]:
    """Train (or resume) ``key`` in ``out/runs/KEY`` and evaluate it on every split; ``({split: metrics}, policy)``."""
    steps = config.bc_steps if key == "bc" else config.pc_steps
    train_config = TrainConfig(steps=steps, batch_size=config.batch_size, lr=config.lr, seed=seed, checkpoint_every=500)
    policy = train(
        POLICY_OF_KEY[key],
        dataset,
        out / "runs" / key,
        train_config,
        resume=True,
        same_settings=True,
        show_progress=show_progress,
    )
    family = get_env_family("maze")
    metrics: dict[str, Any] = {}
    for split, mazes in tasks.items():
        size = mazes[0].walls.shape[0]
        kwargs = env_kwargs(key, size, config)
        metrics[split] = rollout(policy, family, mazes, config.eval_episodes, seed, env_kwargs=kwargs).metrics(seed)
        if isinstance(policy, ProcedureCloningPolicy):
            metrics[split]["search_exact"] = summarize(search_exact(policy, mazes), seed)
    return metrics, policy


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: MazeProcedureSizeConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``).

    ``config`` replaces the preset chosen by ``quick`` (``FULL`` or ``QUICK``).
    """
    config = config or (QUICK if quick else FULL)
    out.mkdir(parents=True, exist_ok=True)
    datasets = {key: _dataset(out, key, config, seed, show_progress) for key in KEYS}
    data = datasets["pc"]
    log(f"{config.num_mazes} training mazes {config.train_size}x{config.train_size}: {data.num_episodes} episodes,")
    log(f"  {data.num_steps} steps (bc: the same episodes on a {config.canvas}x{config.canvas} wall canvas)")
    tasks = split_mazes(data, config, seed)
    metrics: dict[str, dict[str, Any]] = {}
    policies: dict[str, Policy] = {}
    for key in KEYS:
        metrics[key], policies[key] = run_key(out, key, datasets[key], tasks, config, seed, show_progress)
        for split in config.splits:
            log(f"  {key:3s} {split:7s} success {format_metric(metrics[key][split]['success'])}")
    results = {
        **results_head(NAME, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
        "canvas": config.canvas,
        "max_steps": {split: ts[0].walls.shape[0] ** 2 // 2 for split, ts in tasks.items()},
    }
    atomic_write_json(out / "results.json", results)
    plots = plot_sizes(out / "sizes.png", results, config)
    largest = tasks[f"test{max(config.test_sizes)}"]
    # maze_plots' figure of PC's predicted search (and path) on the first unseen maze of the largest size.
    plots += plot_maze_procedure(out, results, {f"pc_{config.train_size}": policies["pc"]}, largest[0], seed)
    atomic_write_text(out / "report.md", _report(results, config, plots))
    return results


def plot_sizes(path: Path, results: dict[str, Any], config: MazeProcedureSizeConfig) -> list[str]:
    """Success on unseen mazes against maze size, one line per key with 95% intervals; ``[]`` without matplotlib."""
    plt = _pyplot()
    if plt is None:
        return []
    fig, ax = plt.subplots(figsize=(5, 3.6))
    sizes = list(config.test_sizes)
    for key, splits in results["metrics"].items():
        m = [splits[f"test{s}"]["success"] for s in sizes]
        means = np.array([x["mean"] for x in m])
        lows = means - np.array([x["ci95"][0] for x in m])
        highs = np.array([x["ci95"][1] for x in m]) - means
        ax.errorbar(sizes, means, yerr=[lows, highs], marker="o", capsize=4, label=key)
    ax.axvline(config.train_size, color="grey", ls=":", label=f"training size {config.train_size}")
    ax.set_xticks(sizes)
    ax.set_xlabel("maze side (unseen mazes)")
    ax.set_ylabel("success (95% CI)")
    ax.set_ylim(-0.03, 1.05)
    ax.set_title(f"{NAME}: trained on {config.train_size}x{config.train_size} mazes", fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3)
    save_figure(fig, path)
    return [path.name]


def _report(results: dict[str, Any], config: MazeProcedureSizeConfig, plots: list[str]) -> str:
    train = config.train_size
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        f"Both policies learn from the same BFS-expert episodes on {config.num_mazes} mazes of {train}x{train}.",
        "`pc` (procedure cloning) runs its learned search step natively on every size; `bc` sees every maze",
        f"in the top-left corner of a {results['canvas']}x{results['canvas']} canvas padded with wall (env "
        "option `canvas`),",
        "in training and in evaluation. `train`: the training mazes (new start cells); `testS`: unseen mazes",
        "of side S. Both play the same episodes with the same step budget (S*S/2 steps for side S). Success",
        "with 95% intervals: a cluster bootstrap over mazes (the Wilson interval over mazes when every episode",
        "agrees). `n=E/M tasks`: E episodes on M mazes.",
        "",
        "| policy | " + " | ".join(config.splits) + " |",
        "|---|" + "---|" * len(config.splits),
    ]
    for key, splits in results["metrics"].items():
        lines.append(f"| {key} | " + " | ".join(format_metric(splits[s]["success"]) for s in config.splits) + " |")
    lines += [
        "",
        "`pc` search exact: the fraction of mazes on which its search, run to the end from an empty map, labels",
        "every cell as the expert's BFS does (Wilson interval over mazes):",
        "",
        "| split | search exact |",
        "|---|---|",
    ]
    pc = results["metrics"].get("pc", {})
    lines += [f"| {s} | {format_metric(pc[s]['search_exact'])} |" for s in config.splits if s in pc]
    lines += report_tail(results, plots)
    return "\n".join(lines)


__all__ = [
    "FULL",
    "KEYS",
    "NAME",
    "QUICK",
    "MazeProcedureSizeConfig",
    "env_kwargs",
    "plot_sizes",
    "run",
    "run_key",
    "search_exact",
    "split_mazes",
]
