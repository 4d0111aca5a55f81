"""Experiment ``avoiding-modes``: which action heads keep the modes of multimodal demonstrations?

The scripted Avoiding expert picks one of 8 collision-free paths uniformly per episode (see
:mod:`clonekit.envs.avoiding`). On the same demonstrations we train behaviour cloning with four heads:

* ``mlp``: regression to the mean action (MSE), which averages the modes;
* ``gmm``: a Gaussian mixture;
* ``diffusion``: score-based denoising (BESO-style, a few Euler steps);
* ``diffusion_chunked``: the same, predicting chunks of actions executed with a receding horizon.

Each is evaluated from the training start states (``train``) and from held-out ones (``test``) on success
rate, behaviour entropy (D3IL: entropy of the path distribution over successful rollouts, normalized by
log 8) and the number of distinct paths, all with 95% bootstrap intervals. Everything is derived from
``--seed``; every stage is skipped or resumed when its output is already in ``OUT``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clonekit.config import check
from clonekit.data import Dataset
from clonekit.distributed import init_ray, ordered_map
from clonekit.envs import get_env_family
from clonekit.envs.avoiding import NUM_MODES, classify_paths
from clonekit.evaluation import rollout, split_tasks
from clonekit.evaluation.diversity import diversity_metrics
from clonekit.evaluation.plots import plot_success_bars
from clonekit.evaluation.stats import format_metric, summarize
from clonekit.experiments.avoiding_plots import plot_avoiding_trajectories
from clonekit.experiments.common import (
    collected_once,
    head_policies,
    report_tail,
    results_head,
    torch_threads,
    train_head,
)
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.policies import Policy
from clonekit.seeding import derive_seed

NAME = "avoiding-modes"
SPLITS = ("train", "test")
PLOTTED_EPISODES = 80


@dataclass(frozen=True)
class AvoidingModesConfig:
    """Settings of ``avoiding-modes``.

    Args:
        episodes: Expert demonstrations (episode ``k`` starts from training start state ``k % train_starts``).
        train_starts: Number of start states the demonstrations begin from (the ``train`` split).
        test_starts: Number of held-out start states (the ``test`` split).
        eval_episodes: Rollouts per (policy, split) cell.
        mlp_steps: Gradient steps of the MSE policy.
        gmm_steps: Gradient steps of the GMM policy.
        diffusion_steps: Gradient steps of each diffusion policy.
        batch_size: Transitions per gradient step.
        lr: Adam learning rate.
        hidden_sizes: Widths of the observation encoder of every policy.
        denoising_steps: Denoising steps per action (chunk) of the diffusion policies at inference.
        chunk: Actions per chunk of ``diffusion_chunked``.
        execute_steps: Actions of a chunk executed before predicting the next (receding horizon).
    """

    episodes: int = 200
    train_starts: int = 50
    test_starts: int = 50
    eval_episodes: int = 200
    mlp_steps: int = 3000
    gmm_steps: int = 3000
    diffusion_steps: int = 5000
    batch_size: int = 256
    lr: float = 1e-3
    hidden_sizes: tuple[int, ...] = (256, 256)
    denoising_steps: int = 5
    chunk: int = 8
    execute_steps: int = 4

    def __post_init__(self) -> None:
        for name in ("episodes", "train_starts", "test_starts", "eval_episodes", "batch_size", "denoising_steps"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        for name in ("mlp_steps", "gmm_steps", "diffusion_steps"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check(self.chunk >= 1, "chunk", ">= 1", self.chunk)
        check(self.lr > 0, "lr", "> 0", self.lr)
        check(1 <= self.execute_steps <= self.chunk, "execute_steps", f"in [1, chunk={self.chunk}]", self.execute_steps)

    def policies(self) -> dict[str, tuple[int, dict[str, Any]]]:
        """Policy key -> (gradient steps, ``continuous_bc`` config overrides)."""
        return head_policies(self)


FULL = AvoidingModesConfig()
QUICK = replace(
    FULL,
    episodes=64,
    train_starts=16,
    test_starts=16,
    eval_episodes=48,
    mlp_steps=1000,
    gmm_steps=2500,
    diffusion_steps=1500,
    batch_size=128,
    hidden_sizes=(128, 128),
)


def paths_dataset(out: Path, config: Any, seed: int, show_progress: bool, **ray: Any) -> Dataset:
    """The ``paths`` expert's demonstrations in ``out/data`` (``config.episodes`` episodes from
    ``config.train_starts`` start states), collected or, when already there, checked and opened."""
    path = out / "data"
    return collected_once(
        path,
        "avoiding",
        "paths",
        seed=seed,
        episodes=config.episodes,
        num_tasks=config.train_starts,
        show_progress=show_progress,
        **ray,
    )


@dataclass
class PathRollouts:
    """Rollouts of one policy: per episode its success, path class (mode) and positions, and task index."""

    success: np.ndarray
    modes: np.ndarray
    paths: list[np.ndarray]
    task_index: np.ndarray


def evaluate_paths(policy: Policy, tasks: list[Any], episodes: int, seed: int) -> PathRollouts:
    """``episodes`` rollouts of ``policy`` on the Avoiding ``tasks`` (one wave), with each episode's path class."""
    family = get_env_family("avoiding")
    positions: list[np.ndarray] = []
    results = rollout(
        policy,
        family,
        tasks,
        episodes,
        seed,
        max_parallel=episodes,  # one wave, so the recorded positions line up step by step
        on_step=lambda step, obs, actions, state: positions.append(obs.copy()),
    )
    trajectories = np.stack(positions)  # (T, N, 2): the position before every step
    paths = [trajectories[: results.lengths[i], i] for i in range(len(results.lengths))]
    return PathRollouts(results.success, classify_paths(trajectories), paths, results.task_index)


Panel = tuple[list[np.ndarray], np.ndarray, np.ndarray]  # test rollouts plotted: (paths, modes, success)


def run_cell(
    out: Path, config: AvoidingModesConfig, seed: int, name: str, show_progress: bool = False
) -> tuple[dict[str, Any], Panel]:
    """Train (or resume) policy ``name`` in ``out/runs/NAME`` and evaluate it on both splits.

    Returns ``({split: metrics}, test panel)``. A function of (``config``, ``seed``, ``name``) only, with
    the data already in ``out/data``; the heads' sampling noise is seeded per (policy, split).
    """
    dataset = Dataset.open(out / "data")
    policy = train_head(dataset, out, config, seed, name, show_progress)
    metrics: dict[str, Any] = {}
    panel: Panel = ([], np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool))
    for split in SPLITS:
        tasks = split_tasks(dataset.env, split, seed, config.test_starts)
        torch.manual_seed(derive_seed(seed, f"{NAME}:{name}:{split}"))  # the heads' sampling noise
        rollouts = evaluate_paths(policy, tasks, config.eval_episodes, seed)
        metrics[split] = {
            "success": summarize(rollouts.success, seed, groups=rollouts.task_index),
            **diversity_metrics(rollouts.success, rollouts.modes, NUM_MODES, seed, groups=rollouts.task_index),
        }
        if split == "test":
            k = min(PLOTTED_EPISODES, config.eval_episodes)
            panel = (rollouts.paths[:k], rollouts.modes[:k], rollouts.success[:k])
    return metrics, panel


def _cell_task(out: str, config: AvoidingModesConfig, seed: int, name: str) -> tuple[dict[str, Any], Panel]:
    """:func:`run_cell` as a Ray task (one CPU, one torch thread, as a local run uses)."""
    torch.set_num_threads(1)
    return run_cell(Path(out), config, seed, name)


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: AvoidingModesConfig | None = None,
    ray: bool = False,
    ray_address: str | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``).

    ``config`` replaces the preset chosen by ``quick`` (``FULL`` or ``QUICK``). With ``ray=True`` the data
    is collected with Ray and each policy's cell (training and evaluation) runs as a Ray task, at most
    ``workers`` at a time; every cell uses one torch thread either way, so the results equal a local run's.
    ``out`` must be visible to every Ray node.
    """
    config = config or (QUICK if quick else FULL)
    # These networks are small: extra intra-op threads buy nothing and, on a busy machine, cost up to 50x.
    with torch_threads(1):
        ray_options: dict[str, Any] = {}
        if ray:
            init_ray(ray_address, workers)
            ray_options = {"ray": True, "ray_address": ray_address, "workers": workers}
        return _run(out, seed, quick, show_progress, log, config, ray_options)


def _run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool,
    log: Any,
    config: AvoidingModesConfig,
    ray_options: dict[str, Any],
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    dataset = paths_dataset(out, config, seed, show_progress, **ray_options)
    # The expert's path of every episode (constant within an episode).
    demo_modes = np.asarray(dataset.column("style"))[dataset.episode_starts]
    demo_diversity = diversity_metrics(np.ones(len(demo_modes), dtype=bool), demo_modes, NUM_MODES, seed)
    log(
        f"{dataset.num_episodes} expert episodes, {dataset.num_steps} steps; demonstrations' entropy "
        f"{format_metric(demo_diversity['entropy'])}"
    )
    shown = min(PLOTTED_EPISODES, dataset.num_episodes)
    panels: dict[str, Panel] = {
        "demonstrations": (
            [np.asarray(dataset.episode(i)["obs"]) for i in range(shown)],
            demo_modes[:shown],
            np.ones(shown, dtype=bool),
        )
    }
    names = list(config.policies())
    if ray_options:
        calls = [(str(out.resolve()), config, seed, name) for name in names]
        done: Any = zip(names, ordered_map(_cell_task, calls, ray_options["workers"]), strict=True)
    else:
        done = ((name, run_cell(out, config, seed, name, show_progress)) for name in names)
    metrics: dict[str, dict[str, Any]] = {}
    for name, (cell_metrics, panel) in done:
        metrics[name], panels[name] = cell_metrics, panel
        for split in SPLITS:
            cell = metrics[name][split]
            log(
                f"  {name:17s} {split:5s} success {format_metric(cell['success'])}  "
                f"entropy {format_metric(cell['entropy'])}  modes {format_metric(cell['modes'], 1)}"
            )

    results = {
        **results_head(NAME, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
    }
    atomic_write_json(out / "results.json", results)
    plots = []
    if plot_avoiding_trajectories(
        out / "trajectories.png", panels, f"{NAME}: rollouts from held-out start states, coloured by path"
    ):
        plots.append("trajectories.png")
    for metric in ("success", "entropy"):
        if plot_success_bars(results, out / f"{metric}.png", metric=metric):
            plots.append(f"{metric}.png")
    atomic_write_text(out / "report.md", _report(results, plots, demo_diversity))
    return results


def _report(results: dict[str, Any], plots: list[str], demos: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        "Behaviour cloning with four action heads on the same multimodal Avoiding demonstrations (8 paths).",
        "Success rate, behaviour entropy (entropy of the path distribution over successful rollouts / log 8;",
        "D3IL) and distinct paths, from held-out start states (`test`) and the demonstrations' start states",
        "(`train`), with 95% bootstrap intervals; entropy and modes count successful rollouts only.",
        "",
        "| policy | split | success | entropy | modes |",
        "|---|---|---|---|---|",
    ]
    for name, splits in results["metrics"].items():
        for split in ("test", "train"):
            m = splits[split]
            lines.append(
                f"| {name} | {split} | {format_metric(m['success'])} | {format_metric(m['entropy'])} "
                f"| {format_metric(m['modes'], 1)} |"
            )
    lines += [
        "",
        f"The demonstrations themselves: entropy {format_metric(demos['entropy'])}, "
        f"modes {format_metric(demos['modes'], 1)} (over episodes).",
        "",
        "Bootstrap intervals of entropy and mode counts are percentile intervals of plug-in estimates, which",
        "are biased low for small n; an interval of zero width means every resample agreed.",
    ]
    lines += report_tail(results, plots)
    return "\n".join(lines)


def modes_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(policy, test success, test entropy, test modes)`` of formatted metrics."""
    return [
        (
            name,
            format_metric(splits["test"]["success"]),
            format_metric(splits["test"]["entropy"]),
            format_metric(splits["test"]["modes"], 1),
        )
        for name, splits in results["metrics"].items()
    ]


__all__ = [
    "FULL",
    "NAME",
    "QUICK",
    "AvoidingModesConfig",
    "PathRollouts",
    "evaluate_paths",
    "modes_table",
    "paths_dataset",
    "run",
    "run_cell",
]
