"""Experiment ``avoiding-mode``: does a mixture-of-experts denoiser (MoDE) keep the dense diffusion head's
success and modes at a fraction of its inference cost?

On the multimodal Avoiding demonstrations of ``avoiding-modes`` (the ``paths`` expert, 8 collision-free
paths), ``continuous_bc`` is trained with two heads that share the encoder, the noise schedule, the sampler
and the number of denoising steps:

* ``diffusion``: the dense BESO-style denoiser MLP (``diffusion_hidden_sizes``);
* ``mode``: the same head with a mixture-of-experts denoiser routed by the noise level only, its routing
  cached per denoising step (:mod:`clonekit.nn.mode`); the widths are chosen so that one action costs at
  most 0.6x the dense head's multiply-adds.

Metrics per split (``train``: the demonstrations' start states, ``test``: held-out ones): ``success``,
``entropy`` (behaviour entropy, as ``avoiding-modes``), ``modes``, and ``inference_flops``: FLOPs per
executed action of the whole policy (encoder and every denoising step; 2 per multiply-add of the linear
layers, as ``torch.utils.flop_counter.FlopCounterMode`` counts; :mod:`clonekit.nn.flops`). It is a count, not
a measurement: its interval has zero width and ``method`` says ``"analytic"``. Everything is derived from
``--seed``; training resumes when its checkpoint is already in ``OUT``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clonekit.config import check
from clonekit.data import Dataset
from clonekit.envs.avoiding import NUM_MODES
from clonekit.evaluation import split_tasks
from clonekit.evaluation.diversity import diversity_metrics
from clonekit.evaluation.plots import plot_success_bars
from clonekit.evaluation.stats import format_metric, summarize
from clonekit.experiments.avoiding_modes import PLOTTED_EPISODES, Panel, evaluate_paths, paths_dataset
from clonekit.experiments.avoiding_plots import plot_avoiding_trajectories
from clonekit.experiments.common import exact_metric, report_tail, results_head, torch_threads
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.nn.flops import inference_macs_per_action
from clonekit.policies import Policy
from clonekit.policies.continuous_bc import ContinuousBCPolicy
from clonekit.seeding import derive_seed
from clonekit.train import TrainConfig, train

NAME = "avoiding-mode"
SPLITS = ("train", "test")
KEYS = ("diffusion", "mode")
FLOPS_TARGET = 0.6  # mode's inference FLOPs per action at most this fraction of the dense head's


@dataclass(frozen=True)
class AvoidingModeConfig:
    """Settings of ``avoiding-mode``.

    Args:
        episodes: Expert demonstrations (episode ``k`` starts from training start state ``k % train_starts``).
        train_starts: Number of start states the demonstrations begin from (the ``train`` split).
        test_starts: Number of held-out start states (the ``test`` split).
        eval_episodes: Rollouts per (policy, split) cell.
        steps: Gradient steps of each policy.
        batch_size: Transitions per gradient step.
        lr: Adam learning rate.
        hidden_sizes: Widths of the observation encoder of both policies.
        denoising_steps: Denoising steps per action at inference (both heads).
        diffusion_hidden_sizes: Widths of the dense denoiser MLP (``diffusion``).
        mode_width: Width of the MoDE denoiser's residual stream.
        mode_expert_hidden: Hidden width of each MoDE expert.
        mode_layers: Mixture-of-experts layers.
        mode_experts: Experts per layer.
        mode_top_k: Experts run per layer and denoising step (1 or 2).
        mode_balance_weight: Weight of the load-balancing loss.
    """

    episodes: int = 200
    train_starts: int = 50
    test_starts: int = 50
    eval_episodes: int = 200
    steps: int = 5000
    batch_size: int = 256
    lr: float = 1e-3
    hidden_sizes: tuple[int, ...] = (256, 256)
    denoising_steps: int = 5
    diffusion_hidden_sizes: tuple[int, ...] = (256, 256, 256)
    mode_width: int = 128
    mode_expert_hidden: int = 48
    mode_layers: int = 3
    mode_experts: int = 4
    mode_top_k: int = 2  # top-2 of narrower experts: chosen over top-1 of hidden 96 on validation seeds (README)
    mode_balance_weight: float = 0.01

    def __post_init__(self) -> None:
        for name in ("episodes", "train_starts", "test_starts", "eval_episodes", "steps", "batch_size"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check(self.denoising_steps >= 1, "denoising_steps", ">= 1", self.denoising_steps)
        check(self.lr > 0, "lr", "> 0", self.lr)  # the heads' own fields are checked by ContinuousBCConfig

    def policies(self) -> dict[str, dict[str, Any]]:
        """Policy key -> ``continuous_bc`` config overrides."""
        common: dict[str, Any] = {"hidden_sizes": list(self.hidden_sizes), "diffusion_steps": self.denoising_steps}
        return {
            "diffusion": {
                **common,
                "head": "diffusion",
                "diffusion_hidden_sizes": list(self.diffusion_hidden_sizes),
            },
            "mode": {
                **common,
                "head": "mode",
                "mode_width": self.mode_width,
                "mode_expert_hidden": self.mode_expert_hidden,
                "mode_layers": self.mode_layers,
                "mode_experts": self.mode_experts,
                "mode_top_k": self.mode_top_k,
                "mode_balance_weight": self.mode_balance_weight,
            },
        }


FULL = AvoidingModeConfig()
QUICK = replace(
    FULL,
    episodes=64,
    train_starts=16,
    test_starts=16,
    eval_episodes=48,
    steps=1500,
    batch_size=128,
    hidden_sizes=(128, 128),
    diffusion_hidden_sizes=(128, 128, 128),
    mode_width=64,
    mode_expert_hidden=24,
)


def run_cell(
    out: Path, config: AvoidingModeConfig, seed: int, name: str, show_progress: bool = False
) -> tuple[dict[str, Any], Panel]:
    """Train (or resume) policy ``name`` in ``out/runs/NAME`` and evaluate it on both splits.

    Returns ``({split: metrics}, test panel)``; the data must already be in ``out/data``.
    """
    dataset = Dataset.open(out / "data")
    train_config = TrainConfig(
        steps=config.steps, batch_size=config.batch_size, lr=config.lr, seed=seed, checkpoint_every=1000
    )
    policy: Policy = train(
        "continuous_bc",
        dataset,
        out / "runs" / name,
        train_config,
        policy_overrides=config.policies()[name],
        resume=True,
        same_settings=True,
        show_progress=show_progress,
    )
    assert isinstance(policy, ContinuousBCPolicy)  # both keys train continuous_bc
    flops = 2 * inference_macs_per_action(policy)
    metrics: dict[str, Any] = {}
    panel: Panel = ([], np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool))
    for split in SPLITS:
        tasks = split_tasks(dataset.env, split, seed, config.test_starts)
        torch.manual_seed(derive_seed(seed, f"{NAME}:{name}:{split}"))  # the heads' sampling noise
        rollouts = evaluate_paths(policy, tasks, config.eval_episodes, seed)
        metrics[split] = {
            "success": summarize(rollouts.success, seed, groups=rollouts.task_index),
            **diversity_metrics(rollouts.success, rollouts.modes, NUM_MODES, seed, groups=rollouts.task_index),
            "inference_flops": exact_metric(flops, "analytic"),
        }
        if split == "test":
            k = min(PLOTTED_EPISODES, config.eval_episodes)
            panel = (rollouts.paths[:k], rollouts.modes[:k], rollouts.success[:k])
    return metrics, panel


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: AvoidingModeConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``).

    ``config`` replaces the preset chosen by ``quick`` (``FULL`` or ``QUICK``).
    """
    config = config or (QUICK if quick else FULL)
    with torch_threads(1):  # small networks: extra intra-op threads buy nothing on a shared machine
        out.mkdir(parents=True, exist_ok=True)
        dataset = paths_dataset(out, config, seed, show_progress)
        log(f"{dataset.num_episodes} expert episodes, {dataset.num_steps} steps")
        metrics: dict[str, dict[str, Any]] = {}
        panels: dict[str, Panel] = {}
        for name in KEYS:
            metrics[name], panels[name] = run_cell(out, config, seed, name, show_progress)
            for split in SPLITS:
                cell = metrics[name][split]
                log(
                    f"  {name:9s} {split:5s} success {format_metric(cell['success'])}  "
                    f"entropy {format_metric(cell['entropy'])}  modes {format_metric(cell['modes'], 1)}  "
                    f"inference FLOPs/action {cell['inference_flops']['mean']:,.0f}"
                )
        flops = {name: metrics[name]["test"]["inference_flops"]["mean"] for name in KEYS}
        ratio = flops["mode"] / flops["diffusion"]
        results = {
            **results_head(NAME, seed, quick, config, torch.get_num_threads()),
            "metrics": metrics,
            "flops_ratio": ratio,
            "flops_target": FLOPS_TARGET,
        }
        log(f"mode / diffusion inference FLOPs per action: {ratio:.3f} (target <= {FLOPS_TARGET})")
        atomic_write_json(out / "results.json", results)
        plots = []
        title = f"{NAME}: rollouts from held-out start states, coloured by path"
        if plot_avoiding_trajectories(out / "trajectories.png", panels, title):
            plots.append("trajectories.png")
        for metric in ("success", "entropy"):
            if plot_success_bars(results, out / f"{metric}.png", metric=metric):
                plots.append(f"{metric}.png")
        atomic_write_text(out / "report.md", _report(results, plots))
        return results


def _within(inner: dict[str, Any], outer: dict[str, Any]) -> bool:
    return bool(outer["ci95"][0] <= inner["mean"] <= outer["ci95"][1])


def _report(results: dict[str, Any], plots: list[str]) -> str:
    metrics = results["metrics"]
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        "Behaviour cloning on multimodal Avoiding demonstrations (8 paths) with the dense diffusion head and",
        "with MoDE (mixture-of-experts denoiser routed by the noise level, routing cached per denoising step).",
        "Success, behaviour entropy (entropy of the path distribution over successful rollouts / log 8) and",
        "distinct paths with 95% bootstrap intervals; inference FLOPs per action counted from the layer shapes",
        "(encoder and all denoising steps, 2 per multiply-add).",
        "",
        "| policy | split | success | entropy | modes | inference FLOPs / action |",
        "|---|---|---|---|---|---|",
    ]
    for name, splits in metrics.items():
        for split in ("test", "train"):
            m = splits[split]
            lines.append(
                f"| {name} | {split} | {format_metric(m['success'])} | {format_metric(m['entropy'])} "
                f"| {format_metric(m['modes'], 1)} | {m['inference_flops']['mean']:,.0f} |"
            )
    mode, dense = metrics["mode"]["test"], metrics["diffusion"]["test"]
    lines += [
        "",
        f"mode / diffusion inference FLOPs: {results['flops_ratio']:.3f} (target <= {results['flops_target']}).",
        f"mode's test success within diffusion's interval: {_within(mode['success'], dense['success'])}; "
        f"entropy: {_within(mode['entropy'], dense['entropy'])}.",
    ]
    lines += report_tail(results, plots)
    return "\n".join(lines)


def mode_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(policy, test success, test entropy, inference FLOPs per action)`` of formatted metrics."""
    return [
        (
            name,
            format_metric(splits["test"]["success"]),
            format_metric(splits["test"]["entropy"]),
            f"{splits['test']['inference_flops']['mean']:,.0f}",
        )
        for name, splits in results["metrics"].items()
    ]


__all__ = ["FULL", "KEYS", "NAME", "QUICK", "AvoidingModeConfig", "mode_table", "run", "run_cell"]
