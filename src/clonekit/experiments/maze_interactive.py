"""Experiment ``maze-interactive``: interactive imitation (DAgger, HG-DAgger, Sirius, RLIF) against behaviour
cloning at an equal budget of expert labels, on unseen mazes.

From one pool of BFS-expert demonstrations on ``train_mazes`` mazes (the design and keys of
:mod:`clonekit.experiments.interactive_compare`):

* ``bc`` trains on the first demonstrations holding ``demo_labels + label_budget`` labels (one label a step);
* every interactive method starts from the first ``demo_episodes`` of them and runs ``rounds`` rounds on the
  same training mazes with the maze intervener (:class:`clonekit.interactive.MazeIntervener`), spending at
  most ``label_budget`` labels in its rounds: ``dagger``, ``hg_dagger``, ``sirius`` (weighted BC),
  ``sirius_uniform`` (the same rounds with every weight 1) and ``rlif``, plus ``hg_dagger_subopt`` and
  ``rlif_subopt`` with a suboptimal intervener (``subopt_noise``: that share of its actions are wrong;
  ``subopt_delay`` steps late).

Why 9x9 mazes: there behaviour cloning's success on unseen mazes still grows with labels (measured, seed 0:
0.26 at 300 labels, 0.42 at 900, 0.57 at 2,700), so a method that spends labels better can show it. On 11x11
mazes it hardly moves (0.30 at 921 labels, 0.33 at 4,000), and no choice of labels could.

Every final policy is evaluated on ``test_mazes`` unseen mazes (``test``) and on the training mazes
(``train``). Metrics: ``success`` and ``expert_labels`` (every label the policy's data holds: demonstration
steps plus the labels the rounds used; an exact count, so its interval is the count itself). The plot shows
test success against expert labels after every round. Every stage is resumable (``OUT/runs/KEY``);
``policies`` runs some of the keys only.

``maze-interactive-farthest`` (``FARTHEST``, ``FARTHEST_QUICK``) is the same comparison where every episode
(demonstrations, rounds, evaluation) starts at the free cell farthest from the goal (the maze option
``start="farthest"``): a maze's demonstrations all follow one route, the setting in which DAgger's argument
(the learner drifts to states no demonstration shows) is made.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from clonekit.config import check
from clonekit.data import Dataset
from clonekit.envs import get_env_family
from clonekit.envs.maze import START_RULES
from clonekit.evaluation import rollout, split_tasks
from clonekit.experiments.common import check_policy_keys, collected_once, report_tail
from clonekit.experiments.interactive_compare import (
    KEYS,
    SPLITS,
    check_interactive_settings,
    compare,
    plot_success_vs_labels,
    success_table,
)
from clonekit.io import atomic_write_text
from clonekit.policies import Policy

NAME = "maze-interactive"
FARTHEST_NAME = "maze-interactive-farthest"


@dataclass(frozen=True)
class MazeInteractiveConfig:
    """Settings of ``maze-interactive``.

    Args:
        maze_size: Side of the square mazes.
        start: Where every episode (demonstrations, rounds, evaluation) starts: ``"random"`` (a random free
            cell) or ``"farthest"`` (the free cell farthest from the goal, so a maze's demonstrations all follow
            one route; see :mod:`clonekit.envs.maze`).
        train_mazes: Training mazes (demonstrations and interactive rounds play on them).
        test_mazes: Unseen mazes of the ``test`` split.
        demo_episodes: Demonstrations every interactive method starts from.
        label_budget: Expert labels each interactive method may spend in its rounds; ``bc`` gets as many
            more demonstration steps.
        labels_per_round: At most this many of them in one round, for every interactive method (None: a
            method spends them as its rounds ask, possibly all in the first rounds).
        rounds: Interactive rounds per method.
        episodes_per_round: Episodes per round of the gated methods (HG-DAgger, Sirius), which spend labels
            only where the policy errs, so they need more episodes than DAgger to spend the same budget.
        dagger_episodes_per_round: Episodes per DAgger round (every visited state is a label).
        max_episode_steps: Interactive episodes are cut after this many steps, so a lost policy does not fill
            the data with one maze's loops (evaluation plays the env's own limit).
        train_steps: Gradient steps of every training (each round retrains from scratch).
        batch_size: Transitions per gradient step.
        lr: Adam learning rate.
        lr_schedule: Learning-rate schedule of every training, ``bc``'s included (``"constant"`` or
            ``"cosine"``; see :class:`~clonekit.train.TrainConfig`).
        beta: DAgger's round-0 mixing probability (decays by ``beta_decay`` a round).
        beta_decay: DAgger's mixing decay per round.
        subopt_noise: Share of wrong actions of the suboptimal intervener (``hg_dagger_subopt``).
        subopt_delay: Reaction delay of the suboptimal intervener, in steps.
        delay: Reaction delay of the (otherwise optimal) intervener of ``hg_dagger``, ``sirius``,
            ``sirius_uniform`` and ``rlif``, in steps (0: it takes over at the step its rule fires, so the
            proposal that fired it never runs; ``d``: that proposal and the next ``d - 1`` run first).
        eval_episodes: Evaluation episodes per policy and split (the final policies).
        curve_episodes: Test episodes per round's policy for the success-vs-labels plot.
        policies: The policy keys to run (default: all of them).
    """

    maze_size: int = 9
    start: str = "random"
    train_mazes: int = 200
    test_mazes: int = 100
    demo_episodes: int = 50
    label_budget: int = 600
    labels_per_round: int | None = None
    rounds: int = 4
    episodes_per_round: int = 150
    dagger_episodes_per_round: int = 60
    max_episode_steps: int = 20
    train_steps: int = 800
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "constant"
    beta: float = 0.5
    beta_decay: float = 0.5
    subopt_noise: float = 0.3
    subopt_delay: int = 1
    delay: int = 0
    eval_episodes: int = 300
    curve_episodes: int = 100
    policies: tuple[str, ...] = KEYS

    def __post_init__(self) -> None:
        check(self.maze_size >= 5, "maze_size", ">= 5", self.maze_size)
        check(self.start in START_RULES, "start", f"one of {list(START_RULES)}", self.start)
        for name in ("train_mazes", "test_mazes", "max_episode_steps", "eval_episodes", "curve_episodes"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check_interactive_settings(self)
        check_policy_keys(self.policies, KEYS)


FULL = MazeInteractiveConfig()
QUICK = replace(
    FULL,
    maze_size=9,
    train_mazes=30,
    test_mazes=30,
    demo_episodes=30,
    label_budget=300,
    rounds=2,
    episodes_per_round=40,
    dagger_episodes_per_round=8,
    train_steps=150,
    batch_size=64,
    eval_episodes=60,
    curve_episodes=30,
)

# ``maze-interactive-farthest``: every episode starts at the free cell farthest from the goal, so demonstrations
# show one route a maze and a policy that leaves it is where no demonstration went (DAgger's covariate shift).
# Larger budgets than ``FULL``: with 4,000 labels behaviour cloning is off the floor there (0.28 on unseen
# mazes of pilot seed 10, 0.15 at 1,300); routes are ~14 moves, so episodes are cut at 30 steps, not 20.
FARTHEST = replace(
    FULL,
    start="farthest",
    train_mazes=400,
    demo_episodes=150,
    label_budget=2000,
    episodes_per_round=150,
    dagger_episodes_per_round=40,
    max_episode_steps=30,
    train_steps=1200,
)
FARTHEST_QUICK = replace(QUICK, start="farthest", max_episode_steps=30)


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: MazeInteractiveConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``)."""
    return _run(NAME, out, seed, config or (QUICK if quick else FULL), quick, show_progress, log)


def run_farthest(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: MazeInteractiveConfig | None = None,
) -> dict[str, Any]:
    """``maze-interactive-farthest`` (the ``FARTHEST`` presets) into ``out``; returns the results dict."""
    return _run(FARTHEST_NAME, out, seed, config or (FARTHEST_QUICK if quick else FARTHEST), quick, show_progress, log)


def _run(
    name: str, out: Path, seed: int, config: MazeInteractiveConfig, quick: bool, show_progress: bool, log: Any
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    pool = _pool(out, config, seed)
    family = get_env_family("maze")
    env_kwargs = dict(pool.env["kwargs"])
    tasks = {split: split_tasks(pool.env, split, seed, config.test_mazes) for split in SPLITS}

    def evaluate(policy: Policy, split: str, episodes: int = config.eval_episodes) -> dict[str, Any]:
        return rollout(policy, family, tasks[split], episodes, seed, env_kwargs).metrics(seed)

    shared = {
        "train_steps": config.train_steps,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "episodes_per_round": config.episodes_per_round,
        "label_budget": config.label_budget,
        "max_episode_steps": config.max_episode_steps,
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
        curve_evaluate=lambda policy, split: evaluate(policy, split, config.curve_episodes),
        show_progress=show_progress,
        log=log,
    )
    ylabel = "success on unseen mazes (95% CI)"
    plots = ["success_vs_labels.png"] if plot_success_vs_labels(results, out / "success_vs_labels.png", ylabel) else []
    atomic_write_text(out / "report.md", _report(results, plots))
    return results


def _pool(out: Path, config: MazeInteractiveConfig, seed: int) -> Dataset:
    """Expert demonstrations enough for the demonstrations and ``bc``'s larger set (collected once)."""
    path = out / "data" / "pool"
    episodes = config.demo_episodes + config.label_budget // 2  # every maze episode has >= 2 steps but a few
    return collected_once(
        path,
        "maze",
        "bfs",
        seed=seed,
        episodes=episodes,
        num_tasks=config.train_mazes,
        env_kwargs={"size": config.maze_size, "start": config.start},
        show_progress=False,
    )


def _report(results: dict[str, Any], plots: list[str]) -> str:
    config = results["config"]
    lines = [
        f"# {results['experiment']} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        f"Every interactive method starts from the same {results['demo_labels']} demonstration steps and may spend",
        f"{config['label_budget']} more expert labels in {config['rounds']} rounds; `bc` trains on as many",
        f"demonstration steps. The gated methods' intervener reacts {config['delay']} step(s) late. `*_subopt`: an",
        "intervener whose actions are wrong with probability",
        f"{config['subopt_noise']} and who reacts {config['subopt_delay']} step(s) late. `sirius_uniform`: Sirius's",
        "rounds with every sample weight 1. Intervals: cluster bootstrap over mazes (see `clonekit.evaluation.stats`).",
        "",
        "| policy | test (unseen) success | train success | expert labels |",
        "|---|---|---|---|",
    ]
    for name, test, train_success, labels in success_table(results):
        lines.append(f"| {name} | {test} | {train_success} | {labels} |")
    lines += report_tail(results, plots)
    return "\n".join(lines)


__all__ = [
    "FARTHEST",
    "FARTHEST_NAME",
    "FARTHEST_QUICK",
    "FULL",
    "NAME",
    "QUICK",
    "MazeInteractiveConfig",
    "run",
    "run_farthest",
]
