"""Experiment ``avoiding-style``: does a style-conditioned policy play the path it is asked for?

The scripted Avoiding expert picks one of 8 collision-free paths per episode and writes it as the ``style``
stream (see :mod:`clonekit.experts.avoiding`). On the same demonstrations, with the same head (``mse``),
network and gradient steps, we train:

* ``bc``: ``continuous_bc``, which never sees the style (the chance baseline: it cannot follow a request);
* ``style``: ``style_bc``, which reads the one-hot style id beside the position.

``test``: every held-out start state is asked for **every** style once (``test_starts x 8`` episodes; episode
``k`` starts from test state ``k % test_starts`` and is asked for style ``k // test_starts``). The style an
episode shows is its path class (:func:`clonekit.envs.avoiding.classify_paths`, a deterministic function of
the trajectory, so the classifier needs no training; checked on the demonstrations, where it must return the
style the expert wrote). Metrics: ``success`` and ``style_agreement`` (share of episodes whose shown style is
the asked one; a crash before the last row disagrees), with 95% intervals clustered by start state (the
unit that is drawn). For ``bc``, which ignores the request, agreement is what a style drawn at random would
give. Everything is derived from ``--seed``; stages already in ``OUT`` are reused.
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
from clonekit.envs.avoiding import NUM_MODES, classify_paths
from clonekit.evaluation import rollout, split_tasks
from clonekit.evaluation.plots import plot_success_bars
from clonekit.evaluation.stats import format_metric, summarize
from clonekit.evaluation.style import style_agreement
from clonekit.experiments.avoiding_modes import paths_dataset
from clonekit.experiments.common import report_tail, results_head, torch_threads
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.policies import Policy
from clonekit.seeding import derive_seed
from clonekit.train import TrainConfig, train

NAME = "avoiding-style"
KEYS = {"bc": "continuous_bc", "style": "style_bc"}


@dataclass(frozen=True)
class AvoidingStyleConfig:
    """Settings of ``avoiding-style``.

    Args:
        episodes: Expert demonstrations (episode ``k`` starts from training start state ``k % train_starts``).
        train_starts: Number of start states the demonstrations begin from.
        test_starts: Number of held-out start states; each is asked for every style (the ``test`` split).
        steps: Gradient steps of each policy.
        batch_size: Transitions per gradient step.
        lr: Adam learning rate.
        hidden_sizes: Widths of the MLP encoder of both policies.
        head: The action head of both policies (``continuous_bc``'s ``head``).
    """

    episodes: int = 400
    train_starts: int = 100
    test_starts: int = 50
    steps: int = 4000
    batch_size: int = 256
    lr: float = 1e-3
    hidden_sizes: tuple[int, ...] = (256, 256)
    head: str = "mse"

    def __post_init__(self) -> None:
        for name in ("episodes", "train_starts", "test_starts", "steps", "batch_size"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check(self.lr > 0, "lr", "> 0", self.lr)
        check(len(self.hidden_sizes) >= 1, "hidden_sizes", "at least one width", self.hidden_sizes)


FULL = AvoidingStyleConfig()
QUICK = replace(FULL, episodes=128, train_starts=32, test_starts=16, steps=1500, hidden_sizes=(128, 128))


def train_key(dataset: Dataset, out: Path, config: AvoidingStyleConfig, seed: int, key: str, show: bool) -> Policy:
    """Train (or resume) policy ``key`` of :data:`KEYS` in ``out/runs/KEY``."""
    train_config = TrainConfig(
        steps=config.steps, batch_size=config.batch_size, lr=config.lr, seed=seed, checkpoint_every=1000
    )
    overrides = {"head": config.head, "hidden_sizes": list(config.hidden_sizes)}
    return train(
        KEYS[key],
        dataset,
        out / "runs" / key,
        train_config,
        policy_overrides=overrides,
        resume=True,
        same_settings=True,
        show_progress=show,
    )


@dataclass
class StyleRollouts:
    """Per episode: success, the asked style, the shown style (path class, -1 when none) and the task index."""

    success: np.ndarray
    asked: np.ndarray
    shown: np.ndarray
    task_index: np.ndarray


def evaluate_styles(policy: Policy, tasks: list[Any], seed: int, style_stream: str = "style") -> StyleRollouts:
    """Every task asked for every style once (episode ``k``: task ``k % len(tasks)``, style ``k // len(tasks)``),
    in one wave, with the style each episode showed."""
    episodes = len(tasks) * NUM_MODES
    asked = np.arange(episodes, dtype=np.int64) // len(tasks)
    positions: list[np.ndarray] = []
    results = rollout(
        policy,
        get_env_family("avoiding"),
        tasks,
        episodes,
        seed,
        max_parallel=episodes,  # one wave, so the recorded positions line up step by step
        on_step=lambda step, obs, actions, state: positions.append(obs.copy()),
        episode_inputs={style_stream: asked},
    )
    shown = classify_paths(np.stack(positions))  # a finished slot stays where it ended
    return StyleRollouts(results.success.astype(bool), asked, shown, results.task_index)


def classifier_check(dataset: Dataset) -> float:
    """Share of demonstrations whose path class equals the style the expert wrote (the classifier's check)."""
    written = np.asarray(dataset.column("style"))[dataset.episode_starts]
    shown = [int(classify_paths(np.asarray(dataset.episode(i)["obs"])[:, None])[0]) for i in range(len(written))]
    return float(np.mean(np.asarray(shown) == written))


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: AvoidingStyleConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``).

    ``config`` replaces the preset chosen by ``quick`` (``FULL`` or ``QUICK``).
    """
    config = config or (QUICK if quick else FULL)
    with torch_threads(1):  # small networks: extra intra-op threads buy nothing on a busy machine
        return _run(out, seed, quick, show_progress, log, config)


def _run(
    out: Path, seed: int, quick: bool, show_progress: bool, log: Any, config: AvoidingStyleConfig
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    dataset = paths_dataset(out, config, seed, show_progress)
    classifier = classifier_check(dataset)
    log(
        f"{dataset.num_episodes} expert episodes, {dataset.num_steps} steps; the path classifier returns the "
        f"expert's style on {classifier:.1%} of them"
    )
    tasks = split_tasks(dataset.env, "test", seed, config.test_starts)
    metrics: dict[str, dict[str, Any]] = {}
    per_style: dict[str, list[float]] = {}
    for key in KEYS:
        policy = train_key(dataset, out, config, seed, key, show_progress)
        torch.manual_seed(derive_seed(seed, f"{NAME}:{key}:test"))  # a sampling head's noise
        rollouts = evaluate_styles(policy, tasks, seed)
        groups = rollouts.task_index
        metrics[key] = {
            "test": {
                "success": summarize(rollouts.success, seed, groups=groups),
                "style_agreement": style_agreement(rollouts.shown, rollouts.asked, seed, groups=groups),
            }
        }
        per_style[key] = [float(np.mean(rollouts.shown[rollouts.asked == s] == s)) for s in range(NUM_MODES)]
        cell = metrics[key]["test"]
        log(
            f"  {key:5s} test success {format_metric(cell['success'])}  "
            f"style agreement {format_metric(cell['style_agreement'])}"
        )
    results = {
        **results_head(NAME, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
        "agreement_per_style": per_style,
        "classifier_on_demos": classifier,
    }
    atomic_write_json(out / "results.json", results)
    plots = []
    for metric in ("success", "style_agreement"):
        if plot_success_bars(results, out / f"{metric}.png", metric=metric):
            plots.append(f"{metric}.png")
    atomic_write_text(out / "report.md", _report(results, plots))
    return results


def _report(results: dict[str, Any], plots: list[str]) -> str:
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        "Unconditioned BC (`bc`) vs style-conditioned BC (`style`, one-hot path id) on the multimodal Avoiding",
        "demonstrations; every held-out start state is asked for each of the 8 paths. Style agreement: share of",
        "episodes whose path class is the asked one (`bc` ignores the request: its agreement is chance level).",
        "95% intervals clustered by start state.",
        "",
        "| policy | test success | test style agreement |",
        "|---|---|---|",
    ]
    for key, splits in results["metrics"].items():
        m = splits["test"]
        lines.append(f"| {key} | {format_metric(m['success'])} | {format_metric(m['style_agreement'])} |")
    lines += ["", "Agreement per asked style (path id 0-7):", ""]
    for key, values in results["agreement_per_style"].items():
        lines.append(f"- {key}: " + ", ".join(f"{v:.2f}" for v in values))
    lines += [
        "",
        f"The path classifier returns the expert's written style on {results['classifier_on_demos']:.1%} of "
        "the demonstrations.",
    ]
    lines += report_tail(results, plots)
    return "\n".join(lines)


def style_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(policy, test success, test style agreement)`` of formatted metrics."""
    return [
        (
            key,
            format_metric(splits["test"]["success"]),
            format_metric(splits["test"]["style_agreement"]),
        )
        for key, splits in results["metrics"].items()
    ]


__all__ = [
    "FULL",
    "KEYS",
    "NAME",
    "QUICK",
    "AvoidingStyleConfig",
    "StyleRollouts",
    "classifier_check",
    "evaluate_styles",
    "run",
    "style_table",
]
