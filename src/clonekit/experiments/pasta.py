"""Experiment ``pasta``: does PASTA pretraining on a large noisy pool help a transformer policy learn from a few
expert demonstrations (issue 19 item 2)?

Setting: Avoiding (:mod:`clonekit.envs.avoiding`), vector states ``(2,)``, continuous actions ``(2,)``, on
``train_starts`` training start states; data written once per seed by
:func:`clonekit.experiments.avoiding_mixed.write_mixture`:

* ``expert``: ``max(expert_budgets)`` episodes of the multimodal ``paths`` expert (episode ``k`` starts at start
  state ``k % train_starts``);
* ``pool``: ``pool_episodes`` episodes on the same start states of the same expert whose action is replaced, at
  each step with probability ``noise_prob``, by a uniform random one (a large, cheap, noisy source).

Pretraining (:mod:`clonekit.pretrain.pasta`): masked state-action token prediction on every trajectory of the
pool, with its (noisy) action labels unless ``pretrain_use_actions`` is false, then states only. The expert
episodes are left out of pretraining, so every expert budget sees the same pretrained weights and no policy
sees an expert episode beyond its budget.

Policy keys, both ``transformer_bc`` with component tokenization (same architecture, steps, batch and data):

* ``scratch``: trained from a fresh initialization on the first ``n`` expert episodes;
* ``pasta``: the same, starting from the pretrained transformer (and its normalization).

Splits ``test_nN`` (one per budget ``N`` in ``expert_budgets``): ``test_starts`` start states no episode began
at, one deterministic rollout each (Avoiding and both policies are deterministic), metric ``success`` with a
Wilson interval. Every stage is skipped or resumed when its output is already in ``OUT``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clonekit.checkpoint import load_policy
from clonekit.config import check, config_to_json
from clonekit.data import Dataset
from clonekit.envs import get_env_family
from clonekit.errors import DatasetError
from clonekit.evaluation import rollout, split_tasks
from clonekit.evaluation.plots import _pyplot, plot_success_bars, save_figure
from clonekit.evaluation.stats import format_metric
from clonekit.experiments.avoiding_mixed import write_mixture
from clonekit.experiments.common import (
    behaviour_composition,
    check_policy_keys,
    report_tail,
    results_head,
    torch_threads,
)
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.pretrain.pasta import CONFIG_FILE as PRETRAINED_CONFIG
from clonekit.pretrain.pasta import PastaConfig, pretrain_pasta
from clonekit.quality.subset import write_subset
from clonekit.train import TrainConfig, train

NAME = "pasta"
KEYS = ("scratch", "pasta")


@dataclass(frozen=True)
class PastaExperimentConfig:
    """Settings of ``pasta``.

    Args:
        train_starts: Training start states of every episode (expert and pool).
        expert_budgets: Expert episodes each policy key is fine-tuned on, one split ``test_nN`` each.
        pool_episodes: Noisy episodes pretrained on.
        noise_prob: Per-step probability that a pool episode takes a uniform random action.
        test_starts: Held-out start states of every ``test_nN`` split.
        policies: Policy keys to run, a subset of ``scratch, pasta``.

        history: Observations the policy sees (``transformer_bc``'s ``history``).
        chunk: Actions predicted per call (``chunk``; temporal ensembling executes them).
        d_model: Token width of the transformer (pretraining and policy).
        num_heads: Attention heads.
        num_layers: Transformer layers.
        feedforward: Feed-forward width of each layer.

        steps: Fine-tuning gradient steps of every policy key.
        batch_size: Windows per fine-tuning step.
        lr: Adam learning rate of fine-tuning and of pretraining.
        pretrain_steps: Pretraining gradient steps.
        pretrain_batch_size: Windows per pretraining step.
        pretrain_use_actions: Pretrain on the pool's action labels too (False: its states only).
    """

    train_starts: int = 20
    expert_budgets: tuple[int, ...] = (5, 20)
    pool_episodes: int = 200
    noise_prob: float = 0.5
    test_starts: int = 200
    policies: tuple[str, ...] = KEYS

    history: int = 2
    chunk: int = 4
    d_model: int = 32
    num_heads: int = 2
    num_layers: int = 2
    feedforward: int = 64

    steps: int = 1000
    batch_size: int = 64
    lr: float = 3e-4
    pretrain_steps: int = 1500
    pretrain_batch_size: int = 64
    pretrain_use_actions: bool = True

    def __post_init__(self) -> None:
        budgets = self.expert_budgets
        check(
            len(budgets) >= 1 and all(b >= 1 for b in budgets) and len(set(budgets)) == len(budgets),
            "expert_budgets",
            "one or more distinct counts >= 1",
            budgets,
        )
        for name in (
            "train_starts",
            "pool_episodes",
            "test_starts",
            "steps",
            "batch_size",
            "pretrain_steps",
            "pretrain_batch_size",
        ):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check(0 <= self.noise_prob <= 1, "noise_prob", "in [0, 1]", self.noise_prob)
        check_policy_keys(self.policies, KEYS)
        check(1 <= self.history <= 16, "history", "in [1, 16]", self.history)
        check(1 <= self.chunk <= 32, "chunk", "in [1, 32]", self.chunk)
        check(self.lr > 0, "lr", "> 0", self.lr)

    def pretraining(self, seed: int) -> PastaConfig:
        """The pretraining settings: the policy's transformer over ``history + chunk - 1`` slots."""
        return PastaConfig(
            window=self.history + self.chunk - 1,
            d_model=self.d_model,
            num_heads=self.num_heads,
            num_layers=self.num_layers,
            feedforward=self.feedforward,
            use_actions=self.pretrain_use_actions,
            steps=self.pretrain_steps,
            batch_size=self.pretrain_batch_size,
            lr=self.lr,
            seed=seed,
        )


FULL = PastaExperimentConfig()
QUICK = replace(FULL, expert_budgets=(20,), pool_episodes=100, test_starts=100, steps=300, pretrain_steps=400)


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: PastaExperimentConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``)."""
    config = config or (QUICK if quick else FULL)
    # Small networks: extra intra-op threads buy nothing and, on a busy machine, cost a lot.
    with torch_threads(1):
        return _run(out, seed, quick, show_progress, log, config)


def _run(
    out: Path, seed: int, quick: bool, show_progress: bool, log: Any, config: PastaExperimentConfig
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    pool, experts = _datasets(out, config, seed)
    composition = behaviour_composition(pool, ("noisy",), seed, log)
    pretrained = out / "pretrained"
    record = _pretrain(pretrained, pool, config, seed, show_progress)
    log(
        f"pretrained on {pool.num_episodes} pool episodes: held-out masked loss "
        f"{record['eval_loss_start']:.3f} -> {record['eval_loss_end']:.3f}"
    )
    family = get_env_family("avoiding")
    tasks = split_tasks(pool.env, "test", seed, config.test_starts)
    metrics: dict[str, dict[str, Any]] = {key: {} for key in config.policies}
    for budget in config.expert_budgets:
        for key in config.policies:
            run_dir = out / "runs" / f"{key}_n{budget}"
            overrides = _overrides(config, pretrained if key == "pasta" else None)
            train_config = TrainConfig(
                steps=config.steps,
                batch_size=config.batch_size,
                lr=config.lr,
                seed=seed,
                checkpoint_every=config.steps,
                keep_checkpoints=1,
                tensorboard=False,
            )
            train(
                "transformer_bc",
                experts[budget],
                run_dir,
                train_config,
                overrides,
                resume=True,
                same_settings=True,
                show_progress=show_progress,
            )
            policy = load_policy(run_dir)
            success = rollout(policy, family, tasks, config.test_starts, seed).metrics(seed)["success"]
            metrics[key][f"test_n{budget}"] = {"success": success}
            log(f"  {key:8s} n={budget:<4d} test success {format_metric(success)}")

    results = {
        **results_head(NAME, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
        "pretraining": {
            "config": record["pasta_config"],
            "episodes": record["num_episodes"],
            "steps_of_data": record["num_steps"],
            "action_labels": record["action_labels"],
            "eval_loss_start": record["eval_loss_start"],
            "eval_loss_end": record["eval_loss_end"],
            "seconds": record["seconds"],
            "train_losses": record["train_losses"],
        },
        "data": {"pool": composition["noisy"], "expert_episodes": {n: d.num_episodes for n, d in experts.items()}},
    }
    atomic_write_json(out / "results.json", results)
    plots = ["success.png"] if plot_success_bars(results, out / "success.png", metric="success") else []
    if _plot_pretraining(results, out / "pretraining.png"):
        plots.append("pretraining.png")
    atomic_write_text(out / "report.md", _report(results, plots))
    return results


def _overrides(config: PastaExperimentConfig, pretrained: Path | None) -> dict[str, Any]:
    """``transformer_bc`` settings of both keys; only ``pretrained`` differs."""
    return {
        "tokenization": "component",
        "history": config.history,
        "chunk": config.chunk,
        "d_model": config.d_model,
        "num_heads": config.num_heads,
        "num_layers": config.num_layers,
        "feedforward": config.feedforward,
        "pretrained": None if pretrained is None else str(pretrained),
    }


def _pretrain(
    directory: Path, pool: Dataset, config: PastaExperimentConfig, seed: int, show_progress: bool
) -> dict[str, Any]:
    """Pretrain into ``directory``, or read back the record of an earlier run with the same settings."""
    wanted = config.pretraining(seed)
    if (directory / PRETRAINED_CONFIG).is_file():
        record: dict[str, Any] = json.loads((directory / PRETRAINED_CONFIG).read_text())
        if record.get("pasta_config") != config_to_json(wanted) or record["dataset"]["fingerprint"] != pool.fingerprint:
            raise DatasetError(f"{directory}: pretrained with other settings or data; use a fresh --out")
        return record
    return pretrain_pasta(wanted, pool, directory, show_progress=show_progress)


def _datasets(out: Path, config: PastaExperimentConfig, seed: int) -> tuple[Dataset, dict[int, Dataset]]:
    """The pool, and one expert dataset per budget (the first ``n`` expert episodes); written once, a rerun
    checks that they fit the settings."""
    root = out / "data"
    most = max(config.expert_budgets)
    wanted = {
        "expert": {"expert": most, "noisy": 0, "random": 0},
        "pool": {"expert": 0, "noisy": config.pool_episodes, "random": 0},
    }
    written: dict[str, Dataset] = {}
    for kind, counts in wanted.items():
        path = root / kind
        if path.exists():
            data = Dataset.open(path)
            recorded = data.extra.get("mixture", {})
            fits = (
                data.env.get("seed") == seed
                and len(data.env.get("tasks", [])) == config.train_starts
                and recorded == {"episodes": counts, "noise_prob": config.noise_prob}
            )
            if not fits:
                raise DatasetError(f"{path}: exists but was written with other settings; use a fresh --out")
        else:
            data = write_mixture(path, seed, config.train_starts, counts, config.noise_prob)
        written[kind] = data
    experts = {}
    for budget in config.expert_budgets:
        path = root / f"expert_n{budget}"
        if path.exists():
            experts[budget] = Dataset.open(path)
        else:
            experts[budget] = write_subset(written["expert"], path, list(range(budget)), f"the first {budget}")
    return written["pool"], experts


def _plot_pretraining(results: dict[str, Any], path: Path) -> bool:
    """Pretraining loss over steps (left) and test success per budget for both keys (right)."""
    plt = _pyplot()
    if plt is None:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    losses = np.asarray(results["pretraining"]["train_losses"], dtype=np.float64)
    left.plot(losses[:, 0], losses[:, 1])
    left.set_xlabel("pretraining step")
    left.set_ylabel("masked-token L1 (training batch)")
    pre = results["pretraining"]
    # One training batch per point (its random masks vary), so the fixed held-out windows are quoted too.
    left.set_title(f"PASTA pretraining (held-out {pre['eval_loss_start']:.2f} -> {pre['eval_loss_end']:.2f})")
    left.grid(alpha=0.3)
    for key, splits in results["metrics"].items():
        budgets = [int(split.removeprefix("test_n")) for split in splits]
        means = np.array([m["success"]["mean"] for m in splits.values()])
        lows = np.array([m["success"]["ci95"][0] for m in splits.values()])
        highs = np.array([m["success"]["ci95"][1] for m in splits.values()])
        right.errorbar(budgets, means, yerr=[means - lows, highs - means], marker="o", capsize=3, label=key)
    right.set_xlabel("expert episodes fine-tuned on")
    right.set_ylabel("test success (95% CI)")
    right.set_ylim(0, 1.05)
    right.set_title("fine-tuned on few expert episodes")
    right.legend()
    right.grid(alpha=0.3)
    save_figure(fig, path)
    return True


def _report(results: dict[str, Any], plots: list[str]) -> str:
    config, pre, pool = results["config"], results["pretraining"], results["data"]["pool"]
    budgets = config["expert_budgets"]
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        f"Avoiding, {config['train_starts']} training start states. Pretraining: PASTA masked state-action token "
        f"prediction on {pre['episodes']} noisy episodes ({pre['steps_of_data']} steps; the `paths` expert with a "
        f"uniform random action at each step with probability {config['noise_prob']}; success of those episodes "
        f"{format_metric(pool['success'])}), {'with' if pre['action_labels'] else 'without'} their action labels, "
        f"{pre['config']['steps']} steps: held-out masked L1 {pre['eval_loss_start']:.3f} -> "
        f"{pre['eval_loss_end']:.3f} ({pre['seconds']:.0f} s).",
        "",
        f"Both keys: `transformer_bc` with component tokens (d_model {config['d_model']}, {config['num_layers']} "
        f"layers, history {config['history']}, chunk {config['chunk']}), {config['steps']} fine-tuning steps on the "
        "first n expert episodes (none of them pretrained on); `pasta` starts from the pretrained transformer, "
        "`scratch` from a fresh one.",
        "",
        f"Success from {config['test_starts']} held-out start states, one deterministic rollout each, Wilson 95% "
        "intervals:",
        "",
        "| policy | " + " | ".join(f"n={b} expert episodes" for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for key, splits in results["metrics"].items():
        cells = [format_metric(splits[f"test_n{b}"]["success"]) for b in budgets]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += report_tail(results, plots)
    return "\n".join(lines)


def success_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(policy, "n=N: success; ..." over the expert budgets)``."""
    budgets = results["config"]["expert_budgets"]
    return [
        (key, "; ".join(f"n={b}: {format_metric(splits[f'test_n{b}']['success'])}" for b in budgets))
        for key, splits in results["metrics"].items()
    ]


__all__ = ["FULL", "KEYS", "NAME", "QUICK", "PastaExperimentConfig", "run", "success_table"]
