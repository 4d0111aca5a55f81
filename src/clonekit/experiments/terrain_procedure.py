"""Experiment ``terrain-procedure``: procedure cloning of a cheapest-route search on weighted-terrain grids, on
unseen grids of the training size and larger, against behaviour cloning on the same episodes.

The second procedure-cloning domain after the BFS maze (``maze-procedure``, ``maze-procedure-size``): on
terrain grids (:mod:`clonekit.envs.terrain`, mazes with mud that costs ``mud_cost`` a move, road 1) the expert
runs Dijkstra's search from the goal and writes its cost-to-go map, level by level, as the procedure
(:mod:`clonekit.experts.dijkstra`). Collect its demonstrations on ``num_grids`` training grids of side
``train_size``, then train:

* ``pc``: ``weighted_procedure_cloning`` on the native maps; its search step is fully convolutional, so it runs
  on a grid of any size as it is.
* ``bc``: the usual conv BC, on the same episodes observed in the top-left corner of a ``canvas`` x ``canvas``
  map (the largest test size) padded with wall (env option ``canvas``), in training and in evaluation.

Both play the same episodes: ``train`` (the training grids, new start cells) and ``testS`` for every ``S`` in
``test_sizes`` (unseen grids of side ``S``), with the env's budget of ``S * S / 2`` moves. Metrics: ``success``
and ``cost_efficiency``, the expert's route cost from the episode's start over the policy's route cost on a
success and 0 on a failure (success weighted by path cost, as SPL weighs success by path length: 1 is the
expert). ``pc`` also reports ``search_exact``: the fraction of grids on which its search, run until it settles
the dearest cell, labels every cell as the expert's Dijkstra does. For reference the results give, per split,
the cost efficiency of the breadth-first (fewest-moves) route from the same starts (``reference.bfs_route``):
what a search that ignores the terrain would score.

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
from clonekit.envs.maze import MOVES, MazeTask, bfs_from_goal
from clonekit.envs.terrain import (
    AGENT,
    GOAL,
    MUD,
    NUM_CHANNELS,
    WALL,
    TerrainFamily,
    TerrainTask,
    TerrainVecEnv,
    dijkstra_from_goal,
    route_cost,
)
from clonekit.evaluation import rollout, split_tasks
from clonekit.evaluation.plots import _pyplot, save_figure
from clonekit.evaluation.rollout import RolloutWatcher
from clonekit.evaluation.stats import format_metric, summarize
from clonekit.experiments.common import collected_once, report_tail, results_head
from clonekit.experts.bfs import LABEL, procedure_maps
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.policies import Policy
from clonekit.policies.weighted_procedure_cloning import WeightedProcedureCloningPolicy
from clonekit.train import TrainConfig, train

NAME = "terrain-procedure"
KEYS = ("bc", "pc")
POLICY_OF_KEY = {"bc": "bc", "pc": "weighted_procedure_cloning"}


@dataclass(frozen=True)
class TerrainProcedureConfig:
    """Settings of ``terrain-procedure``.

    Args:
        train_size: Side of the training grids.
        test_sizes: Sides of the unseen test grids (splits ``testS``); BC's canvas is the largest of these and
            ``train_size``.
        mud_cost: Cost of a move into mud (road costs 1).
        num_grids: Number of training grids.
        episodes_per_grid: Expert demonstrations per training grid (random start cells).
        test_grids: Unseen grids per test split.
        eval_episodes: Episodes per (policy, split) cell.
        bc_steps: Gradient steps for BC.
        pc_steps: Gradient steps for weighted procedure cloning.
        batch_size: Transitions per gradient step.
        lr: Adam learning rate of BC.
        pc_lr: Adam learning rate of weighted procedure cloning (at ``lr`` its search was still close to a
            breadth-first one after the quick preset's steps: training-batch ``map_exact`` 0.58 at 300 steps).
    """

    train_size: int = 16
    test_sizes: tuple[int, ...] = (16, 24, 32)
    mud_cost: int = 3
    num_grids: int = 20
    episodes_per_grid: int = 20
    test_grids: int = 50
    eval_episodes: int = 200
    bc_steps: int = 1000
    pc_steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3
    pc_lr: float = 3e-3

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
        check(2 <= self.mud_cost <= 64, "mud_cost", "in [2, 64]", self.mud_cost)
        for name in ("num_grids", "episodes_per_grid", "test_grids", "eval_episodes"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        for name in ("bc_steps", "pc_steps", "batch_size"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check(self.lr > 0, "lr", "> 0", self.lr)
        check(self.pc_lr > 0, "pc_lr", "> 0", self.pc_lr)

    @property
    def canvas(self) -> int:
        """Side of BC's observation canvas: the largest grid it meets."""
        return max(self.train_size, *self.test_sizes)

    @property
    def splits(self) -> tuple[str, ...]:
        """``train``, then ``testS`` per test size."""
        return ("train", *(f"test{s}" for s in self.test_sizes))


FULL = TerrainProcedureConfig()
QUICK = replace(
    FULL,
    num_grids=10,
    episodes_per_grid=4,
    test_grids=20,
    eval_episodes=40,
    bc_steps=300,
    pc_steps=300,
    batch_size=64,
)


def env_kwargs(key: str, size: int, config: TerrainProcedureConfig) -> dict[str, Any]:
    """The terrain env options policy ``key`` plays (and ``bc`` learns) grids of side ``size`` with."""
    return {"size": size, "mud_cost": config.mud_cost, **({"canvas": config.canvas} if key == "bc" else {})}


def _dataset(out: Path, key: str, config: TerrainProcedureConfig, seed: int, show_progress: bool) -> Dataset:
    """The demonstrations of ``key`` in ``out/data/KEY``: the same episodes for both keys (BC's on the canvas)."""
    return collected_once(
        out / "data" / key,
        "terrain",
        "dijkstra",
        seed=seed,
        episodes=config.num_grids * config.episodes_per_grid,
        num_tasks=config.num_grids,
        env_kwargs=env_kwargs(key, config.train_size, config),
        show_progress=show_progress,
    )


def split_grids(dataset: Dataset, config: TerrainProcedureConfig, seed: int) -> dict[str, list[TerrainTask]]:
    """The grids of every split: the training grids, then ``test_grids`` unseen grids per test size (those of the
    training size exclude the training layouts)."""
    family = get_env_family("terrain")
    train_tasks = split_tasks(dataset.env, "train", seed, config.num_grids)
    exclude = {family.task_key(t) for t in train_tasks}
    tasks = {"train": train_tasks}
    for size in config.test_sizes:
        tasks[f"test{size}"] = family.sample_tasks(seed, "test", config.test_grids, exclude, size=size)
    return tasks


class RouteCosts(RolloutWatcher):
    """Records, per episode of a :func:`~clonekit.evaluation.rollout` on terrain grids, the cheapest route cost
    from its start (``optimal``), the breadth-first route's cost from it (``bfs``) and the policy's route cost
    (``taken``, read when the rollout ends)."""

    def __init__(self, mud_cost: int) -> None:
        self.mud_cost = mud_cost
        self.vecs: list[TerrainVecEnv] = []
        self.optimal: list[int] = []
        self.bfs: list[int] = []
        self._fields: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _field(self, task: TerrainTask) -> tuple[np.ndarray, np.ndarray]:
        """The task's cost-to-go map and breadth-first move field (searched once per grid)."""
        if task.layout_hash not in self._fields:
            cost_to_go, _ = dijkstra_from_goal(task, self.mud_cost)
            _, bfs_direction = bfs_from_goal(MazeTask(task.terrain_seed, task.walls, task.goal))
            self._fields[task.layout_hash] = (cost_to_go, bfs_direction)
        return self._fields[task.layout_hash]

    def start_wave(self, first: int, vec: Any) -> None:
        self.vecs.append(vec)
        for task, (r, c) in zip(vec.tasks, vec.agents, strict=True):
            cost_to_go, bfs_direction = self._field(task)
            self.optimal.append(int(cost_to_go[r, c]))
            self.bfs.append(route_cost(task, bfs_direction, (int(r), int(c)), self.mud_cost))

    def taken(self) -> np.ndarray:
        """``(N,)`` int64 route cost of every episode (final, once the rollout has ended)."""
        return np.concatenate([vec.path_cost for vec in self.vecs]).astype(np.int64)


def cost_efficiency(success: np.ndarray, optimal: np.ndarray, taken: np.ndarray) -> np.ndarray:
    """``(N,)`` per-episode cost efficiency: ``optimal / taken`` on a success, 0 on a failure."""
    return np.where(success, optimal / np.maximum(taken, 1), 0.0)


def search_exact(policy: WeightedProcedureCloningPolicy, tasks: list[TerrainTask], mud_cost: int) -> np.ndarray:
    """``(len(tasks),)`` bool: whether ``policy``'s search, run until it settles the dearest cell (the agent is put
    there), labels every cell exactly as the expert's full Dijkstra search does."""
    h, w = tasks[0].walls.shape
    obs = np.zeros((len(tasks), NUM_CHANNELS, h, w), dtype=np.uint8)
    truth = np.zeros((len(tasks), h, w), dtype=np.int64)
    for i, task in enumerate(tasks):
        cost_to_go, direction = dijkstra_from_goal(task, mud_cost)
        truth[i] = procedure_maps(cost_to_go[None], direction[None], np.array([cost_to_go.max()]))[0, LABEL]
        obs[i, WALL], obs[i, MUD] = task.walls, task.mud
        obs[i, GOAL][task.goal] = 1
        obs[i, AGENT].flat[int(cost_to_go.argmax())] = 1
    with torch.inference_mode():
        labels = policy.explain({"obs": torch.from_numpy(obs)})["procedure_labels"].numpy()
    return (labels == truth).reshape(len(tasks), -1).all(axis=1)


def run_key(
    out: Path,
    key: str,
    dataset: Dataset,
    tasks: dict[str, list[TerrainTask]],
    config: TerrainProcedureConfig,
    seed: int,
    show_progress: bool = False,
) -> tuple[dict[str, Any], dict[str, Any], Policy]:
    """Train (or resume) ``key`` in ``out/runs/KEY`` and evaluate it on every split; returns ``({split: metrics},
    {split: the breadth-first route's metrics on the same episodes}, policy)``."""
    steps, lr = (config.bc_steps, config.lr) if key == "bc" else (config.pc_steps, config.pc_lr)
    train_config = TrainConfig(steps=steps, batch_size=config.batch_size, lr=lr, seed=seed, checkpoint_every=500)
    policy = train(
        POLICY_OF_KEY[key],
        dataset,
        out / "runs" / key,
        train_config,
        resume=True,
        same_settings=True,
        show_progress=show_progress,
    )
    family = get_env_family("terrain")
    metrics: dict[str, Any] = {}
    reference: dict[str, Any] = {}
    for split, grids in tasks.items():
        kwargs = env_kwargs(key, grids[0].walls.shape[0], config)
        costs = RouteCosts(config.mud_cost)
        results = rollout(policy, family, grids, config.eval_episodes, seed, env_kwargs=kwargs, watcher=costs)
        metrics[split] = results.metrics(seed)
        optimal = np.array(costs.optimal)
        efficiency = cost_efficiency(results.success, optimal, costs.taken())
        metrics[split]["cost_efficiency"] = summarize(efficiency, seed, groups=results.task_index)
        bfs = optimal / np.array(costs.bfs)
        reference[split] = {
            "cost_efficiency": summarize(bfs, seed, groups=results.task_index),
            "worse_than_cheapest": summarize(bfs < 1, seed, groups=results.task_index),
        }
        if isinstance(policy, WeightedProcedureCloningPolicy):
            metrics[split]["search_exact"] = summarize(search_exact(policy, grids, config.mud_cost), seed)
    return metrics, reference, policy


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: TerrainProcedureConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``).

    ``config`` replaces the preset chosen by ``quick`` (``FULL`` or ``QUICK``).
    """
    config = config or (QUICK if quick else FULL)
    out.mkdir(parents=True, exist_ok=True)
    datasets = {key: _dataset(out, key, config, seed, show_progress) for key in KEYS}
    data = datasets["pc"]
    log(f"{config.num_grids} training grids {config.train_size}x{config.train_size}: {data.num_episodes} episodes,")
    log(f"  {data.num_steps} steps (bc: the same episodes on a {config.canvas}x{config.canvas} wall canvas)")
    tasks = split_grids(data, config, seed)
    metrics: dict[str, dict[str, Any]] = {}
    policies: dict[str, Policy] = {}
    reference: dict[str, Any] = {}
    for key in KEYS:
        # Both keys play the same episodes, so the breadth-first route's metrics are the same for either.
        metrics[key], reference, policies[key] = run_key(out, key, datasets[key], tasks, config, seed, show_progress)
        for split in config.splits:
            m = metrics[key][split]
            log(
                f"  {key:3s} {split:7s} success {format_metric(m['success'])}"
                f"  cost efficiency {format_metric(m['cost_efficiency'])}"
            )
    results = {
        **results_head(NAME, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
        "reference": {"bfs_route": reference},
        "canvas": config.canvas,
        "max_steps": {split: ts[0].walls.shape[0] ** 2 // 2 for split, ts in tasks.items()},
    }
    atomic_write_json(out / "results.json", results)
    plots = plot_sizes(out / "sizes.png", results, config)
    largest = tasks[f"test{max(config.test_sizes)}"][0]
    plots += plot_search(out / "search.png", policies, largest, config)
    atomic_write_text(out / "report.md", _report(results, config, plots))
    return results


def plot_sizes(path: Path, results: dict[str, Any], config: TerrainProcedureConfig) -> list[str]:
    """Success and cost efficiency on unseen grids against grid size, one line per key (95% intervals), and the
    breadth-first route's efficiency; ``[]`` without matplotlib."""
    plt = _pyplot()
    if plt is None:
        return []
    sizes = list(config.test_sizes)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, metric in zip(axes, ("success", "cost_efficiency"), strict=True):
        lines = {key: [splits[f"test{s}"][metric] for s in sizes] for key, splits in results["metrics"].items()}
        if metric == "cost_efficiency":
            lines["bfs route (reference)"] = [
                results["reference"]["bfs_route"][f"test{s}"]["cost_efficiency"] for s in sizes
            ]
        for label, cells in lines.items():
            means = np.array([c["mean"] for c in cells])
            lows = means - np.array([c["ci95"][0] for c in cells])
            highs = np.array([c["ci95"][1] for c in cells]) - means
            style = ":" if label.startswith("bfs") else "-"
            ax.errorbar(sizes, means, yerr=[lows, highs], marker="o", capsize=4, ls=style, label=label)
        ax.axvline(config.train_size, color="grey", ls=":", lw=1)
        ax.set_xticks(sizes)
        ax.set_xlabel("grid side (unseen grids)")
        ax.set_ylabel(f"{metric.replace('_', ' ')} (95% CI)")
        ax.set_ylim(-0.03, 1.05)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="center right")
    fig.suptitle(f"{NAME}: trained on {config.train_size}x{config.train_size} terrain grids", fontsize=10)
    save_figure(fig, path)
    return [path.name]


def _route(policy: Policy, task: TerrainTask, start: np.ndarray, kwargs: dict[str, Any]) -> tuple[np.ndarray, int]:
    """Cells ``(T + 1, 2)`` ``policy`` visits from ``start`` on ``task`` (observed with env ``kwargs``), and the
    route's cost."""
    vec = TerrainFamily().make_vec([task], **kwargs)
    obs = vec.reset(starts=start[None])
    path, state = [start.copy()], policy.initial_state(1)
    while not vec.done[0]:
        with torch.inference_mode():
            action, state = policy.act({"obs": torch.from_numpy(obs)}, state)
        obs, *_ = vec.step(action.numpy())
        path.append(vec.agents[0].copy())
    return np.array(path), int(vec.path_cost[0])


def plot_search(
    path: Path, policies: dict[str, Policy], task: TerrainTask, config: TerrainProcedureConfig
) -> list[str]:
    """An unseen grid of the largest size, from its dearest cell: left, the terrain and the routes of pc, bc and
    the breadth-first expert with their costs; right, pc's predicted cost-to-go map, with a cross on every cell
    whose predicted move differs from the expert's. ``[]`` without matplotlib."""
    plt = _pyplot()
    if plt is None:
        return []
    cost_to_go, direction = dijkstra_from_goal(task, config.mud_cost)
    start = np.array(np.unravel_index(int(cost_to_go.argmax()), cost_to_go.shape))
    size = task.walls.shape[0]
    vec = TerrainFamily().make_vec([task], **env_kwargs("pc", size, config))
    with torch.inference_mode():
        explained = policies["pc"].explain({"obs": torch.from_numpy(vec.reset(starts=start[None]))})
    assert explained is not None, "weighted procedure cloning always explains its search"
    labels, levels = explained["procedure_labels"][0].numpy(), explained["cost_to_go"][0].numpy()
    truth = procedure_maps(cost_to_go[None], direction[None], np.array([cost_to_go.max()]))[0, LABEL]
    _, bfs_direction = bfs_from_goal(MazeTask(task.terrain_seed, task.walls, task.goal))
    routes = {key: _route(policies[key], task, start, env_kwargs(key, size, config)) for key in KEYS}
    cells = [start]
    while tuple(cells[-1]) != task.goal:
        cells.append(cells[-1] + MOVES[bfs_direction[tuple(cells[-1])]])
    bfs_cost = route_cost(task, bfs_direction, (int(start[0]), int(start[1])), config.mud_cost)
    routes["bfs route"] = (np.array(cells), bfs_cost)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.6))
    terrain = np.ones((*task.walls.shape, 3))
    terrain[task.mud] = (0.78, 0.62, 0.42)
    terrain[task.walls] = (0.15, 0.15, 0.2)
    left.imshow(terrain)
    for (name, (route, cost)), color in zip(routes.items(), ("tab:red", "tab:orange", "tab:blue"), strict=True):
        ending = "" if tuple(route[-1]) == task.goal else ", goal not reached"
        label = f"{name}: cost {cost}{ending}"
        left.plot(route[:, 1], route[:, 0], "-", color=color, lw=2.4, alpha=0.85, label=label)
    left.set_title(f"unseen {size}x{size} grid: mud (brown) costs {config.mud_cost}, road 1", fontsize=9)
    shown = right.imshow(np.ma.masked_where(levels < 0, levels), cmap="viridis")
    right.imshow(np.ma.masked_where(~task.walls, np.ones_like(levels)), cmap="gray", vmin=0, vmax=4)
    fig.colorbar(shown, ax=right, fraction=0.046, label="cost-to-go pc predicts")
    wrong = np.argwhere(labels != truth)
    right.scatter(
        wrong[:, 1], wrong[:, 0], marker="x", color="tab:red", s=30, label=f"move not the expert's ({len(wrong)})"
    )
    right.set_title(f"pc's search (expert's cheapest cost from the start: {cost_to_go.max()})", fontsize=9)
    for ax in (left, right):
        ax.scatter([task.goal[1]], [task.goal[0]], marker="*", s=260, color="tab:green", zorder=5, label="goal")
        ax.scatter([start[1]], [start[0]], marker="o", s=90, color="black", zorder=5, label="start")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=3)
    save_figure(fig, path)
    return [path.name]


def _report(results: dict[str, Any], config: TerrainProcedureConfig, plots: list[str]) -> str:
    train = config.train_size
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        f"Both policies learn from the same Dijkstra-expert episodes on {config.num_grids} terrain grids of "
        f"{train}x{train} (mud costs {config.mud_cost} a move, road 1).",
        "`pc` (weighted procedure cloning) runs its learned search level natively on every size; `bc` sees every",
        f"grid in the top-left corner of a {results['canvas']}x{results['canvas']} canvas padded with wall, in "
        "training and in evaluation.",
        "`train`: the training grids (new start cells); `testS`: unseen grids of side S; S*S/2 moves for side S.",
        "95% intervals: a cluster bootstrap over grids (the Wilson interval over grids when every episode agrees).",
        "`cost_efficiency`: the cheapest route's cost over the policy's on a success, 0 on a failure.",
        "",
        "| policy | metric | " + " | ".join(config.splits) + " |",
        "|---|---|" + "---|" * len(config.splits),
    ]
    for key, splits in results["metrics"].items():
        for metric in ("success", "cost_efficiency"):
            cells = " | ".join(format_metric(splits[s][metric]) for s in config.splits)
            lines.append(f"| {key} | {metric} | {cells} |")
    bfs = results["reference"]["bfs_route"]
    cells = " | ".join(format_metric(bfs[s]["cost_efficiency"]) for s in config.splits)
    lines.append(f"| bfs route (reference) | cost_efficiency | {cells} |")
    cells = " | ".join(format_metric(bfs[s]["worse_than_cheapest"]) for s in config.splits)
    lines.append(f"| bfs route (reference) | dearer than cheapest | {cells} |")
    lines += [
        "",
        "`pc` search exact: the fraction of grids on which its search, run until it settles the dearest cell,",
        "labels every cell as the expert's Dijkstra search does (Wilson interval over grids):",
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
    "RouteCosts",
    "TerrainProcedureConfig",
    "cost_efficiency",
    "env_kwargs",
    "plot_search",
    "plot_sizes",
    "run",
    "run_key",
    "search_exact",
    "split_grids",
]
