"""Experiment ``demo-rl``: PPO from scratch vs PPO pulled towards a BC prior, on a few mazes with sparse reward.

``--seed`` fixes ``train_mazes`` small mazes and ``demo_episodes`` BFS-expert demonstrations on them. The
reward is the maze's own: 1 on reaching the goal, else 0 (episodes time out after ``size * size / 2``
steps). Policy keys (split ``train``: the fixed mazes, from random start cells):

* ``bc``: behaviour cloning of the few demonstrations (imperfect: it has seen few start cells);
* ``rl``: PPO from scratch (:mod:`clonekit.rl.ppo`);
* ``rl_demo``: the same PPO with its actor initialized from ``bc`` and a KL(pi || pi_BC) term whose weight
  decays linearly to 0 over ``prior_decay_steps`` (:mod:`clonekit.rl.prior`).

All three share one architecture (an MLP on the flattened map). Every ``eval_every`` env steps the greedy
actor plays ``eval_episodes`` episodes (fixed start cells); metric ``steps_to_threshold``: the env steps at
which that success first reaches ``threshold``, censored at the budget (``censored`` counts such seeds; their
value is the budget, a lower bound). Metric ``success``: the greedy success at the end of the budget. The
experiment trains ``seeds`` training seeds (the mazes and demonstrations stay those of ``--seed``); the
``steps_to_threshold`` interval is a bootstrap of the median over them, the ``success`` one of the mean.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clonekit.checkpoint import load_policy
from clonekit.config import check
from clonekit.data import Dataset
from clonekit.envs import get_env_family
from clonekit.envs.maze import MazeEnv
from clonekit.evaluation import rollout
from clonekit.evaluation.plots import _pyplot, save_figure
from clonekit.evaluation.stats import format_metric
from clonekit.experiments.common import report_tail, results_head
from clonekit.experts.collect import collect
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.policies import Policy
from clonekit.rl import PPOConfig, train_ppo
from clonekit.rl.vector import EnvFactory
from clonekit.seeding import derive_seed
from clonekit.train import TrainConfig, train

NAME = "demo-rl"
KEYS = ("rl", "bc", "rl_demo")
BOOTSTRAP = 2000


@dataclass(frozen=True)
class DemoRLConfig:
    """Settings of ``demo-rl``.

    Args:
        maze_size: Side of the square mazes.
        train_mazes: The fixed mazes everything trains and is evaluated on.
        demo_episodes: BFS-expert demonstrations (episode ``k`` on maze ``k % train_mazes``).
        seeds: Training seeds per policy (BC, PPO and its actions; the mazes are ``--seed``'s).
        budget: PPO env steps per run.
        threshold: Greedy success on the mazes that counts as reached.
        eval_every: Env steps between evaluations.
        eval_episodes: Episodes per evaluation (start cells fixed across evaluations).
        hidden_sizes: MLP widths of every network.
        bc_steps: BC gradient steps.
        num_envs: PPO envs (env ``i`` plays maze ``i % train_mazes``).
        num_steps: PPO steps per env per rollout.
        lr: PPO learning rate (annealed linearly).
        gamma: PPO discount (below 1, so that shorter paths to the goal are worth more).
        ent_coef: PPO entropy bonus.
        prior_coef: Initial weight of KL(pi || pi_BC) in ``rl_demo``.
        prior_decay_steps: Env steps over which that weight decays linearly to 0.
    """

    maze_size: int = 7
    train_mazes: int = 4
    demo_episodes: int = 8
    seeds: int = 5
    budget: int = 40_960
    threshold: float = 0.6
    eval_every: int = 2048
    eval_episodes: int = 64
    hidden_sizes: tuple[int, ...] = (64, 64)
    bc_steps: int = 300
    num_envs: int = 8
    num_steps: int = 64
    lr: float = 1e-3
    gamma: float = 0.9
    ent_coef: float = 0.02
    prior_coef: float = 1.0
    prior_decay_steps: int = 20_000

    def __post_init__(self) -> None:
        check(self.maze_size >= 5, "maze_size", ">= 5", self.maze_size)
        for name in ("train_mazes", "demo_episodes", "seeds", "budget", "eval_every", "eval_episodes", "bc_steps"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check(0 < self.threshold <= 1, "threshold", "in (0, 1]", self.threshold)
        check(
            self.num_envs >= 1 and self.num_envs % self.train_mazes == 0,
            "num_envs",
            f"a multiple of train_mazes={self.train_mazes}",
            self.num_envs,
        )


FULL = DemoRLConfig()
QUICK = replace(FULL, seeds=2, budget=16_384, eval_episodes=32, bc_steps=200, prior_decay_steps=8192)


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: DemoRLConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``)."""
    config = config or (QUICK if quick else FULL)
    out.mkdir(parents=True, exist_ok=True)
    env_kwargs = {"size": config.maze_size}
    path = out / "data" / "demos"
    demos = (
        Dataset.open(path)
        if path.exists()
        else collect(
            "maze",
            "bfs",
            episodes=config.demo_episodes,
            seed=seed,
            out=path,
            num_tasks=config.train_mazes,
            env_kwargs=env_kwargs,
            show_progress=False,
        )
    )
    family = get_env_family("maze")
    tasks = [family.task_from_json(t, **env_kwargs) for t in demos.env["tasks"]]
    eval_seed = derive_seed(seed, "demo-rl:eval")

    def success(policy: Policy) -> float:
        return float(rollout(policy, family, tasks, config.eval_episodes, eval_seed, env_kwargs).success.mean())

    curves: dict[str, list[list[tuple[int, float]]]] = {"rl": [], "rl_demo": []}
    bc_success: list[float] = []
    for index in range(config.seeds):
        run_seed = derive_seed(seed, f"demo-rl:train:{index}") % 2**31
        bc_dir = out / "runs" / f"bc_{index}"
        train(
            "bc",
            demos,
            bc_dir,
            TrainConfig(
                steps=config.bc_steps,
                batch_size=64,
                seed=run_seed,
                checkpoint_every=config.bc_steps,
                keep_checkpoints=1,
                tensorboard=False,
                val_fraction=0.0,
            ),
            policy_overrides={"encoder": "mlp", "normalize_obs": "none", "hidden_sizes": list(config.hidden_sizes)},
            resume=True,
            show_progress=False,
        )
        bc_success.append(success(load_policy(bc_dir)))
        for key in ("rl", "rl_demo"):
            curve = _ppo_curve(
                out / "runs" / f"{key}_{index}", key, config, run_seed, tasks, demos, bc_dir, success, show_progress
            )
            curves[key].append(curve)
        log(
            f"  seed {index}: bc {bc_success[-1]:.2f}; steps to {config.threshold}: "
            + ", ".join(f"{k} {_first_reach(curves[k][-1], config)[0]}" for k in curves)
        )

    metrics: dict[str, Any] = {}
    for key in KEYS:
        if key == "bc":  # no env steps: it either starts at the threshold or never reaches it
            reached = [(0 if s >= config.threshold else config.budget, s < config.threshold) for s in bc_success]
            finals = bc_success
        else:
            reached = [_first_reach(curve, config) for curve in curves[key]]
            finals = [curve[-1][1] for curve in curves[key]]
        metrics[key] = {
            "train": {
                "steps_to_threshold": _median_metric([r for r, _ in reached], [c for _, c in reached], config, seed),
                "success": _mean_metric(finals, seed),
            }
        }
    results = {
        **results_head(NAME, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
        "curves": {key: [[list(p) for p in curve] for curve in value] for key, value in curves.items()},
        "bc_success": bc_success,
    }
    atomic_write_json(out / "results.json", results)
    plots = [f"{NAME}.png"] if _plot(results, out / f"{NAME}.png") else []
    atomic_write_text(out / "report.md", _report(results, plots))
    return results


def _ppo_curve(
    run_dir: Path,
    key: str,
    config: DemoRLConfig,
    run_seed: int,
    tasks: list[Any],
    demos: Dataset,
    bc_dir: Path,
    success: Any,
    show_progress: bool,
) -> list[tuple[int, float]]:
    """Train PPO (``rl`` or ``rl_demo``) and return its evaluation curve ``[(env_steps, success), ...]``; a
    finished run's curve is read back from ``run_dir/curve.json``."""
    saved = run_dir / "curve.json"
    if saved.is_file():
        return [(int(s), float(v)) for s, v in json.loads(saved.read_text(encoding="utf-8"))]
    demo = key == "rl_demo"
    ppo = PPOConfig(
        env="clonekit/Maze-v0",
        env_kwargs={"size": config.maze_size},
        total_steps=config.budget,
        num_envs=config.num_envs,
        num_steps=config.num_steps,
        lr=config.lr,
        gamma=config.gamma,
        ent_coef=config.ent_coef,
        encoder="mlp",
        hidden_sizes=config.hidden_sizes,
        seed=run_seed,
        checkpoint_every=10**9,  # a run is short: an interrupted one starts again
        prior=str(bc_dir) if demo else None,
        prior_coef=config.prior_coef,
        prior_decay_steps=config.prior_decay_steps,
        init_from_prior=demo,
    )
    factories: list[EnvFactory] = [
        partial(MazeEnv, maze_seed=tasks[i % len(tasks)].maze_seed, size=config.maze_size)
        for i in range(config.num_envs)
    ]
    curve: list[tuple[int, float]] = []

    def evaluate(env_steps: int, actor: Policy) -> None:
        final = env_steps >= ppo.num_iterations * ppo.batch_size
        if (
            env_steps == 0
            or final
            or env_steps // config.eval_every > (env_steps - ppo.batch_size) // config.eval_every
        ):
            curve.append((env_steps, success(actor)))
            actor.train()

    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)  # an unfinished run (no curve.json) starts again
    train_ppo(
        ppo, run_dir, show_progress=show_progress, env_factories=factories, env_block=demos.env, on_update=evaluate
    )
    atomic_write_json(saved, curve)
    return curve


def _first_reach(curve: list[tuple[int, float]], config: DemoRLConfig) -> tuple[int, bool]:
    """``(env steps at which success first reached the threshold, censored)``; censored runs give the budget."""
    for steps, value in curve:
        if value >= config.threshold:
            return steps, False
    return config.budget, True


def _median_metric(values: list[int], censored: list[bool], config: DemoRLConfig, seed: int) -> dict[str, Any]:
    x = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(derive_seed(seed, "demo-rl:bootstrap"))
    medians = np.median(x[rng.integers(0, len(x), (BOOTSTRAP, len(x)))], axis=1)
    return {
        "mean": float(x.mean()),
        "median": float(np.median(x)),
        "ci95": [float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))],
        "n": len(x),
        "n_seeds": len(x),
        "censored": int(sum(censored)),
        "per_seed": [int(v) for v in values],
        "threshold": config.threshold,
        "budget": config.budget,
        "method": "bootstrap_of_median_over_seeds; censored seeds count as the budget (a lower bound)",
    }


def _mean_metric(values: list[float], seed: int) -> dict[str, Any]:
    x = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(derive_seed(seed, "demo-rl:bootstrap-mean"))
    means = x[rng.integers(0, len(x), (BOOTSTRAP, len(x)))].mean(axis=1)
    return {
        "mean": float(x.mean()),
        "ci95": [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))],
        "n": len(x),
        "n_seeds": len(x),
        "per_seed": [float(v) for v in values],
        "method": "bootstrap_of_mean_over_seeds",
    }


def _steps_text(metric: dict[str, Any]) -> str:
    lo, hi = metric["ci95"]
    censored = f", {metric['censored']}/{metric['n']} censored at {metric['budget']}" if metric["censored"] else ""
    return f"median {metric['median']:.0f} [{lo:.0f}, {hi:.0f}] n={metric['n']} seeds{censored}"


def _plot(results: dict[str, Any], path: Path) -> bool:
    plt = _pyplot()
    if plt is None:
        return False
    config = results["config"]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    colors = {"rl": "#4c72b0", "rl_demo": "#dd8452"}
    for key, curves in results["curves"].items():
        for i, curve in enumerate(curves):
            steps, values = zip(*curve, strict=True)
            ax.plot(steps, values, color=colors[key], alpha=0.35, lw=1, label=key if i == 0 else None)
        grid = [p[0] for p in curves[0]]
        if all(len(c) == len(grid) for c in curves):
            ax.plot(
                grid,
                np.median([[p[1] for p in c] for c in curves], axis=0),
                color=colors[key],
                lw=2.5,
                label=f"{key} (median)",
            )
    ax.axhline(float(np.mean(results["bc_success"])), color="#8c8c8c", ls="--", label="bc (mean over seeds)")
    ax.axhline(config["threshold"], color="k", ls=":", lw=1, label="threshold")
    ax.set_xlabel("env steps")
    ax.set_ylabel("greedy success on the training mazes")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(
        f"{NAME}: PPO vs PPO + BC prior ({config['train_mazes']} mazes {config['maze_size']}x"
        f"{config['maze_size']}, seed {results['seed']})"
    )
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    save_figure(fig, path)
    return True


def _report(results: dict[str, Any], plots: list[str]) -> str:
    config = results["config"]
    metrics = results["metrics"]
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        f"{config['train_mazes']} mazes {config['maze_size']}x{config['maze_size']}, {config['demo_episodes']} BFS "
        "demonstrations, sparse reward (1 at the goal). `rl`: PPO from scratch; `rl_demo`: PPO started from `bc`",
        f"with KL(pi || pi_BC) weighted {config['prior_coef']} decaying to 0 over {config['prior_decay_steps']} env "
        f"steps. Greedy success on the mazes every {config['eval_every']} env steps ({config['eval_episodes']}",
        f"episodes, fixed start cells); threshold {config['threshold']}, budget {config['budget']} env steps, "
        f"{config['seeds']} training seeds. Intervals: bootstrap over seeds.",
        "",
        "| policy | env steps to threshold | final success |",
        "|---|---|---|",
    ]
    for key in KEYS:
        cell = metrics[key]["train"]
        lines.append(f"| {key} | {_steps_text(cell['steps_to_threshold'])} | {format_metric(cell['success'])} |")
    lines.append("")
    lines.append(
        "Per seed (env steps to threshold): "
        + "; ".join(f"{k} {metrics[k]['train']['steps_to_threshold']['per_seed']}" for k in KEYS)
    )
    lines += report_tail(results, plots)
    return "\n".join(lines)


def steps_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(policy, env steps to threshold, final success)``."""
    return [
        (
            key,
            _steps_text(results["metrics"][key]["train"]["steps_to_threshold"]),
            format_metric(results["metrics"][key]["train"]["success"]),
        )
        for key in KEYS
    ]


__all__ = ["FULL", "KEYS", "NAME", "QUICK", "DemoRLConfig", "run", "steps_table"]
