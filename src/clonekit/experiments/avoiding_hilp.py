"""Experiment ``avoiding-hilp``: zero-shot goal reaching from undirected play, HILP vs goal-conditioned BC.

Data: undirected play in the Avoiding arena (:mod:`clonekit.experts.play`: a scripted player wandering between
random waypoints around the obstacles, never aimed at an evaluation goal), ``play_episodes`` episodes of
``play_length`` steps. On the same play data, with the same networks' widths, gradient steps and batch size:

* ``gcbc``: ``goal_bc`` on the play data relabeled with hindsight goals (each step's goal a uniformly drawn
  later state of its episode, :func:`clonekit.data.relabel.hindsight_relabel`);
* ``hilp``: ``hilp`` (:mod:`clonekit.policies.hilp`): a Hilbert representation ``phi`` and a latent-direction
  policy trained from the reward-free play, prompted with ``z = (phi(g) - phi(s)) / ||.||``.

``test``: ``test_goals`` goal points in the free arena, each from ``starts_per_goal`` start points at least 0.5
away (env family ``avoiding-reach``: success within 0.05 of the goal before ``max_steps``; touching an obstacle
ends the episode). The goals are *unseen*: they come from the test seed stream, the player's waypoints from
another one, and (points of a continuous arena) no test goal equals a relabeled training goal. Both policies
act deterministically on deterministic tasks, so each (start, goal) pair is played once; ``success`` has a 95%
interval clustered by goal (the unit drawn ``test_goals`` times). Everything derives from ``--seed``; stages
already in ``OUT`` are reused. :func:`run_reach_experiment` is shared with ``avoiding-play``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clonekit.checkpoint import load_policy
from clonekit.config import check
from clonekit.data import Dataset
from clonekit.data.relabel import hindsight_relabel
from clonekit.envs import get_env_family
from clonekit.envs.avoiding import (
    ARENA_X,
    ARENA_Y,
    OBSTACLE_RADIUS,
    OBSTACLES,
    REACH_TOLERANCE,
    AvoidingTask,
    sample_reach_tasks,
)
from clonekit.errors import DatasetError
from clonekit.evaluation import rollout
from clonekit.evaluation.plots import _pyplot, plot_success_bars, save_figure
from clonekit.evaluation.stats import format_metric, summarize
from clonekit.experiments.common import report_tail, results_head, torch_threads
from clonekit.experts.play import write_play_data
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.policies import Policy
from clonekit.train import TrainConfig, train

NAME = "avoiding-hilp"


@dataclass(frozen=True)
class AvoidingHILPConfig:
    """Settings of ``avoiding-hilp``.

    Args:
        play_episodes: Episodes of undirected play.
        play_length: Steps per play episode.
        test_goals: Unseen goal points of the ``test`` split.
        starts_per_goal: Start points per goal (episodes per goal).
        max_steps: Step limit of an evaluation episode.
        steps: Gradient steps of each policy.
        batch_size: Samples per gradient step.
        lr: Adam learning rate of both policies.
        hidden_sizes: Widths of every MLP (goal_bc's encoder; hilp's phi, actor and critics).
        latent_dim: Width of hilp's representation ``phi``.
    """

    play_episodes: int = 200
    play_length: int = 400
    test_goals: int = 30
    starts_per_goal: int = 5
    max_steps: int = 120
    steps: int = 4000
    batch_size: int = 256
    lr: float = 3e-4
    hidden_sizes: tuple[int, ...] = (128, 128)
    latent_dim: int = 32

    def __post_init__(self) -> None:
        for name in ("play_episodes", "test_goals", "starts_per_goal", "steps", "batch_size", "latent_dim"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check(self.play_length >= 2, "play_length", ">= 2", self.play_length)
        check(self.max_steps >= 1, "max_steps", ">= 1", self.max_steps)
        check(self.lr > 0, "lr", "> 0", self.lr)
        check(len(self.hidden_sizes) >= 1, "hidden_sizes", "at least one width", self.hidden_sizes)


FULL = AvoidingHILPConfig()
QUICK = replace(FULL, play_episodes=60, play_length=300, test_goals=10, starts_per_goal=3, steps=800)


@dataclass(frozen=True)
class KeySpec:
    """How one policy key is trained: policy name, config overrides, the data it reads (``"play"`` or
    ``"relabeled"``), its gradient-norm clip (0: none) and its batch size (``None``: the config's)."""

    policy: str
    overrides: dict[str, Any]
    data: str
    grad_clip: float = 1.0
    batch_size: int | None = None


def play_dataset(out: Path, config: Any, seed: int) -> Dataset:
    """The play data in ``out/data``, written or, when already there, checked and opened."""
    path = out / "data"
    if path.exists():
        dataset = Dataset.open(path)
        if dataset.env.get("seed") != seed or dataset.num_episodes != config.play_episodes:
            raise DatasetError(f"{path}: exists but was written with other settings; use a fresh --out")
        return dataset
    return write_play_data(path, config.play_episodes, config.play_length, seed, config.max_steps)


def relabeled_dataset(out: Path, play: Dataset, seed: int) -> Dataset:
    """The play data with hindsight goals (uniform future states) in ``out/relabeled``, written once."""
    path = out / "relabeled"
    if path.exists():
        return Dataset.open(path)
    return hindsight_relabel(play, path, seed=seed, strategy="future", copies=1, keep_original=False)


def train_key(spec: KeySpec, data: Dataset, run: Path, config: Any, seed: int, show: bool) -> Policy:
    """Train (or resume, or reuse) one key in ``run`` and load it."""
    train_config = TrainConfig(
        steps=config.steps,
        batch_size=spec.batch_size or config.batch_size,
        lr=config.lr,
        grad_clip=spec.grad_clip,
        seed=seed,
        checkpoint_every=max(config.steps // 2, 1),
        keep_checkpoints=1,
        tensorboard=False,
        val_fraction=0.0,
    )
    train(spec.policy, data, run, train_config, spec.overrides, resume=True, same_settings=True, show_progress=show)
    return load_policy(run)


@dataclass
class ReachRollouts:
    """Per episode: success, the positions it visited ``(T_i, 2)`` and its goal's index."""

    success: np.ndarray
    paths: list[np.ndarray]
    goal_index: np.ndarray


def evaluate_reach(
    policy: Policy, tasks: list[AvoidingTask], starts_per_goal: int, max_steps: int, seed: int
) -> ReachRollouts:
    """Every task once (one wave, deterministic policies on deterministic tasks) with the visited positions."""
    positions: list[np.ndarray] = []
    results = rollout(
        policy,
        get_env_family("avoiding-reach"),
        tasks,
        len(tasks),
        seed,
        env_kwargs={"max_steps": max_steps},
        max_parallel=len(tasks),  # one wave, so the recorded positions line up step by step
        on_step=lambda step, obs, actions, state: positions.append(obs.copy()),
    )
    trajectories = np.stack(positions)  # (T, N, 2): the position before every step
    paths = [trajectories[: results.lengths[i], i] for i in range(len(tasks))]
    return ReachRollouts(results.success.astype(bool), paths, results.task_index // starts_per_goal)


def run_reach_experiment(
    name: str,
    keys: Mapping[str, KeySpec],
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool,
    log: Callable[[str], Any],
    config: Any,
    describe: list[str],
) -> dict[str, Any]:
    """Play data, the keys trained on it, every key on the unseen reaching goals; writes results, report, PNGs."""
    out.mkdir(parents=True, exist_ok=True)
    play = play_dataset(out, config, seed)
    log(f"{play.num_episodes} play episodes, {play.num_steps} steps")
    data = {"play": play}
    if any(spec.data == "relabeled" for spec in keys.values()):
        data["relabeled"] = relabeled_dataset(out, play, seed)
    tasks = sample_reach_tasks(seed, "test", config.test_goals, config.starts_per_goal)
    metrics: dict[str, dict[str, Any]] = {}
    panels: dict[str, ReachRollouts] = {}
    for key, spec in keys.items():
        policy = train_key(spec, data[spec.data], out / "runs" / key, config, seed, show_progress)
        torch.manual_seed(seed)
        rollouts = evaluate_reach(policy, tasks, config.starts_per_goal, config.max_steps, seed)
        metrics[key] = {"test": {"success": summarize(rollouts.success, seed, groups=rollouts.goal_index)}}
        panels[key] = rollouts
        log(f"  {key:8s} test success {format_metric(metrics[key]['test']['success'])}")
    results = {
        **results_head(name, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
        "test_goals": [list(t.goal or ()) for t in tasks[:: config.starts_per_goal]],
    }
    atomic_write_json(out / "results.json", results)
    plots = []
    if plot_success_bars(results, out / "success.png"):
        plots.append("success.png")
    if plot_reach_paths(out / "paths.png", panels, tasks, f"{name}: paths to unseen goals (seed {seed})"):
        plots.append("paths.png")
    lines = [f"# {name} (seed {seed}{', quick' if quick else ''})", "", *describe, "", "| policy | test success |"]
    lines.append("|---|---|")
    lines += [f"| {key} | {format_metric(m['test']['success'])} |" for key, m in metrics.items()]
    atomic_write_text(out / "report.md", "\n".join(lines + report_tail(results, plots)))
    return results


def plot_reach_paths(path: Path, panels: Mapping[str, ReachRollouts], tasks: list[AvoidingTask], title: str) -> bool:
    """One panel per key: the first 8 goals (stars) with the paths played to them, green when they reached the
    goal and grey with a red cross otherwise; False without matplotlib."""
    plt = _pyplot()
    if plt is None:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 2.4), squeeze=False)
    for ax, (key, rollouts) in zip(axes[0], panels.items(), strict=True):
        for x, y in OBSTACLES:
            ax.add_patch(plt.Circle((x, y), OBSTACLE_RADIUS, color="black", alpha=0.8))
        shown = rollouts.goal_index < 8
        for i in np.flatnonzero(shown):
            positions, ok = rollouts.paths[i], rollouts.success[i]
            ax.plot(positions[:, 0], positions[:, 1], color="tab:green" if ok else "grey", lw=0.8, alpha=0.6)
            if not ok:
                ax.scatter([positions[-1, 0]], [positions[-1, 1]], marker="x", color="tab:red", s=14, zorder=4)
        goals = np.array([tasks[i].goal for i in np.flatnonzero(shown)], dtype=np.float64)
        ax.scatter(goals[:, 0], goals[:, 1], marker="*", color="tab:orange", s=60, zorder=5)
        for gx, gy in np.unique(goals, axis=0):
            ax.add_patch(plt.Circle((gx, gy), REACH_TOLERANCE, fill=False, color="tab:orange", lw=0.8))
        ax.set_title(f"{key}: {np.mean(rollouts.success):.0%} reached (all goals)", fontsize=9)
        ax.set_xlim(*ARENA_X)
        ax.set_ylim(*ARENA_Y)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
    return True


def hilp_keys(config: AvoidingHILPConfig) -> dict[str, KeySpec]:
    """The two keys of ``avoiding-hilp``."""
    hidden = list(config.hidden_sizes)
    return {
        "gcbc": KeySpec("goal_bc", {"hidden_sizes": hidden, "head": "mse"}, "relabeled"),
        # No clipping: the joint loss sums value regressions of very different scales (the paper clips none).
        "hilp": KeySpec(
            "hilp",
            {"hidden_sizes": hidden, "phi_hidden_sizes": hidden, "latent_dim": config.latent_dim},
            "play",
            grad_clip=0.0,
        ),
    }


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: AvoidingHILPConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``).

    ``config`` replaces the preset chosen by ``quick`` (``FULL`` or ``QUICK``).
    """
    config = config or (QUICK if quick else FULL)
    describe = [
        "Zero-shot goal reaching from undirected play: goal-conditioned BC on hindsight-relabeled play (`gcbc`)",
        "vs HILP (`hilp`: Hilbert representation + latent-direction policy, prompted with phi(g) - phi(s)).",
        f"Test: {config.test_goals} unseen goals x {config.starts_per_goal} starts; success within "
        f"{REACH_TOLERANCE} of the goal in {config.max_steps} steps; 95% intervals clustered by goal.",
    ]
    with torch_threads(1):  # small networks: extra intra-op threads buy nothing on a busy machine
        return run_reach_experiment(NAME, hilp_keys(config), out, seed, quick, show_progress, log, config, describe)


def reach_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(policy, test success)`` of formatted metrics."""
    return [(key, format_metric(splits["test"]["success"])) for key, splits in results["metrics"].items()]


__all__ = [
    "FULL",
    "NAME",
    "QUICK",
    "AvoidingHILPConfig",
    "KeySpec",
    "ReachRollouts",
    "evaluate_reach",
    "reach_table",
    "run",
    "run_reach_experiment",
]
