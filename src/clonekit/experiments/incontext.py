"""Experiment ``incontext``: does a transformer trained by RL across tasks improve within its context on unseen ones?

Tasks are hidden-goal grids (:mod:`clonekit.envs.hidden_goal`): a small grid with a few obstacles, a start cell
and a goal cell that no observation shows. An episode is ``trials`` trials of one task; after each trial the
agent is put back on the start and the goal stays. ``--seed`` draws ``train_tasks`` training tasks and
``test_tasks`` unseen test tasks (layouts no training task has). Policy keys:

* ``relic``: the ReLIC-lite transformer (:mod:`clonekit.policies.relic`) trained by PPO over whole episodes
  (:mod:`clonekit.rl.incontext`); its context spans every trial of the task.
* ``no_memory``: the same network and training with the context cut at each trial (attention never crosses a
  trial boundary, positions restart, a trial's first step does not see the last trial's reward and action):
  what searching afresh every trial gives. An extra key, the control for ``relic``.

Splits ``trial_1`` ... ``trial_K`` (``K = trials``): the trial's outcome on the unseen tasks. Metrics
``success`` (the trial reached the goal) and ``steps`` (steps the trial took; ``trial_steps`` when it failed).
Each test task is played ``episodes_per_task`` times with actions drawn from the policy (the stochastic policy
PPO trained; a seeded generator), and intervals are clustered by task. The target: ``relic``'s success on
``trial_K`` above ``trial_1`` with non-overlapping intervals. Stages already in ``OUT`` are reused (training
resumes from its checkpoints).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clonekit.config import check
from clonekit.envs.hidden_goal import HiddenGoalSpec, train_test_tasks
from clonekit.evaluation.plots import _pyplot, save_figure
from clonekit.evaluation.stats import format_metric, summarize
from clonekit.experiments.common import check_policy_keys, report_tail, results_head, torch_threads
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.rl.incontext import InContextPPOConfig, evaluate_trials, train_incontext

NAME = "incontext"
# key -> the network's memory (see RelicConfig.memory)
KEYS = {"relic": "episode", "no_memory": "trial"}


@dataclass(frozen=True)
class InContextConfig:
    """Settings of ``incontext``.

    Args:
        height: Grid rows.
        width: Grid columns.
        obstacles: Obstacle cells per layout.
        trials: Trials per episode (the splits ``trial_1`` ... ``trial_K``).
        trial_steps: Steps a trial may take.
        train_tasks: Training tasks (layout, start, goal); each update draws ``num_envs`` of them.
        test_tasks: Unseen test tasks (layouts no training task has).
        episodes_per_task: Episodes played per test task (actions drawn from the policy).

        iterations: PPO updates of each key.
        num_envs: Episodes per update.
        lr: Adam learning rate (decays linearly to 0).
        ent_coef: Entropy bonus weight.
        d_model: Token width of the transformer.
        num_heads: Attention heads.
        num_layers: Transformer layers.
        feedforward: Feed-forward width.
        sink_kv: Learned sink key/value in attention (ReLIC's Sink-KV).
        policies: Keys to train and evaluate, among ``relic`` and ``no_memory``.
    """

    height: int = 4
    width: int = 4
    obstacles: int = 2
    trials: int = 4
    trial_steps: int = 6
    train_tasks: int = 500
    test_tasks: int = 200
    episodes_per_task: int = 2

    iterations: int = 300
    num_envs: int = 64
    lr: float = 1e-3
    ent_coef: float = 0.01
    d_model: int = 32
    num_heads: int = 2
    num_layers: int = 2
    feedforward: int = 64
    sink_kv: bool = True
    policies: tuple[str, ...] = ("relic", "no_memory")

    def __post_init__(self) -> None:
        for name in ("train_tasks", "test_tasks", "episodes_per_task"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check(self.trials >= 2, "trials", ">= 2 (trial 1 is compared with the last one)", self.trials)
        check_policy_keys(self.policies, tuple(KEYS))
        self.spec()  # the env and PPO settings check their own fields
        self.ppo("relic", 0)

    def spec(self) -> HiddenGoalSpec:
        """The task family."""
        return HiddenGoalSpec(
            height=self.height,
            width=self.width,
            obstacles=self.obstacles,
            trials=self.trials,
            trial_steps=self.trial_steps,
        )

    def ppo(self, key: str, seed: int) -> InContextPPOConfig:
        """The PPO settings of policy key ``key`` for training seed ``seed``."""
        return InContextPPOConfig(
            iterations=self.iterations,
            num_envs=self.num_envs,
            lr=self.lr,
            ent_coef=self.ent_coef,
            d_model=self.d_model,
            num_heads=self.num_heads,
            num_layers=self.num_layers,
            feedforward=self.feedforward,
            sink_kv=self.sink_kv,
            memory=KEYS[key],  # type: ignore[arg-type]
            seed=seed,
            checkpoint_every=max(self.iterations // 3, 1),
        )


FULL = InContextConfig()
QUICK = replace(FULL, iterations=40, train_tasks=200, test_tasks=50, policies=("relic",))


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: InContextConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``).

    ``config`` replaces the preset chosen by ``quick`` (``FULL`` or ``QUICK``).
    """
    config = config or (QUICK if quick else FULL)
    with torch_threads(1):  # small networks: extra intra-op threads buy nothing on a busy machine
        return _run(out, seed, quick, show_progress, log, config)


def _run(out: Path, seed: int, quick: bool, show_progress: bool, log: Any, config: InContextConfig) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    spec = config.spec()
    train, test = train_test_tasks(spec, seed, config.train_tasks, config.test_tasks)
    log(f"{NAME}: {len(train)} training tasks, {len(test)} unseen test tasks ({spec.height}x{spec.width} grids)")
    metrics: dict[str, dict[str, Any]] = {}
    for key in config.policies:
        policy = train_incontext(config.ppo(key, seed), spec, train, out / "runs" / key, True, show_progress)
        outcome = evaluate_trials(policy, spec, test, seed, config.episodes_per_task)
        groups = outcome["task_index"]
        metrics[key] = {
            f"trial_{j + 1}": {
                "success": summarize(outcome["success"][:, j], seed, groups=groups),
                "steps": summarize(outcome["steps"][:, j].astype(np.float64), seed, groups=groups),
            }
            for j in range(spec.trials)
        }
        cells = "  ".join(f"{split} {format_metric(m['success'])}" for split, m in metrics[key].items())
        log(f"  {key:9s} success {cells}")
    results = {
        **results_head(NAME, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
        "target_met": target_met(metrics, spec.trials),
        "action_selection": "sampled from the policy (seeded)",
    }
    atomic_write_json(out / "results.json", results)
    plots = ["trials.png"] if plot_trials(results, out / "trials.png") else []
    atomic_write_text(out / "report.md", _report(results, plots))
    return results


def target_met(metrics: dict[str, Any], trials: int) -> bool | None:
    """Whether ``relic``'s ``trial_K`` success interval lies wholly above its ``trial_1`` one (None without
    ``relic``)."""
    if "relic" not in metrics:
        return None
    first, last = metrics["relic"]["trial_1"]["success"], metrics["relic"][f"trial_{trials}"]["success"]
    return bool(last["ci95"][0] > first["ci95"][1])


def plot_trials(results: dict[str, Any], path: Path, metric: str = "success") -> bool:
    """Success per trial index, one line per policy with its 95% interval; False without matplotlib."""
    plt = _pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for i, (key, splits) in enumerate(results["metrics"].items()):
        trials = [s for s in splits if s.startswith("trial_") and metric in splits[s]]
        x = np.array([int(s.split("_")[1]) for s in trials])
        means = np.array([splits[s][metric]["mean"] for s in trials])
        lows = np.array([splits[s][metric]["ci95"][0] for s in trials])
        highs = np.array([splits[s][metric]["ci95"][1] for s in trials])
        ax.plot(x, means, marker="o", color=f"C{i}", label=key)
        ax.fill_between(x, lows, highs, color=f"C{i}", alpha=0.2)
    ax.set_xlabel("trial within the context (same unseen task)")
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1.02)
    ax.set_xticks(x)
    ax.set_title(f"{results['experiment']}: {metric} on unseen tasks, 95% interval")
    ax.legend()
    save_figure(fig, path)
    return True


def _report(results: dict[str, Any], plots: list[str]) -> str:
    config = results["config"]
    trials = [f"trial_{j + 1}" for j in range(config["trials"])]
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        f"In-context RL on hidden-goal {config['height']}x{config['width']} grids ({config['obstacles']} obstacles):",
        f"{config['trials']} trials of one task per context, the goal hidden and fixed, the agent back at the start",
        "after each trial. `relic`: a transformer over the whole context, trained by PPO on "
        f"{config['train_tasks']} training tasks;",
        "`no_memory`: the same network with the context cut at each trial boundary. Evaluated on "
        f"{config['test_tasks']} unseen layouts,",
        f"{config['episodes_per_task']} episodes each (actions sampled); 95% intervals clustered by task.",
        "",
        "Success per trial:",
        "",
        "| policy | " + " | ".join(trials) + " |",
        "|---" * (len(trials) + 1) + "|",
    ]
    for key, splits in results["metrics"].items():
        lines.append(f"| {key} | " + " | ".join(format_metric(splits[t]["success"]) for t in trials) + " |")
    lines += ["", "Steps per trial (the limit when it failed):", "", "| policy | " + " | ".join(trials) + " |"]
    lines.append("|---" * (len(trials) + 1) + "|")
    for key, splits in results["metrics"].items():
        lines.append(f"| {key} | " + " | ".join(format_metric(splits[t]["steps"], 1) for t in trials) + " |")
    met = results["target_met"]
    if met is not None:
        verdict = "met" if met else "NOT met"
        lines += ["", f"Target (`relic` success on {trials[-1]} above trial_1, intervals apart): **{verdict}**."]
    lines += report_tail(results, plots)
    return "\n".join(lines)


def success_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(policy, trial_1 success, last trial success, gain)`` of formatted metrics."""
    rows: list[tuple[str, ...]] = []
    for key, splits in results["metrics"].items():
        trials = sorted((s for s in splits if s.startswith("trial_")), key=lambda s: int(s.split("_")[1]))
        first, last = splits[trials[0]]["success"], splits[trials[-1]]["success"]
        rows.append((key, format_metric(first), format_metric(last), f"{last['mean'] - first['mean']:+.2f}"))
    return rows


__all__ = ["FULL", "KEYS", "NAME", "QUICK", "InContextConfig", "plot_trials", "run", "success_table", "target_met"]
