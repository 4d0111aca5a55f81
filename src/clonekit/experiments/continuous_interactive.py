"""Experiment ``continuous-interactive``: interactive imitation with continuous actions (DAgger, HG-DAgger, Sirius,
RLIF) against behaviour cloning at an equal budget of expert labels, on one Meta-World task's unseen seeds.

The continuous counterpart of ``maze-interactive`` (same design, same keys). The env is one Meta-World task
(default ``reach-v3``; state observations, headless): a task is a seed that places the goal (and objects),
and the ``test`` split plays seeds no demonstration or round saw. The intervener is
:class:`clonekit.interactive.ExpertIntervener` over Meta-World's scripted policy: it takes over while the
policy's proposed action is at least ``threshold`` (L2, action units) from the scripted one.

Why Meta-World and not Avoiding: the Avoiding expert commits to one of 8 valid paths per episode, so as an
intervener it judges a policy on another valid path wrong. Measured: with the Avoiding expert itself as the
policy (its own path choices) on 100 start states, an intervener over a second Avoiding expert took over 63%
of all steps, in 99% of episodes, at threshold 0.5 (55% / 97% at 1.0, where the tug of war also made 20% of
the episodes crash). The scripted Meta-World policies are unimodal functions of the state, so "far from the
expert's action" means "wrong". ``reach-v3`` is used because behaviour cloning from a few demonstrations is
clearly imperfect on it (6 demonstrations: 0.26 of 50 unseen seeds; 12: 0.52), while ``drawer-close-v3`` and
``button-press-topdown-v3`` reach 1.0 from 6.

From one pool of scripted demonstrations on ``train_tasks`` training seeds:

* ``bc`` trains on the first demonstrations holding ``demo_labels + label_budget`` labels (one a step);
* every interactive method starts from the first ``demo_episodes`` of them and runs ``rounds`` rounds on the
  training seeds, spending at most ``label_budget`` labels: ``dagger``, ``hg_dagger``, ``sirius`` (weighted
  BC), ``sirius_uniform`` (the same rounds with every weight 1), ``rlif``, and with a suboptimal intervener
  (``subopt_noise``: Gaussian noise of that std on its actions;
  ``subopt_delay`` steps late) ``hg_dagger_subopt`` and ``rlif_subopt``.

Every final policy is evaluated on ``test_tasks`` unseen seeds (``test``) and on the training seeds
(``train``); the policies are deterministic and so are the tasks, so each seed is played once (Wilson
interval). Metrics: ``success`` and ``expert_labels`` (demonstration steps plus the labels the rounds used).
The plot shows test success against expert labels after every round. Every stage is resumable
(``OUT/runs/KEY``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from clonekit.config import check
from clonekit.data import Dataset
from clonekit.envs import get_env_family
from clonekit.envs.metaworld import check_task_names
from clonekit.evaluation import rollout, split_tasks
from clonekit.experiments.common import collected_once, report_tail
from clonekit.experiments.interactive_compare import (
    check_interactive_settings,
    compare,
    plot_success_vs_labels,
    success_table,
)
from clonekit.io import atomic_write_text
from clonekit.policies import Policy

NAME = "continuous-interactive"
ENV = "metaworld"
# Rollouts play this many Meta-World envs at a time: the env pool keeps 32 a task name, so waves reuse them.
MAX_PARALLEL = 25


@dataclass(frozen=True)
class ContinuousInteractiveConfig:
    """Settings of ``continuous-interactive``.

    Args:
        task: Meta-World v3 task name.
        max_steps: Episode limit (demonstrations, rounds and evaluation).
        train_tasks: Training seeds (demonstrations and interactive rounds play on them).
        test_tasks: Unseen seeds of the ``test`` split (and training seeds evaluated on ``train``).
        demo_episodes: Demonstrations every interactive method starts from.
        label_budget: Expert labels each interactive method may spend in its rounds; ``bc`` gets as many
            more demonstration steps.
        labels_per_round: At most this many of them in one round, for every interactive method (None: a
            method spends them as its rounds ask, possibly all in the first rounds).
        rounds: Interactive rounds per method.
        episodes_per_round: Episodes per round of the gated methods (HG-DAgger, Sirius, RLIF).
        dagger_episodes_per_round: Episodes per DAgger round (every visited state is a label).
        round_max_steps: Interactive episodes are cut after this many steps, so a lost policy spends few labels.
        threshold: The intervener takes over when the proposed action is this far (L2) from the scripted one.
        train_steps: Gradient steps of every training (each round retrains from scratch).
        batch_size: Transitions per gradient step.
        lr: Adam learning rate.
        lr_schedule: Learning-rate schedule of every training, ``bc``'s included (``"constant"`` or
            ``"cosine"``; see :class:`~clonekit.train.TrainConfig`).
        hidden_sizes: Widths of the policy's MLP (``continuous_bc``, MSE head).
        beta: DAgger's round-0 mixing probability (decays by ``beta_decay`` a round).
        beta_decay: DAgger's mixing decay per round.
        subopt_noise: Standard deviation of the Gaussian noise on the suboptimal intervener's actions.
        subopt_delay: Reaction delay of the suboptimal intervener, in steps.
        delay: Reaction delay of the (otherwise optimal) intervener of ``hg_dagger``, ``sirius``,
            ``sirius_uniform`` and ``rlif``, in steps (0: it takes over at the step its rule fires, so the
            proposal that fired it never runs; ``d``: that proposal and the next ``d - 1`` run first).
    """

    task: str = "reach-v3"
    max_steps: int = 120
    train_tasks: int = 100
    test_tasks: int = 50
    demo_episodes: int = 6
    label_budget: int = 800
    labels_per_round: int | None = None
    rounds: int = 3
    episodes_per_round: int = 24
    dagger_episodes_per_round: int = 8
    round_max_steps: int = 40
    threshold: float = 0.15
    train_steps: int = 1500
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "constant"
    hidden_sizes: tuple[int, ...] = (256, 256)
    beta: float = 0.5
    beta_decay: float = 0.5
    subopt_noise: float = 0.5
    subopt_delay: int = 2
    delay: int = 0

    def __post_init__(self) -> None:
        check_task_names([self.task])
        for name in ("max_steps", "train_tasks", "test_tasks", "round_max_steps"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check_interactive_settings(self)
        check(
            self.demo_episodes <= self.train_tasks,
            "demo_episodes",
            f"<= train_tasks ({self.train_tasks})",
            self.demo_episodes,
        )
        check(self.threshold > 0, "threshold", "> 0", self.threshold)
        check(all(h >= 1 for h in self.hidden_sizes), "hidden_sizes", "widths >= 1", self.hidden_sizes)


FULL = ContinuousInteractiveConfig()
QUICK = replace(
    FULL,
    train_tasks=20,
    test_tasks=10,
    demo_episodes=4,
    label_budget=200,
    rounds=1,
    episodes_per_round=8,
    dagger_episodes_per_round=2,
    round_max_steps=30,
    max_steps=80,
    train_steps=200,
    batch_size=64,
    hidden_sizes=(64, 64),
)


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: ContinuousInteractiveConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``)."""
    config = config or (QUICK if quick else FULL)
    out.mkdir(parents=True, exist_ok=True)
    pool = _pool(out, config, seed)
    return compare_continuous(
        NAME, out, seed, quick, config, pool, config.task, _report, MAX_PARALLEL, show_progress, log
    )


def compare_continuous(
    name: str,
    out: Path,
    seed: int,
    quick: bool,
    config: Any,
    pool: Dataset,
    subject: str,
    report: Callable[[dict[str, Any], list[str]], str],
    max_parallel: int = 256,
    show_progress: bool = True,
    log: Any = print,
) -> dict[str, Any]:
    """The comparison of :func:`clonekit.experiments.interactive_compare.compare` with ``continuous_bc`` (MSE head,
    ``config.hidden_sizes``) for every key, on the env of ``pool`` (its ``test`` split: ``config.test_tasks``
    unseen tasks; ``train``: as many training tasks, one episode each), then the success-vs-labels plot
    (``subject`` names the tasks on its axis) and ``report(results, plots)`` as ``out/report.md``. Shared by the
    continuous experiments (``continuous-interactive``, ``gym-interactive``); ``config`` holds the fields read here."""
    family = get_env_family(pool.env["id"])
    env_kwargs = dict(pool.env["kwargs"])
    tasks = {
        "test": split_tasks(pool.env, "test", seed, config.test_tasks),
        "train": split_tasks(pool.env, "train", seed, 1)[: config.test_tasks],
    }

    def evaluate(policy: Policy, split: str) -> dict[str, Any]:
        n = len(tasks[split])
        return rollout(policy, family, tasks[split], n, seed, env_kwargs, max_parallel=max_parallel).metrics(seed)

    policy_overrides = {"hidden_sizes": list(config.hidden_sizes)}
    shared = {
        "policy": "continuous_bc",
        "policy_overrides": policy_overrides,
        "train_steps": config.train_steps,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "episodes_per_round": config.episodes_per_round,
        "label_budget": config.label_budget,
        "threshold": config.threshold,
        "max_episode_steps": config.round_max_steps,
    }
    results = compare(
        name,
        out,
        seed,
        quick,
        config,
        pool,
        evaluate,
        shared,
        bc_policy=("continuous_bc", policy_overrides),
        show_progress=show_progress,
        log=log,
    )
    ylabel = f"success on unseen {subject} seeds (95% CI)"
    plots = ["success_vs_labels.png"] if plot_success_vs_labels(results, out / "success_vs_labels.png", ylabel) else []
    atomic_write_text(out / "report.md", report(results, plots))
    return results


def _pool(out: Path, config: ContinuousInteractiveConfig, seed: int) -> Dataset:
    """Scripted demonstrations enough for the demonstrations and ``bc``'s larger set (collected once), one per
    training seed in turn."""
    path = out / "data" / "pool"
    # Scripted reach episodes take 20-80 steps; twice the budget's worth at 20 leaves room for any task.
    episodes = min(config.train_tasks, config.demo_episodes + config.label_budget // 20 + 2)
    return collected_once(
        path,
        ENV,
        "scripted",
        seed=seed,
        episodes=episodes,
        num_tasks=config.train_tasks,
        env_kwargs={"task": config.task, "max_steps": config.max_steps},
        batch_size=MAX_PARALLEL,
        show_progress=False,
    )


def _report(results: dict[str, Any], plots: list[str]) -> str:
    config = results["config"]
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        f"Meta-World `{config['task']}`, one policy (`continuous_bc`, MSE head). Every interactive method starts from",
        f"the same {results['demo_labels']} demonstration steps and may spend {config['label_budget']} more expert",
        f"labels in {config['rounds']} rounds; `bc` trains on as many demonstration steps. The intervener takes over",
        f"while the policy's action is >= {config['threshold']} (L2) from the scripted policy's,",
        f"{config['delay']} step(s) late. `*_subopt`: an",
        f"intervener with Gaussian noise of std {config['subopt_noise']} on its actions, {config['subopt_delay']}",
        "step(s) late. `sirius_uniform`: Sirius's rounds with every sample weight 1. `test`: unseen seeds (goal",
        "and object positions); `train`: training seeds. One episode per seed (deterministic); Wilson intervals.",
        "",
        "| policy | test (unseen) success | train success | expert labels |",
        "|---|---|---|---|",
    ]
    for name, test, train_success, labels in success_table(results):
        lines.append(f"| {name} | {test} | {train_success} | {labels} |")
    lines += report_tail(results, plots)
    return "\n".join(lines)


__all__ = ["FULL", "NAME", "QUICK", "ContinuousInteractiveConfig", "run"]
