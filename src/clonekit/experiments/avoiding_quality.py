"""Experiment ``avoiding-quality``: the continuous counterpart of ``maze-quality``. Find the defects of a polluted
Avoiding demonstration set and learn better from its curated version.

**Data** (:mod:`clonekit.experiments.avoiding_pollution`): every demonstrator plays every one of
``train_starts`` training start states once: clean ``experts``, ``noisy`` ones (the heading turned by 60-180
degrees at ``noise_rate`` of their steps), ``wanderers`` (idling and out-and-back excursions) and ``axis`` ones
(an incompatible style: arrow keys, one axis at a time). The same mix of demonstrators as ``maze-quality``. The
injectors record the ground truth per step (``defect`` stream).

**Detectors** (:mod:`clonekit.quality.continuous`), each scored against the ground truth on the training data
(split ``train``; metrics ``precision``, ``recall``, ``f1``): ``detect_idle`` (slow runs), ``detect_detours``
(loops back to an earlier point, outside idle runs), ``detect_noise`` (steps inconsistent with the
demonstrator's own neighbouring actions and unsupported by the others'), ``detect_incompatible`` (episodes of
demonstrators whose actions most other demonstrators rarely share; truth: the ``axis`` episodes). Intervals:
cluster bootstrap over episodes (steps) and over demonstrators (incompatible).

**Policies**: ``continuous_bc`` with the same head (``gmm``: Avoiding's 8 paths need a multimodal head), widths,
steps, batch and learning rate each:

* ``bc_raw``: the polluted set as it is.
* ``bc_curated``: :func:`clonekit.quality.continuous.curate_detected`: the flagged demonstrators' episodes
  removed and the flagged idle, detour and noise steps cut (``clonekit curate`` machinery, logged).
* ``bc_bestofn``: best-of-N outcome filtering: per start state (one attempt per demonstrator), the successful
  attempt with the fewest steps.

Split ``test``: ``test_starts`` held-out start states, ``eval_episodes`` episodes spread over them (the GMM head
samples, so a start is played several times); metric ``success`` with a cluster bootstrap over start states;
``data_steps`` (a count) says how much each set holds. Every stage is resumable (``OUT/data/*``, ``OUT/runs/*``).
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
from clonekit.envs.avoiding import ARENA_X, FINISH_Y, OBSTACLE_RADIUS, OBSTACLES
from clonekit.errors import DatasetError
from clonekit.evaluation import rollout, split_tasks
from clonekit.evaluation.plots import _pyplot, save_figure
from clonekit.evaluation.stats import format_metric
from clonekit.experiments.avoiding_pollution import AvoidingPollutionConfig, ground_truth, polluted_demonstrations
from clonekit.experiments.common import (
    check_policy_keys,
    exact_metric,
    report_tail,
    results_head,
    torch_threads,
    train_offline_key,
)
from clonekit.experiments.quality_plots import detector_panel, detector_rows, errorbar
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.quality.continuous import (
    ContinuousDetectConfig,
    ContinuousDetections,
    curate_detected,
    detect_continuous_defects,
    detections_summary,
)
from clonekit.quality.detect import detection_metrics
from clonekit.quality.outcomes import episode_outcomes
from clonekit.quality.subset import write_subset
from clonekit.seeding import derive_seed

NAME = "avoiding-quality"
POLICIES = ("bc_raw", "bc_curated", "bc_bestofn")
DETECTORS = ("detect_noise", "detect_idle", "detect_detours", "detect_incompatible")


@dataclass(frozen=True)
class AvoidingQualityConfig:
    """Settings of ``avoiding-quality``.

    Args:
        train_starts: Training start states; every demonstrator plays each once.
        experts: Clean demonstrators.
        noisy: Demonstrators whose heading is turned at ``noise_rate`` of their steps.
        wanderers: Demonstrators with extraneous idling and excursions.
        axis: Demonstrators with the incompatible arrow-key style.
        noise_rate: Share of a noisy demonstrator's steps that are turned.
        detour_rate: Probability per step that a wanderer starts a detour (at most 2 an episode).
        still_below: ``detect_idle``: displacement below this many median steps ...
        min_idle_steps: ... for at least this many steps.
        return_within: ``detect_detours``: back within this many median steps of an earlier point ...
        min_detour_steps: ... after at least this many steps.
        neighbour_radius: Others' steps within this many median steps (per coordinate) are the reference of
            ``detect_incompatible`` and ``detect_noise``.
        action_tolerance: Actions within this (per dimension, in action standard deviations) agree.
        agreement_below: ``detect_incompatible``: median agreement with the other demonstrators below this.
        window: ``detect_noise``: neighbouring actions on each side a step is compared with.
        noise_above: ``detect_noise``: self-inconsistency above this multiple of its median.
        policies: Policy keys to run, a subset of ``bc_raw, bc_curated, bc_bestofn``.
        head: Action head of every ``continuous_bc`` policy.
        hidden_sizes: MLP widths of every policy.
        steps: Gradient steps of every policy.
        batch_size: Steps per gradient step.
        lr: Adam learning rate.
        test_starts: Held-out start states of the ``test`` split.
        eval_episodes: Episodes per policy on the ``test`` split (spread evenly over its start states).
    """

    train_starts: int = 40
    experts: int = 2
    noisy: int = 3
    wanderers: int = 3
    axis: int = 4
    noise_rate: float = 0.15
    detour_rate: float = 0.05
    still_below: float = 0.5
    min_idle_steps: int = 3
    return_within: float = 0.5
    min_detour_steps: int = 5
    neighbour_radius: float = 1.0
    action_tolerance: float = 0.5
    agreement_below: float = 0.5
    window: int = 2
    noise_above: float = 2.0
    policies: tuple[str, ...] = POLICIES
    head: str = "gmm"
    hidden_sizes: tuple[int, ...] = (256, 256)
    steps: int = 4000
    batch_size: int = 256
    lr: float = 3e-4
    test_starts: int = 100
    eval_episodes: int = 400

    def __post_init__(self) -> None:
        for name in ("train_starts", "test_starts", "eval_episodes", "steps", "batch_size"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check_policy_keys(self.policies, POLICIES)
        check(
            self.head in ("mse", "gaussian", "gmm", "diffusion"), "head", "mse, gaussian, gmm or diffusion", self.head
        )
        check(len(self.hidden_sizes) >= 1, "hidden_sizes", "at least one width", self.hidden_sizes)
        check(self.lr > 0, "lr", "> 0", self.lr)
        self.pollution()  # checks the pollution fields
        self.detection()  # checks the detector fields

    def pollution(self) -> AvoidingPollutionConfig:
        """The demonstrators and their defects."""
        return AvoidingPollutionConfig(
            experts=self.experts,
            noisy=self.noisy,
            wanderers=self.wanderers,
            axis=self.axis,
            noise_rate=self.noise_rate,
            detour_rate=self.detour_rate,
        )

    def detection(self) -> ContinuousDetectConfig:
        """The detectors' thresholds."""
        return ContinuousDetectConfig(
            still_below=self.still_below,
            min_idle_steps=self.min_idle_steps,
            return_within=self.return_within,
            min_detour_steps=self.min_detour_steps,
            neighbour_radius=self.neighbour_radius,
            action_tolerance=self.action_tolerance,
            agreement_below=self.agreement_below,
            window=self.window,
            noise_above=self.noise_above,
        )


FULL = AvoidingQualityConfig()
QUICK = replace(FULL, train_starts=12, hidden_sizes=(128, 128), steps=600, test_starts=30, eval_episodes=60)


def _polluted(out: Path, config: AvoidingQualityConfig, seed: int) -> Dataset:
    path = out / "data" / "polluted"
    pollution = config.pollution()
    if path.exists():
        data = Dataset.open(path)
        recorded = data.extra.get("pollution", {})
        fits = (
            data.env.get("seed") == seed
            and len(data.env.get("tasks", [])) == config.train_starts
            and recorded.get("demonstrators") == pollution.demonstrators()
            and recorded.get("noise_rate") == pollution.noise_rate
            and recorded.get("detour_rate") == pollution.detour_rate
        )
        if not fits:
            raise DatasetError(f"{path}: exists but was made with other settings; use a fresh --out")
        return data
    tasks = get_env_family("avoiding").sample_tasks(seed, "train", config.train_starts, set())
    return polluted_demonstrations(path, tasks, pollution, seed)


def best_of_n(dataset: Dataset) -> list[int]:
    """Per start state (``task_index``), its best attempt: successful, then the fewest steps, then the first;
    starts with no successful attempt give none. Episode indices in order."""
    facts = episode_outcomes(dataset)
    best: dict[int, int] = {}
    for k, start in enumerate(dataset.episode_info("task_index").tolist()):
        if facts.success[k] and (start not in best or facts.length[k] < facts.length[best[start]]):
            best[start] = k
    return sorted(best.values())


def _curated(path: Path, polluted: Dataset, found: ContinuousDetections) -> Dataset:
    """The curated set at ``path``: written once; a rerun checks that it holds the steps ``found`` keeps."""
    if not path.exists():
        return curate_detected(polluted, path, found)
    curated = Dataset.open(path)
    who = np.asarray([str(w) for w in polluted.column("demonstrator")], dtype=object)
    flagged = found.idle_steps | found.detour_steps | found.noise_steps | np.isin(who, found.incompatible)
    if curated.num_steps != int((~flagged).sum()):
        raise DatasetError(f"{path}: exists but was made with other detector settings; use a fresh --out")
    return curated


def detector_metrics(
    polluted: Dataset, config: AvoidingQualityConfig, seed: int
) -> tuple[dict[str, Any], ContinuousDetections]:
    """``({detect_KEY: {"train": {precision, recall, f1}}}, detections)`` of the four detectors."""
    found = detect_continuous_defects(polluted, config.detection())
    truth = ground_truth(polluted)
    episode = polluted.episode_index()
    who = np.asarray([str(w) for w in episode_outcomes(polluted).demonstrator], dtype=object)
    style = np.logical_or.reduceat(truth["style"], polluted.episode_starts)
    metrics = {
        "detect_noise": {"train": detection_metrics(truth["noise"], found.noise_steps, episode, seed)},
        "detect_idle": {"train": detection_metrics(truth["idle"], found.idle_steps, episode, seed)},
        "detect_detours": {"train": detection_metrics(truth["detour"], found.detour_steps, episode, seed)},
        "detect_incompatible": {"train": detection_metrics(style, np.isin(who, found.incompatible), who, seed)},
    }
    return metrics, found


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: AvoidingQualityConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``)."""
    config = config or (QUICK if quick else FULL)
    # Small networks: extra intra-op threads buy nothing and, on a busy machine, cost a lot.
    with torch_threads(1):
        return _run(out, seed, quick, show_progress, log, config)


def _run(
    out: Path, seed: int, quick: bool, show_progress: bool, log: Any, config: AvoidingQualityConfig
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    polluted = _polluted(out, config, seed)
    log(f"polluted set: {polluted.num_episodes} episodes, {polluted.num_steps} steps")
    metrics, found = detector_metrics(polluted, config, seed)
    for key in DETECTORS:
        log(f"  {key:20s} F1 {format_metric(metrics[key]['train']['f1'])}")
    curated = _curated(out / "data" / "curated", polluted, found)
    bestofn = write_subset(polluted, out / "data" / "bestofn", best_of_n(polluted), "best of N per start state")
    data = {"bc_raw": polluted, "bc_curated": curated, "bc_bestofn": bestofn}

    family = get_env_family("avoiding")
    tasks = split_tasks(polluted.env, "test", seed, config.test_starts)
    overrides = {"head": config.head, "hidden_sizes": list(config.hidden_sizes)}
    for key in config.policies:
        run_dir = out / "runs" / key
        policy = train_offline_key(config, key, "continuous_bc", data[key], run_dir, seed, overrides, show_progress)
        torch.manual_seed(derive_seed(seed, f"{NAME}:{key}"))  # the head's sampling noise
        episodes = rollout(policy, family, tasks, config.eval_episodes, seed)
        metrics[key] = {
            "test": {"success": episodes.metrics(seed)["success"], "data_steps": exact_metric(data[key].num_steps)}
        }
        log(f"  {key:20s} test success {format_metric(metrics[key]['test']['success'])}, {data[key].num_steps} steps")
    curation = curated.extra["curation"]
    results = {
        **results_head(NAME, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
        "detections": detections_summary(found),
        "pollution": polluted.extra.get("pollution", {}),
        "curation": {
            "kept": curation["kept"],
            "removed": len(curation["removed"]),
            "cut_segments": len(curation["cut"]),
            "steps": curated.num_steps,
        },
    }
    atomic_write_json(out / "results.json", results)
    plots = ["avoiding_quality.png"] if _plot(results, polluted, found, out / "avoiding_quality.png") else []
    atomic_write_text(out / "report.md", _report(results, plots))
    return results


def _plot(results: dict[str, Any], polluted: Dataset, found: ContinuousDetections, path: Path) -> bool:
    plt = _pyplot()
    if plt is None:
        return False
    metrics = results["metrics"]
    fig, (arena, bars, detectors) = plt.subplots(1, 3, figsize=(16, 4.6), gridspec_kw={"width_ratios": [4, 3, 4]})
    for x, y in OBSTACLES:
        arena.add_patch(plt.Circle((x, y), OBSTACLE_RADIUS, color="grey", alpha=0.5))
    obs = np.asarray(polluted.column("obs"))
    defect = np.asarray(polluted.column("defect"), dtype=object)
    flagged = found.noise_steps | found.idle_steps | found.detour_steps
    per_start = len(results["pollution"].get("demonstrators", [])) or 1
    for k in range(min(per_start, polluted.num_episodes)):  # every demonstrator from the first start state
        a, n = int(polluted.episode_starts[k]), int(polluted.episode_lengths[k])
        style = defect[a] == "style"
        arena.plot(obs[a : a + n, 0], obs[a : a + n, 1], color="C3" if style else "C0", lw=0.8, alpha=0.7)
        hits = np.flatnonzero(flagged[a : a + n]) + a
        arena.scatter(obs[hits, 0], obs[hits, 1], s=8, color="C1", zorder=3)
    arena.axhline(FINISH_Y, color="green", lw=1)
    arena.set_xlim(*ARENA_X)
    arena.set_ylim(0, 1.1)
    arena.set_aspect("equal")
    arena.set_title("one start, every demonstrator (red: axis style; dots: flagged steps)", fontsize=8)
    keys = [k for k in POLICIES if k in metrics]
    for i, key in enumerate(keys):
        errorbar(bars, i, metrics[key]["test"]["success"], "C0", None, 0.6)
    bars.set_xticks(range(len(keys)), keys)
    bars.set_ylim(0, 1.05)
    bars.set_ylabel("test success (95% CI)")
    bars.set_title("BC (GMM) on held-out starts")
    detector_panel(detectors, metrics, DETECTORS)
    fig.suptitle(f"{results['experiment']} (seed {results['seed']}{', quick' if results['quick'] else ''})")
    save_figure(fig, path)
    return True


def _report(results: dict[str, Any], plots: list[str]) -> str:
    config, metrics, found = results["config"], results["metrics"], results["detections"]
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        f"Polluted set: {config['train_starts']} Avoiding start states, each played by every demonstrator: "
        f"{config['experts']} experts, {config['noisy']} noisy (heading turned by 60-180 degrees at "
        f"{config['noise_rate']} of their steps), {config['wanderers']} wanderers (idling, out-and-back "
        f"excursions), {config['axis']} axis (arrow keys: an incompatible style).",
        "",
        "## Detectors (training data, against the injected ground truth)",
        "",
        "| detector | unit | precision | recall | F1 |",
        "|---|---|---|---|---|",
    ]
    for key in DETECTORS:
        cells = metrics[key]["train"]
        unit = "episodes (by demonstrator)" if key == "detect_incompatible" else "steps"
        lines.append(
            f"| {key} | {unit} | {format_metric(cells['precision'])} | {format_metric(cells['recall'])} | "
            f"{format_metric(cells['f1'])} |"
        )
    lines += ["", "| demonstrator | agreement (median over the others) | flagged as noise |", "|---|---|---|"]
    for who, row in found["demonstrators"].items():
        agreement = "n/a" if row["agreement"] is None else f"{row['agreement']:.3f}"
        lines.append(f"| {who} | {agreement} | {row['noise_share']:.3f} |")
    curation = results["curation"]
    lines += [
        "",
        f"Flagged incompatible: {', '.join(found['incompatible']) or 'none'}.",
        "",
        "## Policies (continuous_bc, held-out start states)",
        "",
        f"`bc_curated` keeps {curation['kept']} episodes ({curation['steps']} steps, {curation['cut_segments']} "
        f"segments cut). Head `{config['head']}`, {config['steps']} steps each. {config['eval_episodes']} episodes "
        f"on {config['test_starts']} start states; intervals: cluster bootstrap over start states.",
        "",
        "| policy | test success | data steps |",
        "|---|---|---|",
    ]
    for key in POLICIES:
        if key in metrics:
            cells = metrics[key]["test"]
            lines.append(f"| {key} | {format_metric(cells['success'])} | {int(cells['data_steps']['mean'])} |")
    lines += report_tail(results, plots)
    return "\n".join(lines)


def success_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(key, test success or F1, data steps or precision / recall)``."""
    rows = detector_rows(results["metrics"], DETECTORS)
    for key in POLICIES:
        if key in results["metrics"]:
            cells = results["metrics"][key]["test"]
            rows.append((key, format_metric(cells["success"]), f"{int(cells['data_steps']['mean'])} steps"))
    return rows


__all__ = [
    "DETECTORS",
    "FULL",
    "NAME",
    "POLICIES",
    "QUICK",
    "AvoidingQualityConfig",
    "best_of_n",
    "run",
    "success_table",
]
