"""Experiment ``babyai-overthinking``: overthinking control at decision time for Thought Cloning on BabyAI.

Thought Cloning (TC) trained as in ``babyai-thought`` (its data and task helpers are reused; a smaller
training preset) changes its thought more often than the bot it imitates, with A → B → A flip-flops. Here the
same trained TC acts under each setting of :class:`~clonekit.policies.thought_cloning.control.ThoughtControl`
(``greedy``: TC as trained; ``sticky`` margins; ``rerank`` with two penalties; ``patience``), on

* ``val``: held-out seeds of the training level, disjoint from ``test``: the only split a best setting is
  chosen on;
* ``test``: held-out seeds of the training level (the ``test`` tasks of ``babyai-thought`` with this seed);
* ``ood``: the harder level.

Per setting and split: success (Wilson over independent seeds), thought changes per step, flip-flop rate; on
``test`` also thought accuracy against the bot (its episodes replayed under the control); and the cost: thought
sequences run through the decoder and milliseconds of policy time per env step. Every setting on every split
plays in one batched rollout (:class:`~clonekit.policies.thought_cloning.control.GroupedControlPolicy`: the same
episodes as one rollout per setting and split, with the network run once per env step for all of them), so a
setting's milliseconds are its own decoding plus its share, by rows, of the shared work. ``--set tc_run=PATH`` reuses
an existing trained TC run directory (e.g. ``OUT/runs/tc`` of ``babyai-thought``) instead of training one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from clonekit.checkpoint import load_policy, load_run_config
from clonekit.config import check
from clonekit.envs import get_env_family
from clonekit.errors import ConfigError
from clonekit.evaluation.plots import _pyplot, save_figure
from clonekit.evaluation.stats import format_metric, summarize
from clonekit.evaluation.thoughts import overthinking, thought_accuracy, thought_rollout
from clonekit.experiments.babyai_thought import BabyAIThoughtConfig, _dataset, _ood_tasks, _test_tasks
from clonekit.experiments.common import report_tail, results_head, torch_threads
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.policies import Policy
from clonekit.policies.thought_cloning.control import (
    ControlledThoughtPolicy,
    GroupedControlPolicy,
    parse_thought_control,
)
from clonekit.train import TrainConfig, train

NAME = "babyai-overthinking"
SPLITS = ("val", "test", "ood")


@dataclass(frozen=True)
class BabyAIOverthinkingConfig:
    """Settings of ``babyai-overthinking``.

    Args:
        level: Training level (its held-out seeds are the ``val`` and ``test`` splits).
        ood_level: Harder level of the ``ood`` split.
        episodes: Bot demonstrations (one training seed each).
        steps: Gradient steps of TC.
        batch_size: Episodes per gradient step.
        window: Steps per training episode sample.
        hidden_size: LSTM and feature width.
        lr: Adam learning rate.
        thought_weight: α of Thought Cloning.
        eval_episodes: Episodes (one held-out seed each) of ``test`` and of ``ood``, and bot episodes replayed
            for thought accuracy.
        val_episodes: Episodes of ``val`` (seeds disjoint from ``test``).
        controls: Thought-control settings compared (``parse_thought_control`` specs); the first is the
            baseline the others are compared with.
        tc_run: A trained ``thought_cloning`` run directory to evaluate instead of training one ("": train).
        threads: torch intra-op threads for training TC.
        eval_threads: torch intra-op threads while the settings are evaluated (one batched rollout): a second
            thread buys little there, and on shared cores its spinning costs several times the CPU.
    """

    level: str = "BabyAI-PutNextS5N2-v0"
    ood_level: str = "BabyAI-PutNextS6N3-v0"
    episodes: int = 3500
    steps: int = 5000
    batch_size: int = 16
    window: int = 32
    hidden_size: int = 128
    lr: float = 1e-3
    thought_weight: float = 1.0
    # 5 settings x 250 episodes play as one batched rollout of 1,250 envs (failures run the level's 200 or 288
    # steps); stepping the envs costs about as much CPU as the policy.
    eval_episodes: int = 100
    val_episodes: int = 50
    controls: tuple[str, ...] = ("greedy", "sticky:1", "rerank:4:0.5", "rerank:4:2", "patience:2:4")
    tc_run: str = ""
    threads: int = 2
    eval_threads: int = 1

    def __post_init__(self) -> None:
        for name in ("episodes", "steps", "batch_size", "window", "hidden_size", "eval_episodes", "val_episodes"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check(self.threads >= 1, "threads", ">= 1", self.threads)
        check(self.eval_threads >= 1, "eval_threads", ">= 1", self.eval_threads)
        check(self.lr > 0, "lr", "> 0", self.lr)
        check(len(self.controls) >= 1, "controls", "at least one thought-control spec", self.controls)
        check(len(set(self.controls)) == len(self.controls), "controls", "distinct specs", self.controls)
        for spec in self.controls:
            try:
                parse_thought_control(spec)
            except ConfigError as err:
                raise ConfigError(f"controls: {err}") from None

    def thought_config(self) -> BabyAIThoughtConfig:
        """The ``babyai-thought`` settings whose data and task helpers this experiment reuses."""
        return BabyAIThoughtConfig(
            level=self.level,
            ood_level=self.ood_level,
            episodes=self.episodes,
            eval_episodes=self.eval_episodes,
            steps=self.steps,
            batch_size=self.batch_size,
            window=self.window,
            hidden_size=self.hidden_size,
            lr=self.lr,
            thought_weight=self.thought_weight,
            threads=self.threads,
        )


FULL = BabyAIOverthinkingConfig()
QUICK = replace(
    FULL,
    episodes=150,
    steps=150,
    batch_size=8,
    hidden_size=64,
    eval_episodes=30,
    val_episodes=20,
    controls=("greedy", "sticky:1", "rerank:4:1", "patience:2:4"),
    threads=1,
)


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: BabyAIOverthinkingConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``)."""
    config = config or (QUICK if quick else FULL)
    with torch_threads(config.threads):
        return _run(out, seed, quick, show_progress, log, config)


def _trained_tc(out: Path, config: BabyAIOverthinkingConfig, seed: int, show_progress: bool, log: Any) -> Policy:
    """The TC policy: loaded from ``config.tc_run``, or trained on bot demonstrations into ``out/runs/tc``."""
    if config.tc_run:
        run_config = load_run_config(Path(config.tc_run))
        level = run_config.get("dataset", {}).get("env", {}).get("kwargs", {}).get("level")
        if run_config.get("policy") != "thought_cloning" or level != config.level:
            raise ConfigError(
                f"tc_run: expected a thought_cloning run trained on {config.level}, got "
                f"{run_config.get('policy')!r} on {level!r} ({config.tc_run})"
            )
        log(f"TC from {config.tc_run}")
        return load_policy(config.tc_run)
    demos = _dataset(out / "data", config.thought_config(), seed, "train", show_progress)
    log(f"{demos.num_episodes} bot episodes, {demos.num_steps} steps, {len(set(demos.column('thought')))} thoughts")
    train_config = TrainConfig(
        steps=config.steps, batch_size=config.batch_size, lr=config.lr, seed=seed, checkpoint_every=500
    )
    overrides = {"hidden_size": config.hidden_size, "window": config.window, "thought_weight": config.thought_weight}
    return train(
        "thought_cloning",
        demos,
        out / "runs" / "tc",
        train_config,
        overrides,
        resume=True,
        same_settings=True,
        show_progress=show_progress,
    )


def _run(
    out: Path, seed: int, quick: bool, show_progress: bool, log: Any, config: BabyAIOverthinkingConfig
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    family = get_env_family("babyai")
    thought_config = config.thought_config()
    policy = _trained_tc(out, config, seed, show_progress, log)
    reference = _dataset(out / "test_bot", thought_config, seed, "test", show_progress)
    test = _test_tasks(thought_config, seed)
    # Validation seeds: more held-out seeds of the same level, drawn after (and never equal to) the test ones.
    val = family.sample_tasks(seed, "test", config.val_episodes, {t.key for t in test}, level=config.level)
    splits = {"val": val, "test": test, "ood": _ood_tasks(thought_config, seed)}
    # Every setting on every split is one group of rows of one batched rollout (see GroupedControlPolicy): the
    # network runs once per env step for all of them instead of once per setting and split. The tasks carry
    # their level, so the ood episodes play in the same batch.
    groups = [(spec, split) for spec in config.controls for split in splits]
    grouped = GroupedControlPolicy(
        policy, [(replace(parse_thought_control(spec), seed=seed), len(splits[split])) for spec, split in groups]
    )
    tasks = [task for _, split in groups for task in splits[split]]
    with torch_threads(config.eval_threads):
        played = thought_rollout(
            grouped, family, tasks, len(tasks), seed, {"level": config.level}, max_parallel=len(tasks)
        )
        metrics: dict[str, dict[str, Any]] = {spec: {} for spec in config.controls}
        cost: dict[str, dict[str, dict[str, float]]] = {spec: {} for spec in config.controls}
        for (spec, split), rows, spent in zip(groups, grouped.slices, grouped.cost(), strict=True):
            cost[spec][split] = spent
            first = rows.start
            cell: dict[str, Any] = {
                "success": summarize(played.results.success[rows], seed, groups=played.results.task_index[rows] - first)
            }
            cell |= {n: summarize(v, seed) for n, v in overthinking(played.thoughts[rows]).items()}
            if split == "test":
                controlled = ControlledThoughtPolicy(policy, replace(parse_thought_control(spec), seed=seed))
                replay = thought_accuracy(controlled, reference)
                cell["thought_accuracy"] = summarize(replay["thought_accuracy"], seed)
            metrics[spec][split] = cell
            shown = "  ".join(f"{n} {format_metric(m)}" for n, m in cell.items())
            log(
                f"  {spec:13s} {split:4s} {shown}  decoder/step {spent['decoder_sequences_per_step']:.1f}"
                f"  ms/step {spent['ms_per_step']:.3f}"
            )
    # A best setting is named on validation seeds only (highest success; the first listed among equals).
    best = max(config.controls, key=lambda s: metrics[s]["val"]["success"]["mean"])
    bot = {n: summarize(v, seed) for n, v in overthinking(_episode_thoughts(reference)).items()}
    results = {
        **results_head(NAME, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
        "cost": cost,
        "chosen_on_val": best,
        "bot": {"test": bot},
    }
    atomic_write_json(out / "results.json", results)
    plots = ["tradeoff.png"] if plot_tradeoff(results, out / "tradeoff.png") else []
    atomic_write_text(out / "report.md", _report(results, plots))
    return results


def _episode_thoughts(dataset: Any) -> list[list[str]]:
    texts = list(dataset.column("thought"))
    return [texts[s : s + n] for s, n in zip(dataset.episode_starts, dataset.episode_lengths, strict=True)]


def plot_tradeoff(results: dict[str, Any], path: Path) -> bool:
    """Success against thought changes per step and against decoder sequences per step, one point per setting
    (``test`` and ``ood``, 95% interval whiskers); False without matplotlib."""
    plt = _pyplot()
    if plt is None:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for split, marker in (("test", "o"), ("ood", "s")):
        for i, (spec, splits) in enumerate(results["metrics"].items()):
            success = splits[split]["success"]
            y, err = success["mean"], [[success["mean"] - success["ci95"][0]], [success["ci95"][1] - success["mean"]]]
            xs = (
                splits[split]["thought_changes_per_step"]["mean"],
                results["cost"][spec][split]["decoder_sequences_per_step"],
            )
            for ax, x in zip(axes, xs, strict=True):
                color = plt.get_cmap("tab10")(i % 10)
                ax.errorbar([x], [y], yerr=err, fmt=marker, color=color, capsize=3, label=f"{spec} ({split})")
                if split == "test":  # one label per setting; the legend tells the splits apart
                    ax.annotate(spec, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    bot = results["bot"]["test"]["thought_changes_per_step"]["mean"]
    axes[0].axvline(bot, color="grey", ls="--", lw=1)
    axes[0].text(bot, axes[0].get_ylim()[0], " bot", color="grey", fontsize=8, va="bottom")
    axes[0].set_xlabel("thought changes per step")
    axes[1].set_xlabel("decoder sequences per env step (cost)")
    axes[1].set_xscale("log")
    for ax in axes:
        ax.set_ylabel("success")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=6, loc="best")
    fig.suptitle(f"{NAME} (seed {results['seed']}): circles test, squares ood", fontsize=10)
    save_figure(fig, path)
    return True


def _report(results: dict[str, Any], plots: list[str]) -> str:
    config = results["config"]
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        f"One Thought Cloning policy (`{config['level']}`, {config['steps']} steps"
        f"{', from ' + config['tc_run'] if config['tc_run'] else ''}) acting under each thought-control setting; "
        f"`val` ({config['val_episodes']} held-out seeds) and `test` ({config['eval_episodes']} other held-out "
        f"seeds) of that level, `ood` ({config['eval_episodes']} seeds of `{config['ood_level']}`). Success: "
        "Wilson 95% intervals over independent seeds; the rest: bootstrap 95% intervals over episodes. Cost: "
        "thought sequences through the decoder (decoded or scored) and policy milliseconds per env step.",
        "",
        "| setting | split | success | thought changes / step | flip-flops / change | thought accuracy "
        "| decoder / step | ms / step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for spec, splits in results["metrics"].items():
        for split in ("test", "ood", "val"):
            cell, spent = splits[split], results["cost"][spec][split]
            row = [
                format_metric(cell[n]) if n in cell else "–"
                for n in ("success", "thought_changes_per_step", "flip_flop_rate", "thought_accuracy")
            ]
            row += [f"{spent['decoder_sequences_per_step']:.1f}", f"{spent['ms_per_step']:.3f}"]
            lines.append(f"| {spec} | {split} | " + " | ".join(row) + " |")
    best = results["chosen_on_val"]
    bot = results["bot"]["test"]
    lines += [
        "",
        f"Chosen on `val` (highest success): `{best}`; its `test` success "
        f"{format_metric(results['metrics'][best]['test']['success'])}, `ood` "
        f"{format_metric(results['metrics'][best]['ood']['success'])}.",
        "",
        f"The bot on the `test` seeds: thought changes / step {format_metric(bot['thought_changes_per_step'])}, "
        f"flip-flops / change {format_metric(bot['flip_flop_rate'])}.",
    ]
    lines += report_tail(results, plots)
    return "\n".join(lines)


def tradeoff_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(setting, test success, ood success, test thought changes per step, decoder sequences per step)``."""
    return [
        (
            spec,
            format_metric(splits["test"]["success"]),
            format_metric(splits["ood"]["success"]),
            format_metric(splits["test"]["thought_changes_per_step"]),
            f"{results['cost'][spec]['test']['decoder_sequences_per_step']:.1f}",
        )
        for spec, splits in results["metrics"].items()
    ]


__all__ = ["FULL", "NAME", "QUICK", "SPLITS", "BabyAIOverthinkingConfig", "plot_tradeoff", "run", "tradeoff_table"]
