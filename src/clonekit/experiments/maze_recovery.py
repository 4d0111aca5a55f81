"""Experiment ``maze-recovery``: does recovery splicing (Agent-R-style) raise success after perturbations when
the demonstrations show only one route a maze?

**Setting.** Every episode starts at the free cell farthest from the goal (maze option ``start="farthest"``), so
the BFS expert's demonstrations follow one route a maze and show no way back from the cells off it: the
covariate shift recovery data is meant to fix.

**Data** (one pool of farthest-start BFS demonstrations on ``train_mazes`` plus ``spare_mazes`` more mazes):

* ``bc_clean``: one demonstration on each of the ``train_mazes`` training mazes.
* ``bc_recovery``: the same demonstrations plus recovery episodes. Source: ``recovery_per_maze`` perturbed
  expert rollouts on each training maze (:func:`~clonekit.quality.recovery.perturbed_rollouts`: the expert's
  route, one burst of ``burst`` random actions starting at a step drawn from ``[0, burst_window)``, with ``push``
  one random action repeated through the burst). Each is spliced
  (:func:`~clonekit.quality.recovery.recovery_episodes`, ``resume_after="perturbed"``): its recorded steps up to
  the end of the burst holding its first mistake (judged by the BFS expert), then the expert's continuation from
  where the burst left the agent; the burst's steps from the mistake on have weight 0 and training samples by
  weight. Bursts without a mistake give none.
* ``bc_more``: the demonstrations plus as many *new* expert labels spent on ordinary demonstrations: the next
  mazes of the pool, one demonstration each, until their steps reach the recovery episodes' labels.

**Labels.** ``expert_labels`` counts the expert actions a key's data holds that a demonstrator had to give: the
demonstrations' steps, plus for ``bc_recovery`` the continuation steps after each burst. The recorded prefix
before a burst repeats the demonstration's own steps (the same deterministic expert from the same start), so it
costs no new label; the burst's random actions are no labels.

**Evaluation** (BC, same settings and training steps each): the training mazes (``train``: the states the
demonstrations show) and ``test_mazes`` unseen mazes (``test``), each plain and perturbed (``*_perturbed``: the
same burst protocol as the recovery source, :class:`~clonekit.quality.recovery.BurstActionPolicy`,
``eval_episodes_per_maze`` episodes a maze). Metric ``success`` (cluster bootstrap over mazes), ``expert_labels``
and ``data_steps`` (counts). Every stage is resumable (``OUT/data/*``, ``OUT/runs/*``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clonekit.config import check, config_to_json
from clonekit.data import Dataset
from clonekit.envs import get_env_family
from clonekit.errors import ConfigError, DatasetError
from clonekit.evaluation import rollout, split_tasks
from clonekit.evaluation.plots import _pyplot, save_figure
from clonekit.evaluation.stats import format_metric
from clonekit.experiments.common import exact_metric, report_tail, results_head
from clonekit.experiments.quality_plots import errorbar
from clonekit.experts import make_expert
from clonekit.experts.collect import collect
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.policies import Policy
from clonekit.quality.curate import SOURCE_STREAM, WEIGHT_STREAM, curate
from clonekit.quality.recovery import RECOVERY, BurstActionPolicy, ExpertActor, perturbed_rollouts, recovery_episodes
from clonekit.quality.subset import write_subset
from clonekit.train import TrainConfig, train

NAME = "maze-recovery"
POLICIES = ("bc_clean", "bc_recovery", "bc_more")
SPLITS = ("train", "train_perturbed", "test", "test_perturbed")


@dataclass(frozen=True)
class MazeRecoveryConfig:
    """Settings of ``maze-recovery``.

    Args:
        maze_size: Side of the square mazes.
        train_mazes: Training mazes, one farthest-start demonstration each (``bc_clean``).
        spare_mazes: More mazes in the demonstration pool, from which ``bc_more`` takes its extra demonstrations.
        recovery_per_maze: Perturbed expert rollouts per training maze that recovery episodes are spliced from.
        burst: Random actions in a row of the perturbation (recovery source and ``*_perturbed`` splits).
        burst_window: The burst starts at a step drawn uniformly from ``[0, burst_window)``.
        push: One random action an episode repeated through the burst (a push in one direction) instead of a
            random action each step.
        test_mazes: Unseen mazes of the ``test`` splits.
        train_steps: Gradient steps of every policy.
        batch_size: Transitions per gradient step.
        eval_episodes_per_maze: Episodes per maze of the perturbed splits (the plain splits play each maze once:
            policy and start are deterministic).
    """

    maze_size: int = 11
    train_mazes: int = 60
    spare_mazes: int = 900
    recovery_per_maze: int = 16
    burst: int = 6
    burst_window: int = 12
    push: bool = True
    test_mazes: int = 200
    train_steps: int = 2000
    batch_size: int = 128
    eval_episodes_per_maze: int = 8

    def __post_init__(self) -> None:
        check(self.maze_size >= 5, "maze_size", ">= 5", self.maze_size)
        for name in (
            "train_mazes",
            "spare_mazes",
            "recovery_per_maze",
            "burst",
            "burst_window",
            "test_mazes",
            "train_steps",
            "batch_size",
            "eval_episodes_per_maze",
        ):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))


FULL = MazeRecoveryConfig()
QUICK = replace(FULL, maze_size=9, train_mazes=12, spare_mazes=200, recovery_per_maze=8, test_mazes=40, train_steps=300)

# Fields that decide the datasets in OUT/data (a resumed run must use the same ones).
DATA_FIELDS = ("maze_size", "train_mazes", "spare_mazes", "recovery_per_maze", "burst", "burst_window", "push")


def _check_data_settings(path: Path, config: MazeRecoveryConfig, seed: int) -> None:
    """Record the settings the datasets are made with at ``path``; refuse (``DatasetError``) other ones later."""
    settings = {"seed": seed, **{name: config_to_json(config)[name] for name in DATA_FIELDS}}
    if not path.exists():
        atomic_write_json(path, settings)
        return
    recorded = json.loads(path.read_text())
    changed = [name for name in settings if recorded.get(name) != settings[name]]
    if changed:
        raise DatasetError(f"{path}: the datasets here were made with other {', '.join(changed)}; use a fresh --out")


def recovery_labels(dataset: Dataset) -> int:
    """Expert labels the recovery episodes of ``dataset`` add: in each (``source`` = ``recovery``), the steps
    after its last zero-weight step (the expert's continuation)."""
    source = dataset.column(SOURCE_STREAM.name)
    weight = np.asarray(dataset.column(WEIGHT_STREAM.name))
    labels = 0
    for start, length in zip(dataset.episode_starts.tolist(), dataset.episode_lengths.tolist(), strict=True):
        if source[start] != RECOVERY:
            continue
        zeros = np.flatnonzero(weight[start : start + length] == 0)
        labels += length - (int(zeros[-1]) + 1 if zeros.size else 0)
    return labels


def datasets(out: Path, config: MazeRecoveryConfig, seed: int) -> dict[str, tuple[Dataset, str | None, int]]:
    """Policy key -> (its training data, its sample-weight stream, its expert labels); made once, reused from
    ``out/data``."""
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    _check_data_settings(data / "settings.json", config, seed)
    env_kwargs = {"size": config.maze_size, "start": "farthest"}
    n, pool_size = config.train_mazes, config.train_mazes + config.spare_mazes
    pool_path = data / "pool"
    pool = (
        Dataset.open(pool_path)
        if pool_path.exists()
        else collect(
            "maze",
            "bfs",
            episodes=pool_size,
            seed=seed,
            out=pool_path,
            num_tasks=pool_size,
            env_kwargs=env_kwargs,
            show_progress=False,
        )
    )
    family = get_env_family("maze")
    train_tasks = [family.task_from_json(t, **env_kwargs) for t in pool.env["tasks"][:n]]
    clean = write_subset(pool, data / "clean", list(range(n)), f"the first {n} demonstrations")
    perturbed = _pushed_once(data / "perturbed", config, train_tasks, n * config.recovery_per_maze, seed, env_kwargs)
    recovery_path = data / "recovery"
    if not recovery_path.exists():
        spliced = recovery_episodes(perturbed, "bfs", seed=seed, resume_after="perturbed")
        curate(clean, recovery_path, [], added=[spliced])
    recovery = Dataset.open(recovery_path)
    added = recovery_labels(recovery)
    spare = np.cumsum(pool.episode_lengths[n:])
    if spare.size == 0 or spare[-1] < added:
        raise ConfigError(
            f"spare_mazes: expected enough spare demonstrations for {added} more labels, got "
            f"{int(spare[-1]) if spare.size else 0} steps on {config.spare_mazes} mazes"
        )
    extra = int(np.searchsorted(spare, added)) + 1  # the fewest spare demonstrations holding >= added steps
    more = write_subset(pool, data / "more", list(range(n + extra)), f"the first {n + extra} demonstrations")
    return {
        "bc_clean": (clean, None, clean.num_steps),
        "bc_recovery": (recovery, "weight", clean.num_steps + added),
        "bc_more": (more, None, more.num_steps),
    }


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: MazeRecoveryConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``)."""
    config = config or (QUICK if quick else FULL)
    out.mkdir(parents=True, exist_ok=True)
    data = datasets(out, config, seed)
    clean = data["bc_clean"][0]
    family = get_env_family("maze")
    env_kwargs = dict(clean.env["kwargs"])
    tasks = {
        "train": [family.task_from_json(t, **env_kwargs) for t in clean.env["tasks"][: config.train_mazes]],
        "test": split_tasks(clean.env, "test", seed, config.test_mazes),
    }
    action_space = family.spaces(**env_kwargs)[1]
    splice_log = data["bc_recovery"][0].extra["curation"]["added"][0]
    log(
        f"demonstrations: {clean.num_episodes} ({clean.num_steps} steps); recovery episodes: "
        f"{splice_log['episodes']} (skipped: {splice_log['skipped']})"
    )
    metrics: dict[str, Any] = {}
    for key in POLICIES:
        dataset, _, labels = data[key]
        policy = _train(out, config, seed, key, data, show_progress)
        counts = {"expert_labels": exact_metric(labels), "data_steps": exact_metric(dataset.num_steps)}
        metrics[key] = {}
        for split, mazes in tasks.items():
            plain = rollout(policy, family, mazes, len(mazes), seed, env_kwargs)
            shaken = BurstActionPolicy(policy, action_space, config.burst, config.burst_window, seed, config.push)
            perturbed = rollout(shaken, family, mazes, config.eval_episodes_per_maze * len(mazes), seed, env_kwargs)
            metrics[key][split] = {"success": plain.metrics(seed)["success"], **counts}
            metrics[key][f"{split}_perturbed"] = {"success": perturbed.metrics(seed)["success"], **counts}
        cells = metrics[key]
        log(
            f"  {key:12s} "
            + ", ".join(f"{s} {format_metric(cells[s]['success'])}" for s in SPLITS)
            + f"; {labels} labels"
        )
    results = {
        **results_head(NAME, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
        "recovery": {k: v for k, v in splice_log.items() if k != "spliced"},
    }
    atomic_write_json(out / "results.json", results)
    plots = ["maze_recovery.png"] if _plot(results, out / "maze_recovery.png") else []
    atomic_write_text(out / "report.md", _report(results, plots))
    return results


def _pushed_once(
    path: Path, config: MazeRecoveryConfig, mazes: list[Any], episodes: int, seed: int, env_kwargs: dict[str, Any]
) -> Dataset:
    """BFS expert rollouts on ``mazes`` pushed once each by the experiment's protocol, at ``path`` (made once)."""
    if path.exists():
        return Dataset.open(path)
    return perturbed_rollouts(
        "maze",
        ExpertActor(make_expert("maze", "bfs")),
        tasks=mazes,
        episodes=episodes,
        seed=seed,
        rate=0.0,
        out=path,
        env_kwargs=env_kwargs,
        burst=config.burst,
        burst_window=config.burst_window,
        burst_repeat=config.push,
    )


def _train(
    out: Path,
    config: MazeRecoveryConfig,
    seed: int,
    key: str,
    data: dict[str, tuple[Dataset, str | None, int]],
    show_progress: bool,
) -> Policy:
    """BC on ``key``'s data (sampled by its weight stream), in ``out/runs/KEY``; reused when trained there."""
    dataset, weights, _ = data[key]
    settings = TrainConfig(
        steps=config.train_steps,
        batch_size=config.batch_size,
        seed=seed,
        tensorboard=False,
        val_fraction=0.0,
        sample_weights=weights,
    )
    return train(
        "bc", dataset, out / "runs" / key, settings, resume=True, same_settings=True, show_progress=show_progress
    )


def way_back_accuracy(
    out: Path,
    config: MazeRecoveryConfig,
    seed: int,
    pushes_per_maze: int = 16,
    show_progress: bool = False,
    keys: tuple[str, ...] = ("bc_clean", "bc_recovery"),
) -> dict[str, Any]:
    """The recovery claim at the step level: how often the policies ``keys`` (of :data:`POLICIES`) pick the
    expert's move on its way back after a push, at the states no demonstration visited.

    Plays ``pushes_per_maze`` held-out pushed expert rollouts on each training maze (the experiment's push
    protocol, another seed than the splices'); the states after each push's last step that are not among the
    demonstrations' observations are the probe, the expert's recorded moves its labels. Trains (or reuses, from
    ``out/runs``) the policies as :func:`run` does. Returns ``{"states": N, KEY: acc, ...}``."""
    data = datasets(out, config, seed)
    clean = data["bc_clean"][0]
    env_kwargs = dict(clean.env["kwargs"])
    family = get_env_family("maze")
    mazes = [family.task_from_json(t, **env_kwargs) for t in clean.env["tasks"][: config.train_mazes]]
    probe = _pushed_once(
        out / "data" / "probe", config, mazes, pushes_per_maze * config.train_mazes, seed + 10_000, env_kwargs
    )
    seen = {o.tobytes() for o in np.asarray(clean.column("obs"))}
    obs, labels = [], []
    for k in range(probe.num_episodes):
        steps = probe.episode(k)
        pushed = np.flatnonzero(np.asarray(steps["perturbed"]))
        if pushed.size == 0:
            continue
        back = np.arange(len(steps["action"])) > pushed[-1]
        for o, a in zip(np.asarray(steps["obs"])[back], np.asarray(steps["action"])[back], strict=True):
            if o.tobytes() not in seen:
                obs.append(o)
                labels.append(a)
    result: dict[str, Any] = {"states": len(labels)}
    for key in keys:
        policy = _train(out, config, seed, key, data, show_progress)
        policy.eval()
        if not labels:
            result[key] = float("nan")
            continue
        with torch.inference_mode():
            chosen, _ = policy.act({"obs": torch.from_numpy(np.stack(obs))}, policy.initial_state(len(obs)))
        result[key] = float((chosen.cpu().numpy() == np.asarray(labels)).mean())
    return result


def protocol_text(config: dict[str, Any]) -> str:
    """The perturbation protocol in words."""
    what = "one random action repeated (a push)" if config["push"] else "a random action each step"
    return (
        f"one burst of {config['burst']} steps an episode, {what}, starting at a step drawn uniformly from "
        f"[0, {config['burst_window']})"
    )


def _plot(results: dict[str, Any], path: Path) -> bool:
    plt = _pyplot()
    if plt is None:
        return False
    metrics = results["metrics"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, where in zip(axes, ("train", "test"), strict=True):
        for i, key in enumerate(POLICIES):
            errorbar(ax, i - 0.2, metrics[key][where]["success"], "C0", "plain" if i == 0 else None)
            errorbar(ax, i + 0.2, metrics[key][f"{where}_perturbed"]["success"], "C1", "perturbed" if i == 0 else None)
        labels = [f"{k}\n{int(metrics[k][where]['expert_labels']['mean'])} labels" for k in POLICIES]
        ax.set_xticks(range(len(POLICIES)), labels)
        ax.set_ylim(0, 1.05)
        ax.set_title("demonstrated mazes" if where == "train" else "unseen mazes")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("success (95% CI)")
    fig.suptitle(f"{results['experiment']} (seed {results['seed']}{', quick' if results['quick'] else ''})")
    save_figure(fig, path)
    return True


def _report(results: dict[str, Any], plots: list[str]) -> str:
    config, metrics = results["config"], results["metrics"]
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        f"{config['train_mazes']} training mazes ({config['maze_size']}x{config['maze_size']}), one demonstration "
        "each from the cell farthest from the goal.",
        f"Perturbation (recovery source and `*_perturbed` splits): {protocol_text(config)}.",
        f"Recovery source: {config['recovery_per_maze']} perturbed expert rollouts a training maze; "
        f"{results['recovery']['episodes']} spliced (skipped: {results['recovery']['skipped']}).",
        "Intervals over mazes: Wilson for the plain splits (one episode a maze), cluster bootstrap for the "
        "perturbed ones.",
        "",
        "| policy | train | train_perturbed | test | test_perturbed | expert labels | data steps |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in POLICIES:
        cells = metrics[key]
        lines.append(
            f"| {key} | "
            + " | ".join(format_metric(cells[s]["success"]) for s in SPLITS)
            + f" | {int(cells['train']['expert_labels']['mean'])} | {int(cells['train']['data_steps']['mean'])} |"
        )
    lines += report_tail(results, plots)
    return "\n".join(lines)


def success_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(key, train_perturbed success, test_perturbed success, expert labels)``."""
    rows: list[tuple[str, ...]] = []
    for key in POLICIES:
        cells = results["metrics"][key]
        rows.append(
            (
                key,
                format_metric(cells["train_perturbed"]["success"]),
                format_metric(cells["test_perturbed"]["success"]),
                str(int(cells["train"]["expert_labels"]["mean"])),
            )
        )
    return rows


__all__ = [
    "FULL",
    "NAME",
    "QUICK",
    "MazeRecoveryConfig",
    "datasets",
    "recovery_labels",
    "run",
    "success_table",
    "way_back_accuracy",
]
