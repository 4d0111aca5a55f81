"""Experiment ``maze-quality``: find the defects of a polluted maze demonstration set, and learn better by
curating, filtering by outcome, augmenting and splicing recoveries.

**Data** (:mod:`clonekit.experiments.maze_pollution`): on ``train_mazes`` mazes with ``starts`` start cells
each, every demonstrator plays every (maze, start): clean BFS ``experts``, ``noisy`` ones (a random other action
at ``noise_rate`` of their steps), ``wanderers`` (extraneous detours that return: idling, excursions),
``greedy`` ones (an incompatible style: greedy by Manhattan distance, giving up in dead ends) and ``pausers``
(at a corner, with probability ``pause_rate``, a few moves into the wall the way they were heading before they
turn). The injectors record the ground truth per step (``defect`` stream).

Why pausers: random noise and occasional detours are defects argmax BC mostly averages away (the clean action
stays the most common one in every state), so curating them out gains little. A pause is systematic (the same
kind of state, a corner, gets the same wrong action) and plentiful, so BC on the raw set learns to push into
walls at some corners of unseen mazes, and a memoryless policy that does so once does so forever.

**Detectors** (:mod:`clonekit.quality.detect`), each scored against the ground truth on the training data
(split ``train``; metrics ``precision``, ``recall``, ``f1``):

* ``detect_detours``: steps on loops of at least ``min_detour_steps`` steps; truth: injected detour steps.
* ``detect_noise``: steps that disagree with the other demonstrators' most common action (outside detours and
  incompatible demonstrators); truth: injected random steps.
* ``detect_incompatible``: episodes of demonstrators with agreement below ``agreement_below`` that are
  consistent with themselves (self-conflict below ``consistent_below`` bits); truth: the greedy episodes.
  Intervals: cluster bootstrap over episodes (steps) and over demonstrators (incompatible).

**Policies** (BC, same settings and training steps each), evaluated on ``test_mazes`` unseen mazes (``test``)
and on the same mazes perturbed (``test_perturbed``): one burst of ``eval_burst`` random actions an episode,
starting at a step drawn from ``[0, eval_burst_window)`` (:class:`~clonekit.quality.recovery.BurstActionPolicy`),
or with ``eval_burst`` 0 a random action in place of the policy's at ``eval_rate`` of the steps
(:class:`~clonekit.quality.recovery.RandomActionPolicy`); metric ``success`` (cluster bootstrap over mazes) and
``data_steps`` (a count):

* ``bc_raw``: the polluted set as it is.
* ``bc_curated``: ``clonekit curate`` with ``curate_filters``, then (``curate_with_detectors``, the default) what
  the detectors found: the demonstrators ``detect_incompatible`` flags dropped, the steps ``detect_detours`` and
  ``detect_noise`` flag cut. Cutting steps keeps the clean rest of every other demonstrator's episodes. (The
  quality report's ``min-agreement`` filter counts every step as a vote, so plentiful pauses drag the experts'
  own agreement down to the greedy demonstrators' and it cannot tell them apart; the detectors judge agreement
  outside detected detours.)
* ``bc_bestofn``: best-of-N outcome filtering (OREAL): each (maze, start) has one attempt per demonstrator
  (N = the number of demonstrators); keep its best: successful, then the shortest, then the first.
* ``bc_augmented``: the curated set plus its rotations and mirrors (``augment_transforms``) that the
  ``grid-shortest-path`` guide accepts (:mod:`clonekit.quality.augment`).
* ``bc_recovery``: the curated set plus recovery episodes (:mod:`clonekit.quality.recovery`) spliced from the
  episodes curation removed: each one's prefix up to its first mistake (judged by the BFS expert), then the
  expert's continuation; the mistake step has weight 0 and training samples by weight.

Every stage is resumable (``OUT/data/*``, ``OUT/runs/*``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clonekit.config import check, config_to_json
from clonekit.data import Dataset
from clonekit.envs import get_env_family
from clonekit.errors import DatasetError
from clonekit.evaluation import rollout, split_tasks
from clonekit.evaluation.plots import _pyplot, save_figure
from clonekit.evaluation.stats import format_metric
from clonekit.experiments.common import exact_metric, report_tail, results_head
from clonekit.experiments.maze_pollution import (
    PollutionConfig,
    ground_truth,
    polluted_demonstrations,
    pollution_settings,
)
from clonekit.experiments.quality_plots import detector_panel, detector_rows, errorbar
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.policies import Policy
from clonekit.quality.augment import augmented_episodes
from clonekit.quality.curate import Filter, curate, kept_episodes
from clonekit.quality.detect import detect_defects, detection_metrics
from clonekit.quality.outcomes import episode_outcomes
from clonekit.quality.recovery import BurstActionPolicy, RandomActionPolicy, recovery_episodes
from clonekit.quality.subset import write_subset
from clonekit.train import TrainConfig, train

NAME = "maze-quality"
POLICIES = ("bc_raw", "bc_curated", "bc_bestofn", "bc_augmented", "bc_recovery")
DETECTORS = ("detect_noise", "detect_detours", "detect_incompatible")


@dataclass(frozen=True)
class MazeQualityConfig:
    """Settings of ``maze-quality``.

    Args:
        maze_size: Side of the square mazes.
        train_mazes: Training mazes.
        starts: Start cells per training maze; every demonstrator plays each once.
        experts: Clean BFS demonstrators.
        noisy: Demonstrators with random actions.
        wanderers: Demonstrators with extraneous detours.
        greedy: Demonstrators with the incompatible greedy style.
        pausers: Demonstrators that pause at corners, pushing into the wall for a few moves.
        noise_rate: Share of a noisy demonstrator's steps that are a random other action.
        detour_rate: Probability per step that a wanderer starts a detour (at most 2 an episode).
        pause_rate: Probability that a pauser pauses at a corner of its route.
        min_detour_steps: Loops this long or longer are detours (``detect_detours``).
        agreement_below: Agreement under which a self-consistent demonstrator is incompatible.
        consistent_below: Self-conflict (bits) under which a demonstrator counts as consistent.
        curate_filters: ``clonekit curate`` filters of ``bc_curated`` (and the base of the augmented and
            recovery sets).
        curate_with_detectors: ``bc_curated`` also drops the demonstrators ``detect_incompatible`` flags and cuts
            the steps ``detect_detours`` and ``detect_noise`` flag (after ``curate_filters``).
        augment_transforms: Transforms of ``bc_augmented``.
        test_mazes: Unseen mazes of the test splits.
        train_steps: Gradient steps of every policy.
        batch_size: Transitions per gradient step.
        eval_episodes: Episodes per policy and split.
        eval_rate: Random-action rate of the ``test_perturbed`` split (when ``eval_burst`` is 0).
        eval_burst: Random actions in a row of the ``test_perturbed`` burst protocol (one burst an episode,
            :class:`~clonekit.quality.recovery.BurstActionPolicy`); 0: a random action at ``eval_rate`` of the
            steps instead (:class:`~clonekit.quality.recovery.RandomActionPolicy`).
        eval_burst_window: The burst starts at a step drawn uniformly from ``[0, eval_burst_window)``.
    """

    maze_size: int = 9
    train_mazes: int = 200
    starts: int = 3
    experts: int = 2
    noisy: int = 3
    wanderers: int = 3
    greedy: int = 4
    pausers: int = 3
    noise_rate: float = 0.15
    detour_rate: float = 0.5
    pause_rate: float = 1.0
    min_detour_steps: int = 4
    agreement_below: float = 0.95
    consistent_below: float = 0.1
    curate_filters: tuple[str, ...] = ()
    curate_with_detectors: bool = True
    augment_transforms: tuple[str, ...] = ("rot90", "rot180", "rot270", "flip-lr", "flip-ud")
    test_mazes: int = 200
    train_steps: int = 3000
    batch_size: int = 128
    eval_episodes: int = 400
    eval_rate: float = 0.1
    eval_burst: int = 4
    eval_burst_window: int = 8

    def __post_init__(self) -> None:
        check(self.maze_size >= 5, "maze_size", ">= 5", self.maze_size)
        for name in ("train_mazes", "starts", "experts", "test_mazes", "train_steps", "batch_size", "eval_episodes"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check(self.min_detour_steps >= 1, "min_detour_steps", ">= 1", self.min_detour_steps)
        for name in ("agreement_below", "eval_rate"):
            check(0 <= getattr(self, name) <= 1, name, "in [0, 1]", getattr(self, name))
        check(self.consistent_below >= 0, "consistent_below", ">= 0", self.consistent_below)
        check(self.eval_burst >= 0, "eval_burst", ">= 0", self.eval_burst)
        check(self.eval_burst_window >= 1, "eval_burst_window", ">= 1", self.eval_burst_window)
        for text in self.curate_filters:
            Filter.parse(text)
        check(
            bool(self.curate_filters) or self.curate_with_detectors,
            "curate_filters",
            "at least one filter unless curate_with_detectors",
            self.curate_filters,
        )
        self.pollution()  # checks the pollution fields

    def pollution(self) -> PollutionConfig:
        """The demonstrators and their defects."""
        return PollutionConfig(
            experts=self.experts,
            noisy=self.noisy,
            wanderers=self.wanderers,
            greedy=self.greedy,
            pausers=self.pausers,
            starts=self.starts,
            noise_rate=self.noise_rate,
            detour_rate=self.detour_rate,
            pause_rate=self.pause_rate,
        )


FULL = MazeQualityConfig()
QUICK = replace(FULL, train_mazes=20, test_mazes=40, train_steps=300, eval_episodes=80)


def _polluted(out: Path, config: MazeQualityConfig, seed: int) -> Dataset:
    path = out / "data" / "polluted"
    if path.exists():
        data = Dataset.open(path)
        recorded = data.extra.get("pollution", {})
        fits = data.env.get("seed") == seed and len(data.env.get("tasks", [])) == config.train_mazes
        if not fits or any(recorded.get(k) != v for k, v in pollution_settings(config.pollution()).items()):
            raise DatasetError(f"{path}: exists but was made with other settings; use a fresh --out")
        return data
    family = get_env_family("maze")
    kwargs = {"size": config.maze_size}
    tasks = family.sample_tasks(seed, "train", config.train_mazes, set(), **kwargs)
    return polluted_demonstrations(path, tasks, config.pollution(), seed, kwargs)


def best_of_n(dataset: Dataset) -> list[int]:
    """Per (``task_index``, ``start_index``), the best attempt: successful, then the shortest, then the first
    (the rule of :func:`clonekit.quality.improve.select_attempts` with ``keep="best"``); tasks with no
    successful attempt give none. Episode indices in order."""
    facts = episode_outcomes(dataset)
    mazes, starts = dataset.episode_info("task_index").tolist(), dataset.episode_info("start_index").tolist()
    keys = list(zip(mazes, starts, strict=True))
    best: dict[tuple[int, int], int] = {}
    for k, key in enumerate(keys):
        if not facts.success[k]:
            continue
        if key not in best or facts.length[k] < facts.length[best[key]]:
            best[key] = k
    return sorted(best.values())


def curation(polluted: Dataset, config: MazeQualityConfig) -> tuple[list[Filter], dict[str, np.ndarray]]:
    """The filters of ``bc_curated`` and the steps it cuts (reason -> ``(N,)`` bool over ``polluted``'s steps):
    ``curate_filters``, then with ``curate_with_detectors`` a ``drop-demonstrator`` filter per demonstrator
    ``detect_incompatible`` flags and the steps ``detect_detours`` and ``detect_noise`` flag."""
    filters = [Filter.parse(text) for text in config.curate_filters]
    if not config.curate_with_detectors:
        return filters, {}
    found = detect_defects(polluted, config.min_detour_steps, config.agreement_below, config.consistent_below)
    filters += [Filter("drop-demonstrator", who) for who in found.incompatible]
    return filters, {"detect_detours": found.detour_steps, "detect_noise": found.noise_steps}


def perturbation(policy: Policy, action_space: Any, config: MazeQualityConfig, seed: int) -> Policy:
    """``policy`` under the ``test_perturbed`` protocol: a burst of ``eval_burst`` random actions an episode, or
    (``eval_burst`` 0) a random action at ``eval_rate`` of the steps."""
    if config.eval_burst:
        return BurstActionPolicy(policy, action_space, config.eval_burst, config.eval_burst_window, seed)
    return RandomActionPolicy(policy, action_space, config.eval_rate, seed)


DERIVED_FILE = "derived.json"  # the settings the curated, augmented and recovery sets were made with
DERIVED_FIELDS = (
    "curate_filters",
    "curate_with_detectors",
    "min_detour_steps",
    "agreement_below",
    "consistent_below",
    "augment_transforms",
)


def _check_derived_settings(path: Path, config: MazeQualityConfig) -> None:
    """Record the settings the derived datasets are made with at ``path``, or, when they are recorded already,
    refuse (``DatasetError``) a config that would have made other ones."""
    settings = {name: config_to_json(config)[name] for name in DERIVED_FIELDS}
    if not path.exists():
        atomic_write_json(path, settings)
        return
    recorded = json.loads(path.read_text())
    changed = [name for name in DERIVED_FIELDS if recorded.get(name) != settings[name]]
    if changed:
        raise DatasetError(
            f"{path}: the curated sets here were made with other {', '.join(changed)}; use a fresh --out"
        )


def datasets(out: Path, config: MazeQualityConfig, seed: int) -> dict[str, tuple[Dataset, str | None]]:
    """Policy key -> (its training data, its sample-weight stream); made once, reused from ``out/data``."""
    polluted = _polluted(out, config, seed)
    _check_derived_settings(out / "data" / DERIVED_FILE, config)
    filters, cuts = curation(polluted, config)
    curated_path = out / "data" / "curated"
    curated = (
        Dataset.open(curated_path) if curated_path.exists() else curate(polluted, curated_path, filters, cut_steps=cuts)
    )
    bestofn = write_subset(polluted, out / "data" / "bestofn", best_of_n(polluted), "best of N per (maze, start)")
    augmented_path = out / "data" / "augmented"
    if not augmented_path.exists():
        added = augmented_episodes(curated, list(config.augment_transforms), "grid-shortest-path", seed=seed)
        curate(curated, augmented_path, [], added=[added])
    recovery_path = out / "data" / "recovery"
    if not recovery_path.exists():
        removed = sorted(set(range(polluted.num_episodes)) - set(kept_episodes(polluted, filters)))
        spliced = recovery_episodes(polluted, "bfs", episodes=removed, seed=seed)
        curate(curated, recovery_path, [], added=[spliced])
    return {
        "bc_raw": (polluted, None),
        "bc_curated": (curated, None),
        "bc_bestofn": (bestofn, None),
        "bc_augmented": (Dataset.open(augmented_path), None),
        "bc_recovery": (Dataset.open(recovery_path), "weight"),
    }


def detector_metrics(polluted: Dataset, config: MazeQualityConfig, seed: int) -> dict[str, Any]:
    """``{detect_KEY: {"train": {precision, recall, f1}}}`` of the three detectors on the polluted set."""
    found = detect_defects(polluted, config.min_detour_steps, config.agreement_below, config.consistent_below)
    truth = ground_truth(polluted)
    episode = polluted.episode_index()
    who = np.asarray([str(w) for w in episode_outcomes(polluted).demonstrator], dtype=object)
    style = np.logical_or.reduceat(truth["style"], polluted.episode_starts)
    return {
        "detect_noise": {"train": detection_metrics(truth["noise"], found.noise_steps, episode, seed)},
        "detect_detours": {"train": detection_metrics(truth["detour"], found.detour_steps, episode, seed)},
        "detect_incompatible": {"train": detection_metrics(style, np.isin(who, found.incompatible), who, seed)},
        "_demonstrators": {"incompatible": found.incompatible, **found.demonstrators},
    }


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: MazeQualityConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``)."""
    config = config or (QUICK if quick else FULL)
    out.mkdir(parents=True, exist_ok=True)
    data = datasets(out, config, seed)
    polluted = data["bc_raw"][0]
    log(f"polluted set: {polluted.num_episodes} episodes, {polluted.num_steps} steps")
    found = detector_metrics(polluted, config, seed)
    demonstrators = found.pop("_demonstrators")
    metrics: dict[str, Any] = dict(found)
    for key in DETECTORS:
        log(f"  {key:20s} F1 {format_metric(metrics[key]['train']['f1'])}")
    family = get_env_family("maze")
    env_kwargs = dict(polluted.env["kwargs"])
    tasks = split_tasks(polluted.env, "test", seed, config.test_mazes)
    action_space = family.spaces(**env_kwargs)[1]
    for key in POLICIES:
        dataset, weights = data[key]
        settings = TrainConfig(
            steps=config.train_steps,
            batch_size=config.batch_size,
            seed=seed,
            tensorboard=False,
            val_fraction=0.0,
            sample_weights=weights,
        )
        policy: Policy = train(
            "bc", dataset, out / "runs" / key, settings, resume=True, same_settings=True, show_progress=show_progress
        )
        clean = rollout(policy, family, tasks, config.eval_episodes, seed, env_kwargs)
        shaken = perturbation(policy, action_space, config, seed)
        perturbed = rollout(shaken, family, tasks, config.eval_episodes, seed, env_kwargs)
        steps = exact_metric(dataset.num_steps)
        metrics[key] = {
            "test": {"success": clean.metrics(seed)["success"], "data_steps": steps},
            "test_perturbed": {"success": perturbed.metrics(seed)["success"], "data_steps": steps},
        }
        log(f"  {key:20s} test success {format_metric(metrics[key]['test']['success'])}, {dataset.num_steps} steps")
    results = {
        **results_head(NAME, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
        "demonstrators": demonstrators,
        "pollution": polluted.extra.get("pollution", {}),
        "curation": {k: v for k, v in data["bc_curated"][0].extra["curation"].items() if k != "removed"},
    }
    atomic_write_json(out / "results.json", results)
    plots = ["maze_quality.png"] if _plot(results, out / "maze_quality.png") else []
    atomic_write_text(out / "report.md", _report(results, plots))
    return results


def _plot(results: dict[str, Any], path: Path) -> bool:
    plt = _pyplot()
    if plt is None:
        return False
    metrics = results["metrics"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [5, 3]})
    for i, key in enumerate(POLICIES):
        errorbar(left, i - 0.2, metrics[key]["test"]["success"], "C0", "test (unseen mazes)" if i == 0 else None)
        errorbar(left, i + 0.2, metrics[key]["test_perturbed"]["success"], "C1", "test, perturbed" if i == 0 else None)
    left.set_xticks(range(len(POLICIES)), POLICIES)
    left.set_ylim(0, 1.05)
    left.set_ylabel("success (95% CI)")
    left.set_title("BC on the polluted set and on its repairs")
    left.legend(fontsize=8)
    detector_panel(right, metrics, DETECTORS)
    fig.suptitle(f"{results['experiment']} (seed {results['seed']}{', quick' if results['quick'] else ''})")
    save_figure(fig, path)
    return True


def _report(results: dict[str, Any], plots: list[str]) -> str:
    config, metrics = results["config"], results["metrics"]
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        f"Polluted set: {config['train_mazes']} mazes x {config['starts']} starts, each played by every demonstrator:",
        f"{config['experts']} experts, {config['noisy']} noisy (a random other action at {config['noise_rate']}",
        "of their steps),",
        f"{config['wanderers']} wanderers (detours that return), {config['greedy']} greedy (incompatible style).",
        "",
        "## Detectors (training data, against the injected ground truth)",
        "",
        "| detector | unit | precision | recall | F1 |",
        "|---|---|---|---|---|",
    ]
    units = {"detect_noise": "steps", "detect_detours": "steps", "detect_incompatible": "episodes (by demonstrator)"}
    for key in DETECTORS:
        cells = metrics[key]["train"]
        lines.append(
            f"| {key} | {units[key]} | {format_metric(cells['precision'])} | {format_metric(cells['recall'])} | "
            f"{format_metric(cells['f1'])} |"
        )
    lines += ["", "| demonstrator | agreement (outside detours) | self-conflict (bits) |", "|---|---|---|"]
    for who, row in results["demonstrators"].items():
        if who == "incompatible":
            continue
        agreement = "n/a" if row["agreement"] is None else f"{row['agreement']:.3f}"
        lines.append(f"| {who} | {agreement} | {row['self_conflict']:.3f} |")
    lines += [
        "",
        f"Flagged incompatible: {', '.join(results['demonstrators']['incompatible']) or 'none'}.",
        "",
        "## Policies (BC, unseen mazes)",
        "",
        f"`bc_curated`: {_curation_text(config)} (kept {results['curation']['kept']} episodes, "
        f"{int(metrics['bc_curated']['test']['data_steps']['mean'])} steps).",
        f"`test_perturbed`: {_protocol_text(config)}.",
        "Intervals: cluster bootstrap over mazes.",
        "",
        "| policy | test success | test_perturbed success | data steps |",
        "|---|---|---|---|",
    ]
    for key in POLICIES:
        cells = metrics[key]
        lines.append(
            f"| {key} | {format_metric(cells['test']['success'])} | "
            f"{format_metric(cells['test_perturbed']['success'])} | {int(cells['test']['data_steps']['mean'])} |"
        )
    lines += report_tail(results, plots)
    return "\n".join(lines)


def _curation_text(config: dict[str, Any]) -> str:
    parts = []
    if config["curate_filters"]:
        parts.append(f"`clonekit curate` with {', '.join(f'`{f}`' for f in config['curate_filters'])}")
    if config.get("curate_with_detectors"):
        parts.append("the detectors' findings (flagged demonstrators dropped, flagged detour and noise steps cut)")
    return ", then ".join(parts)


def _protocol_text(config: dict[str, Any]) -> str:
    if config.get("eval_burst"):
        return (
            f"one burst of {config['eval_burst']} random actions an episode, starting at a step drawn from "
            f"[0, {config['eval_burst_window']})"
        )
    return f"a random action at {config['eval_rate']} of the steps"


def success_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(key, test success or F1, perturbed success or precision / recall)``."""
    rows = detector_rows(results["metrics"], DETECTORS)
    for key in POLICIES:
        cells = results["metrics"][key]
        rows.append((key, format_metric(cells["test"]["success"]), format_metric(cells["test_perturbed"]["success"])))
    return rows


__all__ = [
    "FULL",
    "NAME",
    "QUICK",
    "MazeQualityConfig",
    "best_of_n",
    "curation",
    "datasets",
    "perturbation",
    "run",
    "success_table",
]
