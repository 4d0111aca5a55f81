"""Experiment ``lfo-ads``: GAIfO from observation-only demonstrations with a fixed discount vs ADS.

Long-horizon task: ``Acrobot-v1``. The two-link arm must pump energy in by swinging back and forth before its
tip can rise above the bar; the expert's observation sequence has a clear order (ever larger swings), and its
later observations (high, fast swings) are reachable only once the early pumping is mastered: the *progress
dependency* that Automatic Discount Scheduling (:mod:`clonekit.rl.ads`) targets.

``--seed`` records ``demo_episodes`` episodes of a scripted expert (:func:`acrobot_expert`) and keeps only their
observations (the ``action`` stream dropped). Policy keys (split ``test``: unseen reset seeds, i.e. unseen
starts):

* ``lfo_fixed``: GAIfO (discriminator on ``(s, s')``) with PPO's fixed discount ``gamma``;
* ``lfo_ads``: the same, with the discount scheduled by ADS (``gamma = alpha ** (1 / progress)``, capped at
  ``gamma``; progress = the running maximum of the mean longest matched expert prefix of the agent's episodes);
* ``bco``: behavioural cloning from observation, BCO(alpha) (:mod:`clonekit.rl.bco`): an inverse dynamics model
  learned from the agent's own env steps (random ones first, then the cloned policy's) labels the expert's
  observations for BC. Its env steps (every phase's) add up to ``budget`` too; key ``bco`` split ``demos`` has
  its final labels' ``label_accuracy`` against the expert's true actions (which BCO never reads; steps clustered
  by episode).

The GAIfO keys run PPO for ``budget`` env steps with the same settings; no key ever sees the env's reward.
Reward ``logit`` (``log D - log(1 - D)``): Acrobot's episodes end on success, and the always-positive form would
pay for never getting there. Metric ``success`` (return >= ``success_threshold``: the tip above the bar within
about 200 steps; the env's limit is 500) of the final greedy policy on ``final_episodes`` unseen starts, each
played once (independent episodes: Wilson interval); every ``eval_every`` env steps the greedy actor plays
``eval_episodes`` of them (the curves of the PNG, beside the discount of each iteration; ``bco``'s after each
of its phases).
``clonekit run lfo-ads --seeds 0-2`` aggregates over training seeds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clonekit.checkpoint import load_policy
from clonekit.config import check
from clonekit.data import Dataset
from clonekit.data.observation_only import write_observation_only
from clonekit.envs import get_env_family
from clonekit.evaluation import rollout
from clonekit.evaluation.plots import _pyplot, save_figure
from clonekit.evaluation.stats import format_metric, summarize
from clonekit.experiments.adversarial_il import adversarial_curve
from clonekit.experiments.common import check_policy_keys, report_tail, results_head
from clonekit.experts.collect import collect
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.policies import Policy
from clonekit.rl.adversarial import AdversarialConfig
from clonekit.rl.bco import BCOConfig, phase_metrics, train_bco
from clonekit.seeding import derive_seed

NAME = "lfo-ads"
KEYS = ("lfo_fixed", "lfo_ads", "bco")


def acrobot_expert(obs: np.ndarray) -> np.ndarray:
    """The scripted Acrobot expert: observations ``(B, 6)`` -> actions ``(B,)`` int64: torque against the first
    joint's angular velocity (0: -1, 2: +1), which pumps energy in; it swings the tip above the bar in 65-140
    steps from the starts tried (seeds 0-7), as against 500 (never) for the opposite sign."""
    return np.where(np.asarray(obs)[:, 4] > 0, 0, 2).astype(np.int64)


@dataclass(frozen=True)
class LfoAdsConfig:
    """Settings of ``lfo-ads``.

    Args:
        env: Gymnasium id of the long-horizon task (discrete actions, episodes that end on success).
        policies: The keys to run, among ``lfo_fixed``, ``lfo_ads`` and ``bco``.
        expert: The demonstrator, as ``clonekit collect`` takes it (default: :func:`acrobot_expert`).
        success_threshold: An episode succeeds when its return reaches this (the env's reward is -1 a step
            until the goal).
        demo_episodes: Expert episodes recorded (observations only are kept).
        budget: Env steps of each key (PPO's; for ``bco`` all its phases together).
        gamma: PPO's discount (``lfo_fixed``'s throughout; ``lfo_ads``'s cap).
        ads_alpha: ADS's ``alpha`` (the discount at one matched expert step).
        ads_tolerance: ADS's matching distance (expert-standardized units).
        ads_window: ADS's look-ahead along the expert sequence.
        disc_updates: Discriminator steps per PPO iteration.
        disc_lr: The discriminator's learning rate.
        lr: PPO's learning rate.
        ent_coef: PPO's entropy bonus.
        num_envs: PPO's parallel envs.
        num_steps: PPO's steps per env per iteration.
        hidden_sizes: MLP widths of the actor, critic and discriminator.
        eval_every: Env steps between the curve's evaluations.
        eval_episodes: Unseen starts per curve evaluation.
        final_episodes: Unseen starts for the final metrics.
        bco_alpha: BCO(alpha)'s ``alpha``: each later phase acts for ``alpha`` times the random phase's steps
            (``pre_steps = budget / (1 + bco_alpha * bco_iterations)``).
        bco_iterations: BCO's phases after the random one.
        bco_idm_steps: Gradient steps of BCO's inverse dynamics model in each phase.
        bco_bc_steps: Gradient steps of BCO's BC policy (MLP ``hidden_sizes``) in each phase.
    """

    env: str = "Acrobot-v1"
    policies: tuple[str, ...] = KEYS
    expert: str = "py:clonekit.experiments.lfo_ads:acrobot_expert"
    success_threshold: float = -200.0
    demo_episodes: int = 5
    budget: int = 40_960
    gamma: float = 0.99
    ads_alpha: float = 0.2
    ads_tolerance: float = 0.5
    ads_window: int = 4
    disc_updates: int = 4
    disc_lr: float = 3e-4
    lr: float = 3e-4
    ent_coef: float = 0.01
    num_envs: int = 8
    num_steps: int = 256
    hidden_sizes: tuple[int, ...] = (64, 64)
    eval_every: int = 4096
    eval_episodes: int = 20
    final_episodes: int = 100
    bco_alpha: float = 0.25
    bco_iterations: int = 4
    bco_idm_steps: int = 2000
    bco_bc_steps: int = 1000

    def __post_init__(self) -> None:
        check_policy_keys(self.policies, KEYS)
        check(bool(self.expert), "expert", "an expert spec", self.expert)
        for name in ("demo_episodes", "budget", "eval_every", "eval_episodes", "final_episodes"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        self.adversarial("lfo_ads", "demos", 0)  # its own checks name the field
        check(self.bco_alpha >= 0, "bco_alpha", ">= 0", self.bco_alpha)
        check(self.bco_iterations >= 0, "bco_iterations", ">= 0", self.bco_iterations)
        bco = self.bco("demos", 0)
        check(
            bco.total_env_steps <= self.budget,
            "bco_alpha",
            f"BCO's env steps within budget {self.budget}",
            bco.total_env_steps,
        )

    def adversarial(self, key: str, demos: str, seed: int) -> AdversarialConfig:
        """The GAIfO config of ``key`` in this study (the two differ only in ``discount_schedule``)."""
        return AdversarialConfig(
            method="gaifo",
            demos=demos,
            env=self.env,
            total_steps=self.budget,
            seed=seed,
            reward="logit",
            disc_hidden_sizes=self.hidden_sizes,
            disc_lr=self.disc_lr,
            disc_updates=self.disc_updates,
            discount_schedule="ads" if key == "lfo_ads" else "fixed",
            ads_alpha=self.ads_alpha,
            ads_tolerance=self.ads_tolerance,
            ads_window=self.ads_window,
            num_envs=self.num_envs,
            num_steps=self.num_steps,
            lr=self.lr,
            gamma=self.gamma,
            ent_coef=self.ent_coef,
            hidden_sizes=self.hidden_sizes,
            checkpoint_every=10**9,  # a run is short: an interrupted one starts again
        )

    def bco(self, demos: str, seed: int) -> BCOConfig:
        """The BCO config of key ``bco``: its phases' env steps add up to ``budget`` (rounded down to whole steps
        of the ``num_envs`` envs)."""
        pre_steps = int(self.budget / (1 + self.bco_alpha * self.bco_iterations)) // self.num_envs * self.num_envs
        return BCOConfig(
            demos=demos,
            env=self.env,
            seed=seed,
            pre_steps=max(pre_steps, self.num_envs),
            alpha=self.bco_alpha,
            iterations=self.bco_iterations,
            num_envs=self.num_envs,
            idm_steps=self.bco_idm_steps,
            bc_steps=self.bco_bc_steps,
            bc_hidden_sizes=self.hidden_sizes,
        )


FULL = LfoAdsConfig()
QUICK = replace(
    FULL,
    budget=12_288,
    demo_episodes=3,
    eval_every=4096,
    eval_episodes=10,
    final_episodes=20,
    bco_iterations=1,
    bco_idm_steps=300,
    bco_bc_steps=300,
)


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: LfoAdsConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``)."""
    config = config or (QUICK if quick else FULL)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    family = get_env_family("gym")
    env_kwargs = {"id": config.env, "success_threshold": config.success_threshold}
    run_seed = derive_seed(seed, "lfo-ads:train") % 2**31
    demos_path = out / "data" / "demos"
    if not demos_path.exists():
        collect(
            f"gym:{config.env}",
            config.expert,
            episodes=config.demo_episodes,
            seed=seed,
            out=out / "data" / "demos_with_actions",
            show_progress=False,
        )
    demos = (
        Dataset.open(demos_path)
        if demos_path.exists()
        else write_observation_only(Dataset.open(out / "data" / "demos_with_actions"), demos_path)
    )
    lengths = demos.episode_lengths.tolist()
    log(f"  demos: {demos.num_episodes} episodes (observations only), lengths {lengths}")
    test_seed = derive_seed(seed, "lfo-ads:test")
    final_tasks = family.sample_tasks(test_seed, "test", config.final_episodes, set(), **env_kwargs)
    curve_tasks = final_tasks[: config.eval_episodes]

    def curve_success(policy: Policy) -> float:
        results = rollout(policy, family, curve_tasks, len(curve_tasks), test_seed, env_kwargs)
        return float(results.success.mean())

    finals: dict[str, Any] = {}
    curves: dict[str, list[tuple[int, float]]] = {}
    discounts: dict[str, list[tuple[int, float]]] = {}
    bco_info: dict[str, Any] = {}
    for key in config.policies:
        if key == "bco":
            bco = config.bco(str(demos_path), run_seed)
            policy, curves[key] = bco_curve(out / "runs" / key, bco, curve_success, show_progress)
            results = rollout(policy, family, final_tasks, len(final_tasks), test_seed, env_kwargs)
            finals[key] = results.metrics(seed)
            bco_info = _bco_info(out, bco, seed)
            accuracy = bco_info.get("label_accuracy")
            log(
                f"  {key}: success {format_metric(finals[key]['success'])}, {bco.total_env_steps} env steps, "
                f"label accuracy {format_metric(accuracy) if accuracy else 'n/a'}"
            )
            continue
        adversarial = config.adversarial(key, str(demos_path), run_seed)
        policy, curves[key] = adversarial_curve(
            out / "runs" / key, adversarial, config.eval_every, curve_success, show_progress
        )
        discounts[key] = _discounts(out / "runs" / key, adversarial.gamma)
        results = rollout(policy, family, final_tasks, len(final_tasks), test_seed, env_kwargs)
        finals[key] = results.metrics(seed)
        log(f"  {key}: success {format_metric(finals[key]['success'])}, final discount {discounts[key][-1][1]:.4f}")
    metrics: dict[str, dict[str, Any]] = {
        key: {"test": {"success": finals[key]["success"], "return": finals[key]["return"]}} for key in finals
    }
    if "label_accuracy" in bco_info:
        metrics["bco"]["demos"] = {"label_accuracy": bco_info.pop("label_accuracy")}
    results_json = {
        **results_head(NAME, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
        "demos": {"episodes": demos.num_episodes, "lengths": lengths},
        "curves": {key: [list(p) for p in curve] for key, curve in curves.items()},
        "discounts": {key: [list(p) for p in points] for key, points in discounts.items()},
        **({"bco": bco_info} if bco_info else {}),
        "seconds": round(time.perf_counter() - began, 1),
    }
    atomic_write_json(out / "results.json", results_json)
    plots = [f"{NAME}.png"] if _plot(results_json, out / f"{NAME}.png") else []
    atomic_write_text(out / "report.md", _report(results_json, plots))
    return results_json


def bco_curve(
    run_dir: Path, bco: BCOConfig, score: Callable[[Policy], float], show_progress: bool
) -> tuple[Policy, list[tuple[int, float]]]:
    """Train BCO (resuming an interrupted run, or reading a finished one back) and return its final policy and its
    curve ``[(env_steps, score(policy)), ...]`` after each phase."""
    saved = run_dir / "curve.json"
    if saved.is_file():
        points = json.loads(saved.read_text(encoding="utf-8"))
        return load_policy(run_dir), [(int(s), float(v)) for s, v in points]
    curve: list[tuple[int, float]] = []
    policy = train_bco(
        bco, run_dir, resume=True, show_progress=show_progress, on_phase=lambda n, p: curve.append((n, score(p)))
    )
    atomic_write_json(saved, curve)
    return policy, curve


def _bco_info(out: Path, bco: BCOConfig, seed: int) -> dict[str, Any]:
    """BCO's env steps and phase metrics, and the final labels' accuracy against the expert's true actions
    (``label_accuracy``, steps clustered by episode; absent when the labelled copy of the demos is gone)."""
    run_dir = out / "runs" / "bco"
    info: dict[str, Any] = {"env_steps": bco.total_env_steps, "phases": phase_metrics(run_dir)}
    true_path = out / "data" / "demos_with_actions"
    if true_path.exists():
        true = Dataset.open(true_path)
        labels = np.asarray(Dataset.open(run_dir / "data" / f"labelled_{bco.iterations}").column("action"))
        episodes = np.repeat(np.arange(true.num_episodes), true.episode_lengths)
        info["label_accuracy"] = summarize(labels == np.asarray(true.column("action")), seed, groups=episodes)
    return info


def _discounts(run_dir: Path, gamma: float) -> list[tuple[int, float]]:
    """``[(env_steps, discount), ...]`` of every PPO iteration, from the run's ``metrics.jsonl``."""
    points = []
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        points.append((int(entry["step"]), float(entry.get("gamma", gamma))))
    return points


def _plot(results: dict[str, Any], path: Path) -> bool:
    plt = _pyplot()
    if plt is None:
        return False
    config = results["config"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = {"lfo_fixed": "#4c72b0", "lfo_ads": "#dd8452", "bco": "#55a868"}
    for key, curve in results["curves"].items():
        steps, values = zip(*curve, strict=True)
        what = "after each phase" if key == "bco" else "greedy"
        ax.plot(steps, values, color=colors[key], lw=2, marker="o", ms=3, label=f"{key} ({what}, unseen starts)")
    for key, points in results["discounts"].items():
        steps, values = zip(*points, strict=True)
        bx.plot(steps, values, color=colors[key], lw=2, label=key)
    ax.set_xlabel("env steps")
    ax.set_ylabel("success")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(f"{config['env']}: success (seed {results['seed']})")
    bx.set_xlabel("env steps")
    bx.set_ylabel("discount gamma")
    bx.set_title("discount over training (GAIfO keys)")
    for axis in (ax, bx):
        if axis.get_legend_handles_labels()[0]:  # bco alone draws no discount
            axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    save_figure(fig, path)
    return True


def _report(results: dict[str, Any], plots: list[str]) -> str:
    config = results["config"]
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        f"{config['env']}: {results['demos']['episodes']} expert episodes, observations only (lengths "
        f"{results['demos']['lengths']}). `lfo_fixed` is GAIfO with discount {config['gamma']}; `lfo_ads` the "
        f"same with ADS (alpha {config['ads_alpha']}, tolerance {config['ads_tolerance']}, window "
        f"{config['ads_window']}). {config['budget']} PPO env steps each on the discriminator's logit reward, "
        f"never the env's. Final greedy policy on {config['final_episodes']} unseen starts (each once); success = "
        f"the env's return >= {config['success_threshold']} (goal reached in time).",
        "",
        "| policy | success [95% CI] | return [95% CI] | final discount |",
        "|---|---|---|---|",
    ]
    for key, cell in ((k, results["metrics"][k]["test"]) for k in results["metrics"]):
        final_discount = f"{results['discounts'][key][-1][1]:.4f}" if key in results["discounts"] else "-"
        lines.append(
            f"| {key} | {format_metric(cell['success'])} | {format_metric(cell['return'])} | {final_discount} |"
        )
    if "bco" in results:
        bco = results["bco"]
        accuracy = results["metrics"]["bco"].get("demos", {}).get("label_accuracy")
        idm = ", ".join(f"{p['idm_accuracy']:.3f}" for p in bco["phases"])
        lines += [
            "",
            f"`bco`: BCO(alpha) with alpha {config['bco_alpha']} and {config['bco_iterations']} iterations after the "
            f"random phase, {bco['env_steps']} env steps in all; inverse dynamics accuracy on the agent's own "
            f"transitions per phase: {idm}; its final labels of the demos against the expert's true actions: "
            f"{format_metric(accuracy) if accuracy else 'n/a'}.",
        ]
    lines += [
        "",
        "Intervals: the episodes of this one seed (across training seeds: `--seeds`).",
        f"Wall time {results['seconds']} s.",
    ]
    lines += report_tail(results, plots)
    return "\n".join(lines)


def results_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(policy, test success)``."""
    return [(key, format_metric(cells["test"]["success"])) for key, cells in results["metrics"].items()]


__all__ = ["FULL", "KEYS", "NAME", "QUICK", "LfoAdsConfig", "acrobot_expert", "bco_curve", "results_table", "run"]
