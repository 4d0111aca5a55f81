"""Experiment ``maze-continual``: continual offline learning on a sequence of maze task groups (OER).

Task group ``g`` (``groups`` of them) is ``mazes_per_group`` mazes of its own (drawn from a seed derived from
``--seed`` and ``g``; no maze is in two groups) with ``episodes_per_group`` BFS-expert episodes. A BC policy
learns the groups one after another (:mod:`clonekit.continual`), each stage continuing from the previous
weights, with three replay policies (same buffer size for the two that replay):

* ``finetune``: no replay;
* ``replay_uniform``: ``buffer_size`` transitions of the earlier groups, drawn uniformly;
* ``oer``: the same number, chosen by OER's model-based experience selection (a forward dynamics model of each
  group rolls out the policy trained on it; the stored transitions nearest to those trajectories are kept).

Stage 1 has no replay, so the three share it (trained once, copied). After every stage each policy plays
``eval_episodes`` episodes (random start cells) on every group, seen or not. Metrics, each with a 95% interval
from a bootstrap over mazes (resampled within each group; the same draw for every stage):

* split ``stage_K``, ``success``: on the groups seen after stage ``K``; split ``seen`` (the final stage):
  ``success`` on every group (``seen:group_G`` per group), ``forgetting``: the mean over the earlier groups of
  (best success on the group at any stage before the last) - (final success), as in GEM / Chaudhry et al.;
  ``forward_transfer``: the mean over groups 2.. of (success on the group before its stage) - (an untrained
  policy's success on it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clonekit.checkpoint import load_run_config, read_json
from clonekit.config import check
from clonekit.continual import ContinualConfig, train_continual
from clonekit.continual.sequence import STATE_FILE
from clonekit.data import Dataset
from clonekit.envs import get_env_family
from clonekit.errors import DatasetError
from clonekit.evaluation import rollout, split_tasks
from clonekit.evaluation.plots import _pyplot, save_figure
from clonekit.evaluation.stats import N_RESAMPLES, format_metric, summarize
from clonekit.experiments.common import collected_once, report_tail, results_head
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.policies import build_policy
from clonekit.seeding import derive_seed
from clonekit.train import TrainConfig

NAME = "maze-continual"
KEYS = {"finetune": "none", "replay_uniform": "uniform", "oer": "oer"}


@dataclass(frozen=True)
class MazeContinualConfig:
    """Settings of ``maze-continual``.

    Args:
        maze_size: Side of the square mazes.
        groups: Task groups, learned one per stage (>= 2).
        mazes_per_group: Mazes of each group.
        episodes_per_group: BFS-expert episodes of each group (episode ``k`` on maze ``k % mazes_per_group``).
        eval_episodes: Evaluation episodes per policy, stage and group.
        stage_steps: Gradient steps per stage.
        batch_size: Transitions per gradient step.
        lr: Adam learning rate.
        hidden_sizes: BC's MLP widths after its conv layers.
        buffer_size: Replay transitions of the earlier groups, in all (``replay_uniform`` and ``oer``).
        replay_share: Fraction of every batch drawn from the replay.
        model_steps: Gradient steps of each group's forward dynamics model (``oer``).
        rollout_starts: Model rollouts per group (``oer``).
        rollout_horizon: Steps of each model rollout at most (``oer``).
    """

    maze_size: int = 9
    groups: int = 4
    mazes_per_group: int = 8
    episodes_per_group: int = 120
    eval_episodes: int = 200
    stage_steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3
    hidden_sizes: tuple[int, ...] = (128,)
    buffer_size: int = 300
    replay_share: float = 0.5
    model_steps: int = 500
    rollout_starts: int = 120
    rollout_horizon: int = 40

    def __post_init__(self) -> None:
        check(self.maze_size >= 5, "maze_size", ">= 5", self.maze_size)
        check(self.groups >= 2, "groups", ">= 2", self.groups)
        for name in (
            "mazes_per_group",
            "episodes_per_group",
            "eval_episodes",
            "stage_steps",
            "batch_size",
            "buffer_size",
            "model_steps",
            "rollout_starts",
            "rollout_horizon",
        ):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check(self.lr > 0, "lr", "> 0", self.lr)
        check(len(self.hidden_sizes) >= 1, "hidden_sizes", "at least one width", self.hidden_sizes)
        check(0 < self.replay_share < 1, "replay_share", "in (0, 1)", self.replay_share)


FULL = MazeContinualConfig()
QUICK = replace(
    FULL,
    maze_size=7,
    groups=3,
    mazes_per_group=4,
    episodes_per_group=40,
    eval_episodes=40,
    stage_steps=300,
    batch_size=64,
    hidden_sizes=(64,),
    buffer_size=100,
    model_steps=200,
    rollout_starts=40,
    rollout_horizon=24,
)


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: MazeContinualConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``)."""
    config = config or (QUICK if quick else FULL)
    out.mkdir(parents=True, exist_ok=True)
    groups = _group_datasets(out, config, seed)
    log(f"{config.groups} groups of {config.mazes_per_group} mazes, {[g.num_steps for g in groups]} steps")
    family = get_env_family("maze")
    env_kwargs = {"size": config.maze_size}
    tasks = [split_tasks(g.env, "train", seed, 1) for g in groups]
    train_config = TrainConfig(
        batch_size=config.batch_size,
        lr=config.lr,
        checkpoint_every=max(config.stage_steps // 2, 1),
        keep_checkpoints=1,
        tensorboard=False,
        val_fraction=0.0,
    )
    overrides = {"hidden_sizes": list(config.hidden_sizes)}

    def evaluate(policy: Any) -> np.ndarray:
        """Per-maze success ``(groups * mazes,)`` of ``policy`` on every group."""
        per_maze = []
        for g, group_tasks in enumerate(tasks):
            episodes = rollout(
                policy, family, group_tasks, config.eval_episodes, derive_seed(seed, f"eval:{g}"), env_kwargs
            )
            counts = np.bincount(episodes.task_index, minlength=len(group_tasks))
            wins = np.bincount(episodes.task_index, weights=episodes.success, minlength=len(group_tasks))
            per_maze.append(wins / np.maximum(counts, 1))
        return np.concatenate(per_maze)

    matrices: dict[str, np.ndarray] = {}  # key -> (stages, groups * mazes) per-maze success
    first_stage = None
    for key, replay in KEYS.items():
        continual = ContinualConfig(
            replay=replay,
            buffer_size=config.buffer_size,
            replay_share=config.replay_share,
            stage_steps=config.stage_steps,
            model_steps=config.model_steps,
            rollout_starts=config.rollout_starts,
            rollout_horizon=config.rollout_horizon,
        )
        result = train_continual(
            "bc",
            groups,
            out / "runs" / key,
            continual,
            train_config,
            overrides,
            seed=seed,
            show_progress=show_progress,
            first_stage=first_stage,
        )
        first_stage = result.stage_dir(0)
        matrices[key] = np.stack([evaluate(result.policy(k)) for k in range(config.groups)])
        log(f"  {key:15s} final success per group {np.round(_group_means(matrices[key][-1], config), 2).tolist()}")
    torch.manual_seed(derive_seed(seed, "maze-continual:untrained"))
    stage_0 = load_run_config(out / "runs" / "finetune" / "stage_0")
    untrained = evaluate(build_policy("bc", stage_0["policy_config"]))
    metrics = {key: _metrics(matrices[key], untrained, config, seed) for key in KEYS}
    results = {
        **results_head(NAME, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
        "success_matrix": {key: _group_means(m, config).tolist() for key, m in matrices.items()},
        "untrained_success": _group_means(untrained, config).tolist(),
        "replay": {key: _replay_records(out / "runs" / key) for key in KEYS},
        "data": [{"episodes": g.num_episodes, "steps": g.num_steps} for g in groups],
    }
    atomic_write_json(out / "results.json", results)
    plots = ["maze_continual.png"] if _plot(results, out / "maze_continual.png") else []
    atomic_write_text(out / "report.md", _report(results, plots))
    return results


def _replay_records(run_dir: Path) -> list[dict[str, Any]]:
    """The per-stage replay records of a continual run (``continual.json``)."""
    return list(read_json(run_dir / STATE_FILE, "continual run")["stages"])


def _group_datasets(out: Path, config: MazeContinualConfig, seed: int) -> list[Dataset]:
    """One BFS-expert dataset per group, collected once (a rerun checks they fit); no maze in two groups."""
    datasets = []
    for g in range(config.groups):
        path = out / "data" / f"group_{g + 1}"
        group_seed = derive_seed(seed, f"maze-continual:group:{g}") % 2**31
        dataset = collected_once(
            path,
            "maze",
            "bfs",
            seed=group_seed,
            episodes=config.episodes_per_group,
            num_tasks=config.mazes_per_group,
            env_kwargs={"size": config.maze_size},
            show_progress=False,
        )
        datasets.append(dataset)
    layouts = [t["layout"] for d in datasets for t in d.env["tasks"]]
    if len(set(layouts)) != len(layouts):
        raise DatasetError(f"{out / 'data'}: a maze was drawn in two groups; use another --seed")
    return datasets


def _group_means(per_maze: np.ndarray, config: MazeContinualConfig) -> np.ndarray:
    """``(..., groups * mazes)`` -> ``(..., groups)``."""
    return per_maze.reshape(*per_maze.shape[:-1], config.groups, config.mazes_per_group).mean(axis=-1)


def _forgetting(groups_success: np.ndarray) -> np.ndarray:
    """``(stages, R, groups)`` -> ``(R,)``: mean over the earlier groups of best-before-last minus final."""
    last = groups_success.shape[0] - 1
    drops = [groups_success[g:last, :, g].max(axis=0) - groups_success[last, :, g] for g in range(last)]
    return np.mean(drops, axis=0)


def _forward_transfer(groups_success: np.ndarray, untrained: np.ndarray) -> np.ndarray:
    """``(stages, R, groups)``, ``(R, groups)`` -> ``(R,)``: mean over groups 2.. of success before its stage
    minus the untrained policy's."""
    stages = groups_success.shape[0]
    return np.mean([groups_success[g - 1, :, g] - untrained[:, g] for g in range(1, stages)], axis=0)


def _metrics(matrix: np.ndarray, untrained: np.ndarray, config: MazeContinualConfig, seed: int) -> dict[str, Any]:
    """Metrics of one key from its per-maze success ``(stages, groups * mazes)`` (see the module docstring)."""
    m = config.mazes_per_group
    mazes = np.arange(config.groups * m)
    out: dict[str, Any] = {}
    for k in range(config.groups):
        seen = mazes < (k + 1) * m
        out[f"stage_{k + 1}"] = {"success": summarize(matrix[k, seen], seed)}
    # Mazes resampled within each group, the same draw for every stage and for the untrained policy.
    rng = np.random.default_rng(derive_seed(seed, "maze-continual:bootstrap"))
    draws = rng.integers(0, m, size=(N_RESAMPLES, config.groups, m)) + (np.arange(config.groups) * m)[None, :, None]
    resampled = matrix[:, draws].mean(axis=-1)  # (stages, R, groups)
    observed = _group_means(matrix, config)[:, None, :]  # (stages, 1, groups)
    base = untrained[draws].mean(axis=-1)  # (R, groups)
    base_observed = _group_means(untrained, config)[None, :]
    n = {"n": int(config.groups * m), "n_tasks": int(config.groups * m), "method": "bootstrap_over_mazes_within_groups"}
    out["seen"] = {
        "success": summarize(matrix[-1], seed),
        "forgetting": {
            "mean": float(_forgetting(observed)[0]),
            "ci95": _interval(_forgetting(resampled)),
            **n,
        },
        "forward_transfer": {
            "mean": float(_forward_transfer(observed, base_observed)[0]),
            "ci95": _interval(_forward_transfer(resampled, base)),
            **n,
        },
    }
    for g in range(config.groups):
        out[f"seen:group_{g + 1}"] = {"success": summarize(matrix[-1, g * m : (g + 1) * m], seed)}
    return out


def _interval(values: np.ndarray) -> list[float]:
    lo, hi = np.quantile(values, [0.025, 0.975])
    return [float(lo), float(hi)]


def _plot(results: dict[str, Any], path: Path) -> bool:
    plt = _pyplot()
    if plt is None:
        return False
    keys = list(KEYS)
    fig, axes = plt.subplots(1, len(keys) + 1, figsize=(4.0 * (len(keys) + 1), 3.6))
    for ax, key in zip(axes, keys, strict=False):
        matrix = np.asarray(results["success_matrix"][key])  # (stages, groups)
        stages = np.arange(1, matrix.shape[0] + 1)
        for g in range(matrix.shape[1]):
            ax.plot(stages[g:], matrix[g:, g], marker="o", label=f"group {g + 1}")
            ax.plot(stages[: g + 1], matrix[: g + 1, g], ls=":", color=f"C{g}", alpha=0.5)
        ax.set_xticks(stages)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("after stage")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("success on the group's mazes")
    axes[0].legend(fontsize=8, loc="lower left")
    ax = axes[-1]
    cells = [results["metrics"][key]["seen"]["forgetting"] for key in keys]
    ax.bar(
        range(len(keys)),
        [c["mean"] for c in cells],
        yerr=[[c["mean"] - c["ci95"][0] for c in cells], [c["ci95"][1] - c["mean"] for c in cells]],
        capsize=4,
        color=["#8c8c8c", "#4c72b0", "#dd8452"],
    )
    ax.set_xticks(range(len(keys)), keys)
    ax.set_title("forgetting (95% CI), lower is better")
    ax.axhline(0, color="k", lw=0.8)
    ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{results['experiment']} (seed {results['seed']}): dotted = before the group's stage")
    save_figure(fig, path, dpi=110)
    return True


def _report(results: dict[str, Any], plots: list[str]) -> str:
    config = results["config"]
    size = config["maze_size"]
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        f"{config['groups']} groups of {config['mazes_per_group']} {size}x{size} mazes, "
        f"{config['episodes_per_group']} BFS-expert episodes each, learned one group per stage by BC",
        f"({config['stage_steps']} steps a stage, continuing from the previous weights). `replay_uniform` and `oer` "
        f"replay {config['buffer_size']} transitions of the earlier groups",
        f"({config['replay_share']:.0%} of every batch). Intervals: bootstrap over mazes within groups.",
        "",
        "| policy | final success, all groups | forgetting | forward transfer |",
        "|---|---|---|---|",
    ]
    for key in KEYS:
        seen = results["metrics"][key]["seen"]
        lines.append(
            f"| {key} | {format_metric(seen['success'])} | {format_metric(seen['forgetting'])} | "
            f"{format_metric(seen['forward_transfer'])} |"
        )
    lines += ["", "Success per group (columns) after each stage (rows):", ""]
    for key in KEYS:
        lines += [
            f"**{key}**",
            "",
            "| after stage | " + " | ".join(f"group {g + 1}" for g in range(config["groups"])) + " |",
        ]
        lines.append("|---" * (config["groups"] + 1) + "|")
        for k, row in enumerate(results["success_matrix"][key]):
            lines.append(f"| {k + 1} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
        lines.append("")
    lines += report_tail(results, plots)
    return "\n".join(lines)


def success_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(key, final success, forgetting, forward transfer)``."""
    rows: list[tuple[str, ...]] = []
    for key in KEYS:
        seen = results["metrics"][key]["seen"]
        rows.append(
            (
                key,
                format_metric(seen["success"]),
                format_metric(seen["forgetting"]),
                format_metric(seen["forward_transfer"]),
            )
        )
    return rows


__all__ = ["FULL", "KEYS", "NAME", "QUICK", "MazeContinualConfig", "run", "success_table"]
