"""Experiment ``maze-strategies``: thought cloning that chooses its own strategy per maze (Orca 2's prompt erasure).

The teacher (the ``choose-thoughts`` maze expert, :mod:`clonekit.experts.maze_strategies`) plans each episode
with four procedures (BFS shortest path, depth-first search, left-hand wall following, greedy descent with
backtracking) and runs the one with the shortest successful episode, narrating it step by step. On the same
training mazes and start cells we train three thought cloning agents:

* ``tc_strategy``: every thought starts with the strategy's name ("greedy move closer up"). No strategy is
  ever given as an input: the agent must generate the name itself from the maze (the label is erased from
  the inputs and kept only as a target), i.e. *choose* the strategy.
* ``tc_mixture``: the same episodes with the strategy names removed from the thoughts.
* ``tc_single``: the same number of episodes, all by the ``bfs`` expert (the procedure that is always
  shortest, so the best single strategy by episode length).

Splits: ``test`` (unseen mazes of the training generator) and ``ood`` (unseen perfect mazes, loop fraction
``ood_loop_fraction`` 0: one route, so a wrong turn costs a dead end; chosen from the experts alone by the rule
in ``benchmarks/maze_strategies_ood.py``: of the 9x9 settings, the one where per-step mixing of the strategies
loses most success while the teacher's choices still vary). Metrics: ``success`` (cluster bootstrap over
mazes) and, for ``tc_strategy``, ``strategy_accuracy``: on the teacher's own episodes of the split's mazes,
the share whose first generated thought names the teacher's choice (the agent's choice is made at the first
step, from the maze alone), and ``strategy_majority``, its baseline: the share of those episodes where the
teacher chose its most frequent training choice (what always naming that one would score).

Commitment: each strategy narrates in its own words, so a generated thought already says which strategy the
agent is following (:func:`~clonekit.experts.maze_strategies.thought_strategies`). Per rollout,
``strategy_switches`` is the fewest changes of strategy that explain its thoughts (0: it stays within one
strategy's vocabulary), ``one_strategy`` whether it is 0, and ``success_one_strategy`` / ``success_switched``
the success of those two groups of episodes; ``tc_strategy`` also gets the same read from the strategy it
names (``named_switches``, ``one_named_strategy``, ``success_one_named_strategy``, ``success_named_switched``).
``success_committed`` (``tc_strategy`` only): its success when it holds the name it generates at the first step
as the first word of every later thought (thought control ``commit``,
:mod:`clonekit.policies.thought_cloning.control`): the strategy chosen once per maze, then followed.
With ``shared_vocabulary`` every expert narrates in one shared vocabulary ("go DIR", "check DIR", "go back
DIR"), so only the names tell the strategies apart (and the vocabulary metrics are 0 by construction).
Everything derives from ``--seed``; nothing is tuned on ``test`` or ``ood``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clonekit.config import check
from clonekit.data import Dataset
from clonekit.envs import get_env_family
from clonekit.errors import DatasetError
from clonekit.evaluation.plots import plot_success_bars
from clonekit.evaluation.stats import format_metric, summarize
from clonekit.evaluation.thoughts import thought_rollout
from clonekit.experiments.common import collected_once, report_tail, results_head, torch_threads
from clonekit.experts.maze_strategies import CHOICES, STRATEGIES, strategy_switches, thought_strategies
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.policies import Policy
from clonekit.policies.thought_cloning.control import ControlledThoughtPolicy, ThoughtControl
from clonekit.train import TrainConfig, train

NAME = "maze-strategies"
KEYS = ("tc_single", "tc_mixture", "tc_strategy")
# key -> (expert, expert options) of its training data
DATA = {
    "tc_single": ("bfs-thoughts", {}),
    "tc_mixture": ("choose-thoughts", {}),
    "tc_strategy": ("choose-thoughts", {"prefix_thoughts": True}),
}


@dataclass(frozen=True)
class MazeStrategiesConfig:
    """Settings of ``maze-strategies``.

    Args:
        size: Maze side (9: 7x7 inside the outer wall; BFS episodes are at most ~21 steps, so whole episodes
            fit one short window and three policies train within the time budget).
        loop_fraction: Loop fraction of the training and ``test`` mazes.
        ood_loop_fraction: Loop fraction of the ``ood`` mazes (0: perfect mazes; see the module docstring).
        train_mazes: Training mazes.
        episodes: Demonstrations per policy (episode ``k`` on maze ``k % train_mazes``, random start).
        test_mazes: Mazes of each evaluation split.
        eval_episodes: Episodes per (policy, split) cell, and teacher episodes for ``strategy_accuracy``.
        steps: Gradient steps of each policy.
        batch_size: Episodes per gradient step.
        window: Steps per training episode sample (longer episodes are cut).
        hidden_size: LSTM and feature width.
        lr: Adam learning rate.
        threads: torch intra-op threads for the run (recorded: results depend on it).
        shared_vocabulary: Every expert narrates in the vocabulary all strategies share (see
            :class:`~clonekit.experts.maze_strategies.MazeStrategyExpert`), so only ``tc_strategy``'s names
            tell the strategies apart.
        teacher_choice: How the teacher picks its procedure per episode: ``"shortest"`` (every episode a
            shortest path; the names change only the narration) or ``"random"`` (a uniformly drawn procedure
            that reaches the goal, so the named procedures act differently too; ``tc_mixture`` and
            ``tc_strategy`` still get the same episodes).
    """

    size: int = 9
    loop_fraction: float = 0.2
    ood_loop_fraction: float = 0.0
    train_mazes: int = 500
    episodes: int = 2000
    test_mazes: int = 200
    eval_episodes: int = 1000
    steps: int = 3000
    batch_size: int = 32
    window: int = 32
    hidden_size: int = 128
    lr: float = 1e-3
    threads: int = 1
    shared_vocabulary: bool = False
    teacher_choice: str = "shortest"

    def __post_init__(self) -> None:
        check(self.size >= 5, "size", ">= 5", self.size)
        for name in ("loop_fraction", "ood_loop_fraction"):
            check(0 <= getattr(self, name) <= 1, name, "in [0, 1]", getattr(self, name))
        for name in ("train_mazes", "episodes", "test_mazes", "eval_episodes", "steps", "batch_size", "window"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check(self.hidden_size >= 1, "hidden_size", ">= 1", self.hidden_size)
        check(self.threads >= 1, "threads", ">= 1", self.threads)
        check(self.lr > 0, "lr", "> 0", self.lr)
        check(isinstance(self.shared_vocabulary, bool), "shared_vocabulary", "true or false", self.shared_vocabulary)
        check(self.teacher_choice in CHOICES, "teacher_choice", f"one of {list(CHOICES)}", self.teacher_choice)


FULL = MazeStrategiesConfig()
QUICK = replace(
    FULL, train_mazes=100, episodes=300, test_mazes=40, eval_episodes=100, steps=200, batch_size=16, hidden_size=64
)


def _collect(
    path: Path, expert: str, options: dict[str, Any], env_kwargs: dict[str, Any], episodes: int, mazes: int, **kw: Any
) -> Dataset:
    """Expert episodes at ``path`` with expert options ``options`` (collected once; a rerun checks the settings)."""
    seed = kw.pop("seed")
    return collected_once(
        path, "maze", expert, seed=seed, episodes=episodes, num_tasks=mazes, env_kwargs=env_kwargs,
        expert_kwargs=options, **kw,
    )  # fmt: skip


def chosen_strategies(thoughts: list[str]) -> list[str]:
    """The strategy named by each thought's first word (``""`` when it names none)."""
    words = [t.split()[:1] for t in thoughts]
    return [w[0] if w and w[0] in STRATEGIES else "" for w in words]


def commitment(
    thoughts: list[list[str]], success: np.ndarray, groups: np.ndarray, seed: int, named: bool = False
) -> dict[str, Any]:
    """Metrics of how episodes keep to one strategy (see the module docstring), from each episode's generated
    ``thoughts``, its ``success`` and task ``groups`` ``(N,)``: read from the thoughts' vocabulary, or with
    ``named`` from the strategy each thought names (``named_switches``, ``one_named_strategy``,
    ``success_one_named_strategy``, ``success_named_switched``). ``off_vocabulary``: per episode, the share of
    its thoughts in no strategy's vocabulary (skipped when counting switches)."""
    if named:
        labels = [[frozenset({name} if name else ()) for name in chosen_strategies(e)] for e in thoughts]
    else:
        labels = [[thought_strategies(t) for t in episode] for episode in thoughts]
    switches = np.array([strategy_switches(episode) for episode in labels])
    one = switches == 0
    tag = "named_" if named else ""
    cells = {
        "named_switches" if named else "strategy_switches": summarize(switches, seed, groups=groups),
        f"one_{tag}strategy": summarize(one, seed, groups=groups),
    }
    if not named:
        off = np.array([np.mean([not label for label in episode]) if episode else 0.0 for episode in labels])
        cells["off_vocabulary"] = summarize(off, seed, groups=groups)
    for name, subset in ((f"success_one_{tag}strategy", one), (f"success_{tag}switched", ~one)):
        if subset.any():
            cells[name] = summarize(success[subset], seed, groups=groups[subset])
    return cells


def strategy_accuracy(policy: Policy, teacher: Dataset) -> np.ndarray:
    """Per teacher episode: 1.0 when the policy's thought at the episode's first observation names the teacher's
    strategy (the ``strategy`` stream), else 0.0."""
    starts = teacher.episode_starts
    step = teacher.gather(starts, ["obs", "strategy"])
    policy.eval()
    with torch.inference_mode():
        _, state = policy.act({"obs": torch.from_numpy(step["obs"])}, policy.initial_state(len(starts)))
    thinker: Callable[[Any], list[str]] = getattr(policy, "thoughts")  # noqa: B009 - a thinking policy's method
    chosen = chosen_strategies(thinker(state))
    return np.array([c == STRATEGIES[int(s)] for c, s in zip(chosen, step["strategy"], strict=True)], dtype=float)


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: MazeStrategiesConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``)."""
    config = config or (QUICK if quick else FULL)
    with torch_threads(config.threads):
        return _run(out, seed, quick, show_progress, log, config)


def _run(
    out: Path, seed: int, quick: bool, show_progress: bool, log: Any, config: MazeStrategiesConfig
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    family = get_env_family("maze")
    kw = {"seed": seed, "show_progress": show_progress}
    train_env = {"size": config.size, "loop_fraction": config.loop_fraction}
    split_env = {"test": train_env, "ood": {"size": config.size, "loop_fraction": config.ood_loop_fraction}}
    shared = {"shared_vocabulary": True} if config.shared_vocabulary else {}
    choice = {"choice": config.teacher_choice} if config.teacher_choice != "shortest" else {}
    data = {
        key: _collect(
            out / "data" / key,
            expert,
            options | shared | (choice if expert == "choose-thoughts" else {}),
            train_env,
            config.episodes,
            config.train_mazes,
            **kw,
        )
        for key, (expert, options) in DATA.items()
    }
    mixture = data["tc_strategy"]
    shares = np.bincount(np.asarray(mixture.column("strategy"))[mixture.episode_starts], minlength=len(STRATEGIES))
    teacher_mix = {name: float(shares[i] / mixture.num_episodes) for i, name in enumerate(STRATEGIES)}
    log(f"{mixture.num_episodes} teacher episodes, {mixture.num_steps} steps; teacher's choices: {teacher_mix}")
    train_layouts = {t["layout"] for t in mixture.env["tasks"]}
    # The teacher's episodes on each split's unseen mazes: the reference choices (prefixed thoughts).
    teacher = {
        split: _collect(
            out / "teacher" / split,
            "choose-thoughts",
            {"prefix_thoughts": True} | shared | choice,
            env_kwargs,
            config.eval_episodes,
            config.test_mazes,
            split="test",
            **kw,
        )
        for split, env_kwargs in split_env.items()
    }
    tasks = {}
    for split, reference in teacher.items():
        tasks[split] = [family.task_from_json(t, **split_env[split]) for t in reference.env["tasks"]]
        seen = sum(t.layout_hash in train_layouts for t in tasks[split])
        if seen:
            raise DatasetError(f"{out / 'teacher' / split}: {seen} maze(s) also in the training mazes")
    metrics: dict[str, dict[str, Any]] = {}
    chosen_in_rollouts: dict[str, dict[str, float]] = {}
    for key in KEYS:
        train_config = TrainConfig(
            steps=config.steps,
            batch_size=config.batch_size,
            lr=config.lr,
            seed=seed,
            checkpoint_every=max(config.steps // 2, 1),
            keep_checkpoints=1,
            tensorboard=False,
            val_fraction=0.0,
        )
        overrides = {"hidden_size": config.hidden_size, "window": config.window}
        policy = train(
            "thought_cloning",
            data[key],
            out / "runs" / key,
            train_config,
            overrides,
            resume=True,
            same_settings=True,
            show_progress=show_progress,
        )
        metrics[key] = {}
        for split, env_kwargs in split_env.items():
            episodes = thought_rollout(policy, family, tasks[split], config.eval_episodes, seed, env_kwargs)
            played = episodes.results
            cell: dict[str, Any] = {"success": summarize(played.success, seed, groups=played.task_index)}
            success, groups = np.asarray(played.success), np.asarray(played.task_index)
            cell |= commitment(episodes.thoughts, success, groups, seed)
            if key == "tc_strategy":
                cell |= commitment(episodes.thoughts, success, groups, seed, named=True)
                reference = teacher[split]
                right = strategy_accuracy(policy, reference)
                cell["strategy_accuracy"] = summarize(right, seed, groups=reference.episode_info("task_index"))
                # The baseline of naming, every time, the choice the teacher made most often in training.
                choices = np.asarray(reference.gather(reference.episode_starts, ["strategy"])["strategy"])
                majority = choices == int(np.argmax(shares))
                cell["strategy_majority"] = summarize(majority, seed, groups=reference.episode_info("task_index"))
                held = ControlledThoughtPolicy(policy, ThoughtControl("commit"))
                committed = thought_rollout(held, family, tasks[split], config.eval_episodes, seed, env_kwargs).results
                cell["success_committed"] = summarize(committed.success, seed, groups=committed.task_index)
                first = chosen_strategies([t[0] if t else "" for t in episodes.thoughts])
                chosen_in_rollouts[split] = {s or "none": first.count(s) / len(first) for s in sorted(set(first))}
            metrics[key][split] = cell
            log(f"  {key:11s} {split:4s} " + "  ".join(f"{n} {format_metric(m)}" for n, m in cell.items()))
    results = {
        **results_head(NAME, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
        "teacher": {
            "train_choices": teacher_mix,
            "demonstrations": mixture.num_episodes,
            "demo_steps": {key: data[key].num_steps for key in KEYS},
        },
        "tc_strategy_choices": chosen_in_rollouts,
    }
    atomic_write_json(out / "results.json", results)
    plots = ["success.png"] if plot_success_bars(results, out / "success.png") else []
    atomic_write_text(out / "report.md", _report(results, plots))
    return results


def _report(results: dict[str, Any], plots: list[str]) -> str:
    m = results["metrics"]
    c = results["config"]
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        f"Thought cloning on {c['size']}x{c['size']} mazes. The teacher picks, per episode, "
        + (
            "a uniformly drawn strategy among those that reach the goal"
            if c.get("teacher_choice") == "random"
            else "the strategy with the shortest successful episode (ties: the one that searches least)"
        )
        + " and narrates it. `tc_strategy`: thoughts "
        "start with the strategy's name, which the agent must generate itself; `tc_mixture`: the same episodes "
        "without the names; `tc_single`: the bfs expert's episodes. `test`: unseen mazes (loop fraction "
        f"{c['loop_fraction']}); `ood`: unseen mazes with loop fraction {c['ood_loop_fraction']}. "
        + (
            "Every expert narrates in the shared vocabulary ('go DIR', 'check DIR', 'go back DIR'). "
            if c.get("shared_vocabulary")
            else ""
        )
        + "95% intervals, cluster bootstrap over mazes.",
        "",
        "| policy | split | success | strategy accuracy |",
        "|---|---|---|---|",
    ]
    for key, splits in m.items():
        for split, cell in splits.items():
            accuracy = format_metric(cell["strategy_accuracy"]) if "strategy_accuracy" in cell else "–"
            lines.append(f"| {key} | {split} | {format_metric(cell['success'])} | {accuracy} |")
    lines += [
        "",
        "Commitment: how many times an episode's generated thoughts change strategy (the fewest changes that "
        "explain them), the share of episodes that keep to one strategy, and success split by that; read from the "
        "thoughts' words (names skipped) and, for `tc_strategy`, from the names it generates.",
        "",
        "| policy | split | read from | switches | one strategy | success (one strategy) | success (switched) |",
        "|---|---|---|---|---|---|---|",
    ]
    readings = {
        "words": ("strategy_switches", "one_strategy", "success_one_strategy", "success_switched"),
        "names": ("named_switches", "one_named_strategy", "success_one_named_strategy", "success_named_switched"),
    }
    for key, splits in m.items():
        for split, cell in splits.items():
            for reading, names in readings.items():
                if names[0] not in cell:
                    continue
                row = [reading, *(format_metric(cell[name]) if name in cell else "–" for name in names)]
                lines.append(f"| {key} | {split} | " + " | ".join(row) + " |")
    lines += [
        "",
        f"Teacher's choices on the training episodes: {results['teacher']['train_choices']}.",
        f"`tc_strategy`'s first-step choices in its rollouts: {results['tc_strategy_choices']}.",
        "`tc_strategy` holding the name it generates at the first step (thought control `commit`): "
        + ", ".join(
            f"{split} {format_metric(cell['success_committed'])}"
            for split, cell in m.get("tc_strategy", {}).items()
            if "success_committed" in cell
        )
        + ".",
    ]
    lines += report_tail(results, plots)
    return "\n".join(lines)


def success_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(policy, test success, ood success, test strategy accuracy, ood strategy accuracy)``."""
    rows = []
    for key, splits in results["metrics"].items():
        accuracy = [
            format_metric(splits[s]["strategy_accuracy"]) if "strategy_accuracy" in splits[s] else "–"
            for s in ("test", "ood")
        ]
        rows.append((key, format_metric(splits["test"]["success"]), format_metric(splits["ood"]["success"]), *accuracy))
    return rows


__all__ = [
    "FULL",
    "KEYS",
    "NAME",
    "QUICK",
    "MazeStrategiesConfig",
    "commitment",
    "run",
    "strategy_accuracy",
    "success_table",
]
