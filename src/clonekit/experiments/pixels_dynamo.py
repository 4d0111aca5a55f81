"""Experiments ``pixels-dynamo`` (mazes) and ``pixels-dynamo-avoiding``: does DynaMo pretraining of the visual
encoder help BC from few pixel demonstrations?

Env: small mazes (``size`` x ``size`` cells, default 7) observed as RGB pictures (``obs="pixels"``, ``cell_pixels``
pixels a cell); the BFS expert reads the grid. A task is a maze (walls and goal); the agent starts at a random
free cell. ``max(demo_counts)`` expert demonstrations are collected, one per training maze; the first ``n`` of
them are the budget ``n``. To act on a maze it never saw, a policy must read walls, goal and agent from the
picture: a CNN trained end to end on a few mazes memorizes them instead (measured in a prototype on seed 0's
mazes, before choosing the counts: 0.11 unseen-maze success from 25 demonstrations, 0.79 from 400).

DynaMo (:mod:`clonekit.pretrain.dynamo`) pretrains one encoder on the frames of **all** ``max(demo_counts)``
demonstrations (the in-domain frames, as the paper does; no actions are read). Then, for each ``n``, three
``bc`` policies with the same CNN encoder and the same gradient steps train on the first ``n`` demonstrations:

* ``scratch``: the encoder starts at random and trains end to end with the head;
* ``dynamo``: the encoder starts from DynaMo's weights and is **fine-tuned** end to end (``bc``'s head is one
  linear layer, so a frozen encoder leaves a linear probe: in the same prototype the frozen variant reached
  0.10 from 400 demonstrations where ``scratch`` reached 0.79; fine-tuning was chosen then, before the
  experiment's runs);
* ``frozen_random``: a random encoder, frozen; only the linear head trains (the floor of the architecture).

Split ``test_nN``: the policy trained on ``N`` demonstrations, ``episodes_per_maze`` episodes (random starts) on
each of ``test_mazes`` unseen mazes; metric ``success`` with a 95% interval clustered by maze. Everything is
derived from ``--seed``; stages already in ``OUT`` are reused.

Variant ``pixels-dynamo-avoiding`` (``env="avoiding"``, presets ``AVOIDING_FULL`` / ``AVOIDING_QUICK``; same
code): pixel Avoiding (an ``image_size`` x ``image_size`` picture of the fixed arena, the agent a red disc), the
``paths`` expert (8 multimodal paths), one demonstration per distinct training start state, and
``continuous_bc`` with the ``gmm`` head (as ``avoiding-quality`` and ``avoiding-ood-dynamics``: the 8 paths need
a multimodal head) over the same CNN. Here a policy needs to localize the agent in the picture, nothing more, and
consecutive frames differ exactly by the agent's move: the signal latent inverse and forward dynamics learn
from. Split ``test_nN``: ``episodes_per_maze`` episodes from each of ``test_mazes`` held-out start states (the
head samples); intervals clustered by start state. Held-out starts lie in the same small start box as the
training ones; what a policy meets that it never saw is the agent's positions along the way.

Its settings (counts 5, 20, 80; 1,000 steps for DynaMo and for every policy; 32-pixel pictures) were fixed
before seeds 0-2 ran, from one prototype on seed 100 (50 held-out starts x 2 episodes): ``scratch`` 0.41 /
0.79 / 0.91, ``dynamo`` 0.74 / 0.85 / 0.95, ``frozen_random`` <= 0.03, so the counts span data-starved to
near the ceiling. 32 pixels was chosen for CPU cost, not tuned (a pixel is 0.0625 wide and 0.034 tall; the
agent disc, 0.08 across, covers 1-2 x 2-3 pixels). ``dynamo`` is fine-tuned, as on mazes. The head matters: with
``head="diffusion"`` a scratch CNN already does well from 5 demonstrations and DynaMo adds nothing (README).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clonekit.config import check
from clonekit.data import Dataset
from clonekit.envs import get_env_family
from clonekit.evaluation import rollout, split_tasks
from clonekit.evaluation.plots import _pyplot, save_figure
from clonekit.evaluation.stats import format_metric, summarize
from clonekit.experiments.common import check_policy_keys, report_tail, results_head, torch_threads
from clonekit.experts.collect import collect
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.policies import Policy
from clonekit.pretrain.dynamo import DynamoConfig, pretrain_dynamo
from clonekit.quality.subset import write_subset
from clonekit.seeding import derive_seed
from clonekit.train import TrainConfig, train

NAME = "pixels-dynamo"
AVOIDING_NAME = "pixels-dynamo-avoiding"
KEYS = ("scratch", "dynamo", "frozen_random")
ENVS = ("maze", "avoiding")


@dataclass(frozen=True)
class PixelsDynamoConfig:
    """Settings of ``pixels-dynamo``.

    Args:
        demo_counts: Demonstration budgets ``n`` (increasing), one demonstration per training maze; DynaMo
            pretrains on the largest one's frames.
        size: Side of the mazes in cells.
        cell_pixels: Pixels per maze cell in the pictures (a picture is ``size * cell_pixels`` square).
        test_mazes: Unseen mazes of the ``test_nN`` splits.
        episodes_per_maze: Episodes (random start cells) played on each unseen maze.
        conv_channels: Output channels of the CNN encoder's stride-2 convolutions (every policy and DynaMo).
        hidden_sizes: Widths of the encoder's MLP; the last is the feature width the head sees.
        bc_steps: Gradient steps of every policy.
        batch_size: Transitions per gradient step of the policies.
        lr: Adam learning rate of the policies.
        pretrain_steps: Gradient steps of DynaMo.
        pretrain_batch_size: Transitions per DynaMo step.
        pretrain_lr: Adam learning rate of DynaMo.
        latent_action_dim: Width of DynaMo's latent action.
        policies: The policy keys to run (some of ``scratch``, ``dynamo``, ``frozen_random``).
        env: ``"maze"`` (pixel mazes, BFS expert, ``bc``) or ``"avoiding"`` (pixel Avoiding, ``paths`` expert,
            ``continuous_bc``; a task is a start state, so ``test_mazes`` counts held-out start states and
            ``episodes_per_maze`` the episodes played from each).
        image_size: Side of the Avoiding pictures in pixels (``env="avoiding"`` only).
        head: Action head of the ``continuous_bc`` policies (``env="avoiding"`` only).
    """

    demo_counts: tuple[int, ...] = (25, 100, 400)
    size: int = 7
    cell_pixels: int = 2
    test_mazes: int = 100
    episodes_per_maze: int = 2
    conv_channels: tuple[int, ...] = (16, 32)
    hidden_sizes: tuple[int, ...] = (128,)
    bc_steps: int = 1500
    batch_size: int = 64
    lr: float = 1e-3
    pretrain_steps: int = 1500
    pretrain_batch_size: int = 64
    pretrain_lr: float = 1e-3
    latent_action_dim: int = 8
    policies: tuple[str, ...] = KEYS
    env: str = "maze"
    image_size: int = 32
    head: str = "gmm"

    def __post_init__(self) -> None:
        counts = self.demo_counts
        check(
            len(counts) >= 1 and all(c >= 1 for c in counts) and list(counts) == sorted(set(counts)),
            "demo_counts",
            "increasing counts >= 1",
            counts,
        )
        check(5 <= self.size <= 64, "size", "in [5, 64]", self.size)
        check(1 <= self.cell_pixels <= 32, "cell_pixels", "in [1, 32]", self.cell_pixels)
        for name in ("test_mazes", "episodes_per_maze", "bc_steps", "batch_size", "pretrain_steps"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check(self.pretrain_batch_size >= 2, "pretrain_batch_size", ">= 2", self.pretrain_batch_size)
        check(self.lr > 0 and self.pretrain_lr > 0, "lr, pretrain_lr", "> 0", (self.lr, self.pretrain_lr))
        check(len(self.conv_channels) >= 1, "conv_channels", "at least one layer", self.conv_channels)
        check(len(self.hidden_sizes) >= 1, "hidden_sizes", "at least one width", self.hidden_sizes)
        check_policy_keys(self.policies, KEYS)
        check(self.env in ENVS, "env", "'maze' or 'avoiding'", self.env)
        check(8 <= self.image_size <= 512, "image_size", "in [8, 512]", self.image_size)
        heads = ("mse", "gaussian", "gmm", "diffusion")
        check(self.head in heads, "head", "mse, gaussian, gmm or diffusion", self.head)

    @property
    def name(self) -> str:
        """The experiment's name for this env (it also seeds DynaMo and the evaluation's sampling)."""
        return NAME if self.env == "maze" else AVOIDING_NAME


FULL = PixelsDynamoConfig()
QUICK = replace(FULL, demo_counts=(25, 200), test_mazes=40, bc_steps=600, pretrain_steps=600)
# Chosen from one prototype on seed 100 (not seeds 0-2): see the module docstring.
AVOIDING_FULL = replace(
    FULL, env="avoiding", demo_counts=(5, 20, 80), image_size=32, test_mazes=100, bc_steps=1000, pretrain_steps=1000
)
AVOIDING_QUICK = replace(AVOIDING_FULL, demo_counts=(5, 20), test_mazes=30, bc_steps=300, pretrain_steps=300)


def env_kwargs(config: PixelsDynamoConfig) -> dict[str, Any]:
    """The env options: pictures of ``size`` x ``size`` mazes, ``cell_pixels`` a cell, or of the Avoiding arena,
    ``image_size`` pixels square."""
    if config.env == "avoiding":
        return {"obs": "pixels", "image_size": config.image_size}
    return {"obs": "pixels", "size": config.size, "cell_pixels": config.cell_pixels}


def demonstrations(out: Path, config: PixelsDynamoConfig, seed: int, show: bool) -> dict[int, Dataset]:
    """All ``max(demo_counts)`` demonstrations, one per training task (maze or start state; ``out/data/all``),
    and per count ``n`` the first ``n`` (``out/data/nN``); existing datasets are reused."""
    largest = config.demo_counts[-1]
    path = out / "data" / "all"
    if path.exists():
        everything = Dataset.open(path)
    else:
        everything = collect(
            config.env,
            "bfs" if config.env == "maze" else "paths",
            episodes=largest,
            seed=seed,
            out=path,
            num_tasks=largest,
            env_kwargs=env_kwargs(config),
            show_progress=show,
        )
    subsets = {
        n: write_subset(everything, out / "data" / f"n{n}", list(range(n)), f"first {n} episodes")
        for n in config.demo_counts
        if n < largest
    }
    return {**subsets, largest: everything}


def dynamo_config(config: PixelsDynamoConfig, seed: int) -> DynamoConfig:
    """DynaMo's settings: the policies' encoder architecture and the experiment's pretraining settings."""
    return DynamoConfig(
        conv_channels=config.conv_channels,
        hidden_sizes=config.hidden_sizes,
        latent_action_dim=config.latent_action_dim,
        steps=config.pretrain_steps,
        batch_size=config.pretrain_batch_size,
        lr=config.pretrain_lr,
        seed=derive_seed(seed, f"{config.name}:dynamo") % 2**31,
    )


def policy_overrides(config: PixelsDynamoConfig, key: str, encoder_dir: Path) -> dict[str, Any]:
    """Policy settings of ``key``: the shared CNN encoder (and, on Avoiding, the action head), and how the encoder
    starts (and whether it trains)."""
    common: dict[str, Any] = {
        "encoder": "cnn",
        "conv_channels": list(config.conv_channels),
        "hidden_sizes": list(config.hidden_sizes),
    }
    if config.env == "avoiding":
        common["head"] = config.head
    if key == "dynamo":
        return {**common, "encoder_weights": str(encoder_dir)}
    if key == "frozen_random":
        return {**common, "freeze_encoder": True}
    return common


def train_key(
    data: Dataset, out: Path, config: PixelsDynamoConfig, seed: int, key: str, n: int, encoder_dir: Path, show: bool
) -> Policy:
    """Train (or resume) policy ``key`` on ``n`` demonstrations in ``out/runs/KEY_nN``."""
    train_config = TrainConfig(
        steps=config.bc_steps,
        batch_size=config.batch_size,
        lr=config.lr,
        seed=seed,
        checkpoint_every=config.bc_steps,
        keep_checkpoints=1,
        tensorboard=False,
        val_fraction=0.0,
    )
    return train(
        "bc" if config.env == "maze" else "continuous_bc",
        data,
        out / "runs" / f"{key}_n{n}",
        train_config,
        policy_overrides=policy_overrides(config, key, encoder_dir),
        resume=True,
        same_settings=True,
        show_progress=show,
    )


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: PixelsDynamoConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``).

    ``config`` replaces the preset chosen by ``quick`` (``FULL`` or ``QUICK``); its ``env`` picks the variant.
    """
    config = config or (QUICK if quick else FULL)
    with torch_threads(1):  # small networks: extra intra-op threads buy nothing on a busy machine
        return _run(out, seed, quick, show_progress, log, config)


def run_avoiding(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: PixelsDynamoConfig | None = None,
) -> dict[str, Any]:
    """``pixels-dynamo-avoiding`` (the ``AVOIDING_FULL`` / ``AVOIDING_QUICK`` presets) into ``out``."""
    return run(out, seed, quick, show_progress, log, config or (AVOIDING_QUICK if quick else AVOIDING_FULL))


def _run(
    out: Path, seed: int, quick: bool, show_progress: bool, log: Any, config: PixelsDynamoConfig
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    data = demonstrations(out, config, seed, show_progress)
    largest = data[config.demo_counts[-1]]
    side = config.size * config.cell_pixels if config.env == "maze" else config.image_size
    tasks_word = "mazes" if config.env == "maze" else "start states"
    log(f"{largest.num_episodes} expert demonstrations on as many {tasks_word}, {largest.num_steps} frames, {side} px")
    encoder_dir = out / "encoder"
    started = time.perf_counter()
    pretrained = pretrain_dynamo(dynamo_config(config, seed), largest, encoder_dir, show_progress=show_progress)
    pretrain_seconds = time.perf_counter() - started
    log(f"dynamo: loss {pretrained['first_loss']:.3f} -> {pretrained['final_loss']:.3f} ({pretrain_seconds:.0f} s)")
    tasks = split_tasks(largest.env, "test", seed, config.test_mazes)
    family = get_env_family(config.env)
    metrics: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    for key in config.policies:
        metrics[key] = {}
        for n in config.demo_counts:
            started = time.perf_counter()
            policy = train_key(data[n], out, config, seed, key, n, encoder_dir, show_progress)
            episodes = config.test_mazes * config.episodes_per_maze
            if config.env == "avoiding":
                torch.manual_seed(derive_seed(seed, f"{config.name}:{key}:{n}") % 2**31)  # the head's sampling noise
            results = rollout(policy, family, tasks, episodes, seed, env_kwargs=env_kwargs(config))
            cell = summarize(results.success.astype(bool), seed, groups=results.task_index)
            metrics[key][f"test_n{n}"] = {"success": cell}
            seconds[f"{key}_n{n}"] = time.perf_counter() - started
            log(f"  {key:13s} n={n:4d} test success {format_metric(cell)} ({seconds[f'{key}_n{n}']:.0f} s)")
    results_json = {
        **results_head(config.name, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
        "pretraining": {
            "frames": pretrained["frames"],
            "first_loss": pretrained["first_loss"],
            "final_loss": pretrained["final_loss"],
            "seconds_this_run": pretrain_seconds,
        },
        "seconds": seconds,
    }
    atomic_write_json(out / "results.json", results_json)
    plots = ["success.png"] if _plot(results_json, config, encoder_dir, out / "success.png") else []
    atomic_write_text(out / "report.md", _report(results_json, config, plots))
    return results_json


def _plot(results: dict[str, Any], config: PixelsDynamoConfig, encoder_dir: Path, path: Path) -> bool:
    """Left: unseen-maze success against the number of demonstrations per policy (95% CI); right: DynaMo's loss."""
    plt = _pyplot()
    if plt is None:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    counts = list(config.demo_counts)
    for j, (key, splits) in enumerate(results["metrics"].items()):
        cells = [splits[f"test_n{n}"]["success"] for n in counts]
        mean = np.array([c["mean"] for c in cells])
        low = mean - np.array([c["ci95"][0] for c in cells])
        high = np.array([c["ci95"][1] for c in cells]) - mean
        x = np.arange(len(counts)) + (j - 1) * 0.06  # a small offset so the whiskers do not hide each other
        left.errorbar(x, mean, yerr=[low, high], marker="o", capsize=4, label=key)
    left.set_xticks(np.arange(len(counts)), [str(n) for n in counts])
    unseen = "unseen mazes" if config.env == "maze" else "held-out start states"
    left.set_xlabel(f"expert demonstrations (one per training {'maze' if config.env == 'maze' else 'start state'})")
    left.set_ylabel(f"success on {unseen} (95% CI)")
    left.set_ylim(-0.02, 1.02)
    left.grid(alpha=0.3)
    left.legend()
    lines = (encoder_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    steps = [r["step"] for r in records]
    right.plot(steps, [r["loss"] for r in records], label="total")
    right.plot(steps, [r["dynamics_loss"] for r in records], label="1 - cos (forward prediction)")
    right.set_xlabel("pretraining step")
    right.set_title(f"DynaMo pretraining on {results['pretraining']['frames']} frames")
    right.grid(alpha=0.3)
    right.legend()
    fig.suptitle(f"{results['experiment']} (seed {results['seed']})")
    save_figure(fig, path)
    return True


def _report(results: dict[str, Any], config: PixelsDynamoConfig, plots: list[str]) -> str:
    counts = list(config.demo_counts)
    if config.env == "maze":
        side = config.size * config.cell_pixels
        intro = [
            f"Pixel mazes ({config.size}x{config.size} cells as {side}x{side} RGB pictures), BFS expert, one "
            "demonstration per training maze. `bc` with the same CNN encoder trained on the first n demonstrations:",
            f"`scratch` (random init, end to end), `dynamo` (encoder pretrained by DynaMo on the frames of all "
            f"{counts[-1]} demonstrations, fine-tuned end to end), `frozen_random` (random encoder, frozen: a linear "
            "probe).",
            f"Test: {config.episodes_per_maze} episodes (random starts) on each of {config.test_mazes} unseen mazes; "
            "95% intervals clustered by maze.",
        ]
    else:
        side = config.image_size
        intro = [
            f"Pixel Avoiding ({side}x{side} RGB pictures), `paths` expert, one demonstration per training start state.",
            f"`continuous_bc` (head `{config.head}`) with the same CNN encoder trained on the first n demonstrations:",
            f"`scratch` (random init, end to end), `dynamo` (encoder pretrained by DynaMo on the frames of all "
            f"{counts[-1]} demonstrations, fine-tuned end to end), `frozen_random` (random encoder, frozen).",
            f"Test: {config.episodes_per_maze} episodes from each of {config.test_mazes} held-out start states; 95% "
            "intervals clustered by start state.",
        ]
    lines = [
        f"# {config.name} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        *intro,
        "",
        "| policy | " + " | ".join(f"test_n{n} success" for n in counts) + " |",
        "|---|" + "---|" * len(counts),
    ]
    for key, splits in results["metrics"].items():
        lines.append(f"| {key} | " + " | ".join(format_metric(splits[f"test_n{n}"]["success"]) for n in counts) + " |")
    pre = results["pretraining"]
    lines += [
        "",
        f"DynaMo pretraining on {pre['frames']} frames: loss {pre['first_loss']:.3f} (first 50 steps) -> "
        f"{pre['final_loss']:.3f} (last 50).",
    ]
    lines += report_tail(results, plots)
    return "\n".join(lines)


def success_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(policy, "test_nN: success; ...")`` of formatted metrics, one row per policy."""
    return [
        (key, "; ".join(f"{split}: {format_metric(cell['success'])}" for split, cell in splits.items()))
        for key, splits in results["metrics"].items()
    ]


__all__ = [
    "AVOIDING_FULL",
    "AVOIDING_NAME",
    "AVOIDING_QUICK",
    "ENVS",
    "FULL",
    "KEYS",
    "NAME",
    "QUICK",
    "PixelsDynamoConfig",
    "demonstrations",
    "dynamo_config",
    "policy_overrides",
    "run",
    "run_avoiding",
    "success_table",
]
