"""Experiment ``maze-robustness``: how far does an observation attack push maze policies, and does adversarial
training help?

BFS-expert demonstrations on ``num_mazes`` mazes; three policies trained on them: behaviour cloning (``bc``),
BC with adversarial training (``bc_adv``: part of each batch perturbed by PGD against the current model,
maximizing its own loss) and procedure cloning (``pc``). Each is evaluated on unseen mazes, clean (split
``test``) and under an untargeted PGD sensor attack on the same mazes and start cells (split ``attack``:
see :mod:`clonekit.evaluation.attacks` for the threat model). Metrics: ``success`` (reached the goal) and,
on ``attack``, ``attack_success`` (per episode, the fraction of steps whose action the attack changed from
the clean one), each with n and a 95% interval clustered by maze.

The attack radius is measured in each policy's normalized observation units: BC normalizes per channel
(one std per channel fitted on the data), procedure cloning does not normalize, so for it the radius is in
raw 0/1 units (its raw budget is larger; both are written in ``report.md``). Procedure cloning's action is
an argmax over an iterated search, so it is attacked through a surrogate gradient (see
:func:`clonekit.evaluation.attacks.procedure_cloning_scores`): its attack success is a lower bound of what
a stronger attack could do.

Every stage writes into ``OUT`` and is skipped when its output is already there (data, runs, and each
evaluated cell under ``OUT/eval``), so an interrupted run continues where it stopped.
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
from clonekit.envs.maze import AGENT, GOAL, MOVES, WALL, MazeTask, bfs_from_goal
from clonekit.evaluation import rollout, split_tasks
from clonekit.evaluation.attacks import AttackConfig, attack_metrics, attacked_rollout, normalized_scale
from clonekit.evaluation.plots import _pyplot, save_figure
from clonekit.evaluation.stats import format_metric
from clonekit.experiments.common import collected_once, report_tail, results_head, torch_threads
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.policies import Policy
from clonekit.train import TrainConfig, train

NAME = "maze-robustness"
POLICIES = ("bc", "bc_adv", "pc")
SPLITS = ("test", "attack")


@dataclass(frozen=True)
class MazeRobustnessConfig:
    """Settings of ``maze-robustness``.

    Args:
        num_mazes: Training mazes (BC needs a few hundred to succeed on unseen mazes at all).
        episodes_per_maze: Expert demonstrations per training maze (random start cells).
        test_mazes: Unseen mazes of the ``test`` and ``attack`` splits.
        eval_episodes: Episodes per (policy, split) cell (episode ``k`` on unseen maze ``k % test_mazes``).
        bc_steps: Gradient steps of ``bc`` and ``bc_adv``.
        pc_steps: Gradient steps of ``pc``.
        batch_size: Transitions per gradient step.
        lr: Adam learning rate.
        bc_conv_channels: Conv widths of both BC policies.
        bc_hidden_sizes: MLP widths of both BC policies.
        attack_epsilon: L-infinity radius of the evaluation attack (normalized observation units).
        attack_steps: PGD iterations of the evaluation attack (step ``2.5 * epsilon / steps``, random start).
        adversarial_epsilon: Radius of the PGD perturbations ``bc_adv`` trains on.
        adversarial_steps: PGD iterations per training batch of ``bc_adv``.
        adversarial_fraction: Fraction of each ``bc_adv`` batch that is perturbed.
        max_steps: Episode step limit of the mazes (demonstrations and evaluation); 0 keeps the env's
            default (``size * size / 2``).
        threads: torch intra-op threads for the whole run (training and evaluation); the numbers depend on
            it (float sums split differently), and one thread is fastest for these small networks.
    """

    num_mazes: int = 300
    episodes_per_maze: int = 4
    test_mazes: int = 50
    eval_episodes: int = 100
    bc_steps: int = 2000
    pc_steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3
    bc_conv_channels: tuple[int, ...] = (16, 32)
    bc_hidden_sizes: tuple[int, ...] = (128,)
    attack_epsilon: float = 0.05
    attack_steps: int = 5
    adversarial_epsilon: float = 0.05
    adversarial_steps: int = 2
    adversarial_fraction: float = 0.5
    max_steps: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        for name in ("num_mazes", "episodes_per_maze", "test_mazes", "eval_episodes", "bc_steps", "pc_steps"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
        check(self.lr > 0, "lr", "> 0", self.lr)
        check(self.attack_epsilon > 0, "attack_epsilon", "> 0", self.attack_epsilon)
        check(self.adversarial_epsilon > 0, "adversarial_epsilon", "> 0", self.adversarial_epsilon)
        check(self.max_steps >= 0, "max_steps", ">= 0 (0: the env's default)", self.max_steps)
        check(1 <= self.threads <= 256, "threads", "in [1, 256]", self.threads)
        # The other fields are checked by the configs they fill in.
        self.attack()
        self.train_config("bc_adv", 0)

    def attack(self) -> AttackConfig:
        """The evaluation attack: untargeted PGD with a random start."""
        return AttackConfig("pgd", self.attack_epsilon, self.attack_steps)

    def train_config(self, key: str, seed: int) -> TrainConfig:
        """Training settings of policy ``key`` (``bc_adv`` adds the adversarial ones)."""
        adversarial: dict[str, Any] = {}
        if key == "bc_adv":
            adversarial = {
                "adversarial_epsilon": self.adversarial_epsilon,
                "adversarial_steps": self.adversarial_steps,
                "adversarial_fraction": self.adversarial_fraction,
            }
        steps = self.pc_steps if key == "pc" else self.bc_steps
        return TrainConfig(
            steps=steps, batch_size=self.batch_size, lr=self.lr, seed=seed, checkpoint_every=500, **adversarial
        )

    def env_kwargs(self) -> dict[str, Any]:
        """Options of the maze env family."""
        return {"max_steps": self.max_steps} if self.max_steps else {}

    def policy(self, key: str) -> tuple[str, dict[str, Any]]:
        """Registry name and config overrides of policy ``key``."""
        if key == "pc":
            return "procedure_cloning", {}
        return "bc", {"conv_channels": list(self.bc_conv_channels), "hidden_sizes": list(self.bc_hidden_sizes)}


FULL = MazeRobustnessConfig()
QUICK = replace(
    FULL, num_mazes=60, episodes_per_maze=2, test_mazes=10, eval_episodes=20, bc_steps=300, pc_steps=300, batch_size=64
)


def _dataset(out: Path, config: MazeRobustnessConfig, seed: int, show_progress: bool) -> Dataset:
    path = out / "data"
    episodes = config.num_mazes * config.episodes_per_maze
    return collected_once(
        path,
        "maze",
        "bfs",
        seed=seed,
        episodes=episodes,
        num_tasks=config.num_mazes,
        env_kwargs=config.env_kwargs(),
        show_progress=show_progress,
    )


def _evaluate(
    out: Path, key: str, split: str, policy: Policy, tasks: list[Any], config: MazeRobustnessConfig, seed: int
) -> dict[str, Any]:
    """Metrics of one (policy, split) cell, cached in ``OUT/eval`` with the settings that made them."""
    path = out / "eval" / f"{key}_{split}.json"
    settings = {"config": config_to_json(config), "seed": seed, "threads": torch.get_num_threads()}
    if path.is_file():
        cached = json.loads(path.read_text(encoding="utf-8"))
        if cached.get("settings") == settings:
            return dict(cached["metrics"])
    family = get_env_family("maze")
    if split == "attack":
        played = attacked_rollout(
            policy, family, tasks, config.eval_episodes, seed, config.attack(), config.env_kwargs()
        )
        metrics = attack_metrics(played, seed)
    else:
        played = rollout(policy, family, tasks, config.eval_episodes, seed, config.env_kwargs())
        metrics = {"success": played.metrics(seed)["success"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"settings": settings, "metrics": metrics})
    return metrics


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: MazeRobustnessConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``).

    ``config`` replaces the preset chosen by ``quick`` (``FULL`` or ``QUICK``).
    """
    config = config or (QUICK if quick else FULL)
    with torch_threads(config.threads):
        return _run(out, seed, quick, show_progress, log, config)


def _run(
    out: Path, seed: int, quick: bool, show_progress: bool, log: Any, config: MazeRobustnessConfig
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    dataset = _dataset(out, config, seed, show_progress)
    log(f"{config.num_mazes} training mazes: {dataset.num_episodes} expert episodes, {dataset.num_steps} steps")
    tasks = split_tasks(dataset.env, "test", seed, config.test_mazes)
    metrics: dict[str, dict[str, Any]] = {}
    policies: dict[str, Policy] = {}
    for key in POLICIES:
        name, overrides = config.policy(key)
        policies[key] = train(
            name,
            dataset,
            out / "runs" / key,
            config.train_config(key, seed),
            policy_overrides=overrides,
            resume=True,
            same_settings=True,
            show_progress=show_progress,
        )
        metrics[key] = {split: _evaluate(out, key, split, policies[key], tasks, config, seed) for split in SPLITS}
        for split in SPLITS:
            line = f"  {key:7s} {split:6s} success {format_metric(metrics[key][split]['success'])}"
            if "attack_success" in metrics[key][split]:
                line += f"  attack_success {format_metric(metrics[key][split]['attack_success'])}"
            log(line)
    results = {
        **results_head(NAME, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
        "raw_epsilon": _raw_budgets(policies, dataset, config.attack_epsilon),
    }
    atomic_write_json(out / "results.json", results)
    plots = _plot(out, results)
    atomic_write_text(out / "report.md", _report(results, plots))
    return results


def _raw_budgets(policies: dict[str, Policy], dataset: Dataset, epsilon: float) -> dict[str, list[float]]:
    """Per policy, the attack radius in raw units of each observation channel."""
    shape = tuple(dataset.streams["obs"].shape)
    budgets = {}
    for key, policy in policies.items():
        scale = normalized_scale(policy, shape, "cpu").expand(shape)
        budgets[key] = [round(float(epsilon * scale[c].max()), 4) for c in range(shape[0])]
    return budgets


def _plot(out: Path, results: dict[str, Any]) -> list[str]:
    """``robustness.png``: clean vs attacked success, and attack success, per policy with 95% intervals."""
    plt = _pyplot()
    if plt is None:
        return []
    names = list(results["metrics"])
    x = np.arange(len(names))
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))

    def bars(ax: Any, offsets: list[tuple[float, str, str, str]]) -> None:
        for offset, split, metric, label in offsets:
            cells = [results["metrics"][n][split][metric] for n in names]
            means = np.array([c["mean"] for c in cells])
            # A percentile interval over few clusters need not contain the mean: whiskers stop at the bar then.
            errors = np.array([[c["mean"] - c["ci95"][0], c["ci95"][1] - c["mean"]] for c in cells]).T.clip(min=0)
            ax.bar(x + offset, means, 0.38 if len(offsets) > 1 else 0.6, yerr=errors, capsize=3, label=label)
        ax.set_xticks(x, names)
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)

    eps = results["config"]["attack_epsilon"]
    bars(left, [(-0.2, "test", "success", "clean"), (0.2, "attack", "success", f"PGD eps={eps}")])
    left.set_ylabel("success on unseen mazes (95% CI)")
    left.legend()
    bars(right, [(0.0, "attack", "attack_success", "attack")])
    right.set_ylabel("steps whose action PGD changed (95% CI)")
    fig.suptitle(f"{NAME} (seed {results['seed']}): untargeted PGD, {results['config']['attack_steps']} steps")
    save_figure(fig, out / "robustness.png")
    return ["robustness.png"]


def _report(results: dict[str, Any], plots: list[str]) -> str:
    cfg = results["config"]
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        f"Policies trained on BFS demonstrations from {cfg['num_mazes']} mazes, evaluated on {cfg['test_mazes']} "
        f"unseen mazes ({cfg['eval_episodes']} episodes per cell): clean (`test`) and under an untargeted PGD",
        f"sensor attack (`attack`: L-infinity radius {cfg['attack_epsilon']} in the policy's normalized "
        f"observation units, {cfg['attack_steps']} steps, random start; perturbed observations are fed as "
        "float32 inside [0, 1], not rounded).",
        "`attack_success` is the fraction of an episode's steps whose action the attack changed. Intervals are 95%,",
        "clustered by maze.",
        "",
        "| policy | clean success | success under attack | attack success |",
        "|---|---|---|---|",
    ]
    for name, splits in results["metrics"].items():
        attack = splits["attack"]
        lines.append(
            f"| {name} | {format_metric(splits['test']['success'])} | {format_metric(attack['success'])} "
            f"| {format_metric(attack['attack_success'])} |"
        )
    lines += ["", "The attack radius in raw units per observation channel (wall, agent, goal):", ""]
    lines += [f"- `{name}`: {budget}" for name, budget in results["raw_epsilon"].items()]
    lines += [
        "",
        f"`bc_adv` trains with PGD perturbations of radius {cfg['adversarial_epsilon']} ({cfg['adversarial_steps']} "
        f"steps) on {cfg['adversarial_fraction']:.0%} of each batch. `pc` (procedure cloning) has no normalizer, so",
        "its budget is in raw units, and it is attacked through a surrogate gradient (its search ends in argmaxes),",
        "which makes its attack success a lower bound.",
    ]
    lines += report_tail(results, plots)
    return "\n".join(lines)


def away_from_goal(obs: torch.Tensor) -> torch.Tensor:
    """Target *behaviour* "move away from the goal" for :class:`clonekit.evaluation.attacks.AttackedPolicy`
    (``target_fn``): per maze observation ``(B, 3, H, W)``, the move whose next cell is farthest from the goal
    by BFS distance, the move the BFS expert rates worst (a move into a wall stays put; ties go to the lowest
    action index). Returns ``(B,)`` int64 actions."""
    maps = obs.detach().cpu().numpy() > 0.5
    actions = []
    for walls, agent, goal in zip(maps[:, WALL], maps[:, AGENT], maps[:, GOAL], strict=True):
        gr, gc = np.argwhere(goal)[0]
        distance, _ = bfs_from_goal(MazeTask(0, walls, (int(gr), int(gc))))
        cell = np.argwhere(agent)[0]
        after = [cell + move if not walls[tuple(cell + move)] else cell for move in MOVES]
        actions.append(int(np.argmax([distance[tuple(c)] for c in after])))
    return torch.tensor(actions, dtype=torch.long, device=obs.device)


def robustness_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(policy, clean success, success under attack, attack success)``, formatted."""
    return [
        (
            name,
            format_metric(splits["test"]["success"]),
            format_metric(splits["attack"]["success"]),
            format_metric(splits["attack"]["attack_success"]),
        )
        for name, splits in results["metrics"].items()
    ]


__all__ = [
    "FULL",
    "NAME",
    "POLICIES",
    "QUICK",
    "SPLITS",
    "MazeRobustnessConfig",
    "away_from_goal",
    "robustness_table",
    "run",
]
