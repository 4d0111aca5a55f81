"""Experiment ``avoiding-residual``: residual RL (ResiP) on a frozen chunked diffusion policy, on precision Avoiding.

The scripted Avoiding expert demonstrates on the ordinary task (any crossing of the finish line succeeds).
Evaluation and RL use the *precision variant* (env kwargs ``finish_gate`` and ``drift``): the finish line is
open only through narrow gates around the exits, and a side wind the demonstrations never felt pushes the agent
along x, so the cloned policy crosses off the gates. Policy keys:

* ``bc``: behaviour cloning with the diffusion head and action chunks (``chunk`` > 1, receding horizon), frozen;
* ``residual``: ``bc`` plus a residual Gaussian policy trained by PPO on the sparse success reward from the
  training start states (:mod:`clonekit.rl.residual`), acting per step inside the chunk.

Split ``test``: held-out start states (never used for training or for choosing settings); ``train``: the
demonstrations' start states, where the residual trained. Metric ``success`` with 95% intervals clustered by
start state (several stochastic episodes per start). One ``--seed`` is one training seed (data, BC, PPO);
``clonekit run avoiding-residual --seeds 0-2`` aggregates several.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clonekit.checkpoint import MODEL_FILE, load_policy
from clonekit.config import check
from clonekit.data import Dataset
from clonekit.envs import get_env_family
from clonekit.evaluation import rollout, split_tasks
from clonekit.evaluation.plots import _pyplot, plot_success_bars, save_figure
from clonekit.evaluation.stats import format_metric, summarize
from clonekit.experiments.avoiding_modes import paths_dataset
from clonekit.experiments.common import report_tail, results_head, torch_threads
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.policies import Policy
from clonekit.policies.continuous_bc import ContinuousBCPolicy
from clonekit.rl.agent import Actor
from clonekit.rl.residual import ResidualRLConfig, residual_policy, train_residual
from clonekit.seeding import derive_seed
from clonekit.train import TrainConfig, train

NAME = "avoiding-residual"
KEYS = ("bc", "residual")
SPLITS = ("test", "train")


@dataclass(frozen=True)
class AvoidingResidualConfig:
    """Settings of ``avoiding-residual``.

    Args:
        finish_gate: Half-width of the finish gates of the precision variant (evaluation and RL).
        drift: Side wind of the precision variant (x moved per step; the demonstrations had none).
        episodes: Expert demonstrations (on the ordinary task), from ``train_starts`` start states.
        train_starts: Start states of the demonstrations (the ``train`` split; the residual trains on them).
        test_starts: Held-out start states (the ``test`` split).
        eval_episodes: Episodes per (policy, split), spread evenly over the split's start states.
        bc_steps: Gradient steps of the diffusion policy.
        batch_size: Transitions per BC gradient step.
        lr: BC's Adam learning rate.
        hidden_sizes: Widths of BC's observation encoder.
        denoising_steps: Denoising steps per chunk at inference.
        chunk: Actions per predicted chunk.
        execute_steps: Actions of a chunk executed before predicting the next (receding horizon).
        rl_steps: PPO env steps of the residual.
        scale: Largest residual correction, as a fraction of the half action range.
        residual_hidden_sizes: Widths of the residual's and the critic's MLPs.
        init_log_std: Initial log standard deviation of the residual's Gaussian.
        num_envs: PPO envs.
        num_steps: PPO steps per env per rollout.
        rl_lr: PPO's learning rate.
        gamma: PPO's discount.
        eval_every: Env steps between evaluations of the residual on the training starts (the learning
            curve; 0: none).
    """

    finish_gate: float = 0.05
    drift: float = 0.004
    episodes: int = 200
    train_starts: int = 50
    test_starts: int = 50
    eval_episodes: int = 400
    bc_steps: int = 4000
    batch_size: int = 256
    lr: float = 1e-3
    hidden_sizes: tuple[int, ...] = (256, 256)
    denoising_steps: int = 5
    chunk: int = 8
    execute_steps: int = 4
    rl_steps: int = 204_800
    scale: float = 0.2
    residual_hidden_sizes: tuple[int, ...] = (64, 64)
    init_log_std: float = -1.0
    num_envs: int = 16
    num_steps: int = 128
    rl_lr: float = 3e-4
    gamma: float = 0.99
    eval_every: int = 51_200

    def __post_init__(self) -> None:
        check(self.finish_gate > 0, "finish_gate", "> 0", self.finish_gate)
        check(abs(self.drift) <= 0.04, "drift", "in [-0.04, 0.04]", self.drift)
        for name in ("episodes", "train_starts", "test_starts", "eval_episodes", "bc_steps", "batch_size"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check(self.chunk >= 2, "chunk", ">= 2 (a chunked base)", self.chunk)
        check(1 <= self.execute_steps <= self.chunk, "execute_steps", f"in [1, chunk={self.chunk}]", self.execute_steps)
        check(self.rl_steps >= 1, "rl_steps", ">= 1", self.rl_steps)
        check(self.eval_every >= 0, "eval_every", ">= 0", self.eval_every)

    def env_kwargs(self) -> dict[str, Any]:
        """The precision variant's options of the ``avoiding`` family."""
        return {"finish_gate": self.finish_gate, "drift": self.drift}

    def rl_config(self, base: Path, seed: int) -> ResidualRLConfig:
        """The residual's PPO settings on base run ``base``."""
        return ResidualRLConfig(
            base=str(base),
            env="avoiding",
            env_kwargs=self.env_kwargs(),
            total_steps=self.rl_steps,
            seed=derive_seed(seed, f"{NAME}:residual"),
            scale=self.scale,
            hidden_sizes=self.residual_hidden_sizes,
            init_log_std=self.init_log_std,
            num_envs=self.num_envs,
            num_steps=self.num_steps,
            lr=self.rl_lr,
            gamma=self.gamma,
            checkpoint_every=max(self.rl_steps // 2, 1),
        )


FULL = AvoidingResidualConfig()
QUICK = replace(
    FULL,
    episodes=64,
    train_starts=16,
    test_starts=16,
    eval_episodes=128,
    bc_steps=1500,
    batch_size=128,
    hidden_sizes=(128, 128),
    rl_steps=32_768,
    num_envs=8,
    eval_every=0,
)


def _train_bc(dataset: Dataset, run: Path, config: AvoidingResidualConfig, seed: int, show_progress: bool) -> Policy:
    overrides = {
        "hidden_sizes": list(config.hidden_sizes),
        "head": "diffusion",
        "diffusion_steps": config.denoising_steps,
        "chunk": config.chunk,
        "execute_steps": config.execute_steps,
    }
    train_config = TrainConfig(
        steps=config.bc_steps, batch_size=config.batch_size, lr=config.lr, seed=seed, checkpoint_every=1000
    )
    train(
        "continuous_bc",
        dataset,
        run,
        train_config,
        overrides,
        resume=True,
        same_settings=True,
        show_progress=show_progress,
    )
    return load_policy(run)


def _success(
    policy: Policy, env_block: dict[str, Any], tasks: list[Any], episodes: int, seed: int, noise: str
) -> tuple[np.ndarray, np.ndarray]:
    """Success ``(N,)`` and task index ``(N,)`` of ``episodes`` episodes on the precision variant."""
    torch.manual_seed(derive_seed(seed, noise))  # the diffusion head's sampling noise
    family = get_env_family("avoiding")
    results = rollout(policy, family, tasks, episodes, seed, env_kwargs=env_block["kwargs"])
    return results.success, results.task_index


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: AvoidingResidualConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``).

    ``config`` replaces the preset chosen by ``quick``. Every stage resumes from what ``out`` holds.
    """
    config = config or (QUICK if quick else FULL)
    with torch_threads(1):  # small networks: more intra-op threads only cost on a busy machine
        return _run(out, seed, quick, show_progress, log, config)


def _run(
    out: Path, seed: int, quick: bool, show_progress: bool, log: Any, config: AvoidingResidualConfig
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    dataset = paths_dataset(out, config, seed, show_progress)
    bc = _train_bc(dataset, out / "runs" / "bc", config, seed, show_progress)
    env_block = {**dataset.env, "id": "avoiding", "kwargs": config.env_kwargs()}
    tasks = {split: split_tasks(env_block, split, seed, config.test_starts) for split in SPLITS}
    train_eval = config.eval_episodes // 4

    curve: list[tuple[int, float]] = []
    assert isinstance(bc, ContinuousBCPolicy)

    def evaluate(env_steps: int, actor: Actor) -> None:
        """The learning curve: the residual so far, on the training starts."""
        if not config.eval_every or env_steps % config.eval_every:
            return
        assert isinstance(bc, ContinuousBCPolicy) and isinstance(actor, ContinuousBCPolicy)
        policy = residual_policy(bc, actor, config.scale)
        success, _ = _success(policy, env_block, tasks["train"], train_eval, seed, f"{NAME}:curve:{env_steps}")
        curve.append((env_steps, float(success.mean())))
        log(f"  residual after {env_steps:7d} env steps: train success {success.mean():.2f}")

    rl_run = out / "runs" / "residual"
    if (rl_run / MODEL_FILE).is_file():
        residual = load_policy(rl_run)
    else:
        residual = train_residual(
            config.rl_config(out / "runs" / "bc", seed),
            rl_run,
            resume=True,
            show_progress=show_progress,
            on_update=evaluate,
        )
    policies: dict[str, Policy] = {"bc": bc, "residual": residual}
    metrics: dict[str, dict[str, Any]] = {}
    for key, policy in policies.items():
        metrics[key] = {}
        for split in SPLITS:
            success, task_index = _success(
                policy, env_block, tasks[split], config.eval_episodes, seed, f"{NAME}:{key}:{split}"
            )
            metrics[key][split] = {"success": summarize(success, seed, groups=task_index)}
            log(f"  {key:8s} {split:5s} success {format_metric(metrics[key][split]['success'])}")

    results = {
        **results_head(NAME, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
        "curve": [{"env_steps": s, "train_success": v} for s, v in curve],
    }
    atomic_write_json(out / "results.json", results)
    plots = []
    if plot_success_bars(results, out / "success.png", metric="success"):
        plots.append("success.png")
    if curve and _plot_curve(curve, out / "curve.png"):
        plots.append("curve.png")
    atomic_write_text(out / "report.md", _report(results, plots))
    return results


def _plot_curve(curve: list[tuple[int, float]], path: Path) -> bool:
    plt = _pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([s for s, _ in curve], [v for _, v in curve], marker="o")
    ax.set_xlabel("PPO env steps")
    ax.set_ylabel("success (training starts)")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{NAME}: the residual while training")
    save_figure(fig, path, dpi=100)
    return True


def _report(results: dict[str, Any], plots: list[str]) -> str:
    config = results["config"]
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        f"A frozen chunked diffusion policy (`bc`, chunk {config['chunk']}, {config['execute_steps']} steps executed "
        f"per chunk) and `bc` plus a residual trained by PPO ({config['rl_steps']} env steps, sparse success) on",
        f"precision Avoiding (finish gates of half-width {config['finish_gate']} around the exits, side wind "
        f"{config['drift']} per step). `test`: held-out",
        "start states; `train`: the demonstrations' (the residual trained there). 95% intervals clustered by start.",
        "",
        "| policy | test success | train success |",
        "|---|---|---|",
    ]
    for key, splits in results["metrics"].items():
        test, seen = format_metric(splits["test"]["success"]), format_metric(splits["train"]["success"])
        lines.append(f"| {key} | {test} | {seen} |")
    lines += report_tail(results, plots)
    return "\n".join(lines)


def success_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(policy, test success, train success)`` of formatted metrics."""
    return [
        (key, format_metric(splits["test"]["success"]), format_metric(splits["train"]["success"]))
        for key, splits in results["metrics"].items()
    ]


__all__ = ["FULL", "NAME", "QUICK", "AvoidingResidualConfig", "run", "success_table"]
