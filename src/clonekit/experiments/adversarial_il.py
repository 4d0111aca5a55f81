"""Experiment ``adversarial-il``: BC vs GAIL, AIRL and GAIfO from a few subsampled demonstrations of CartPole.

``--seed`` records ``demo_episodes`` episodes of a scripted expert (:func:`cartpole_expert`, a linear
controller that balances every start for the whole 500 steps) and keeps every ``subsample``-th step of each
from a random offset (GAIL's paper subsamples its trajectories the same way): a few dozen expert transitions.
Policy keys (split ``test``: unseen reset seeds of the env):

* ``bc``: behaviour cloning of the kept ``(s, a)`` pairs;
* ``gail``, ``airl``: :mod:`clonekit.rl.adversarial` with the kept transitions (``s'`` the step after each);
* ``gaifo``: the same discriminator on the kept ``(s, s')`` pairs, without the actions.

The three adversarial methods run PPO for ``budget`` env steps and never see the env's reward. Reward
``positive`` (``-log(1 - D)``) for all three, also for AIRL (``softplus`` of its logit): with the ``logit``
form, which can be negative, an agent in CartPole learns to end its episodes at once (measured when this study
was set up: greedy return 9.5 for GAIL and AIRL after 100k steps). The positive form, in turn, pays for
staying alive, and staying alive is CartPole's task: this study does not separate imitation from that bonus.

Metrics per key: ``return`` and ``success`` (return >= the env's reward threshold, 475) of the final greedy
policy on ``final_episodes`` unseen reset seeds, each played once (a deterministic policy on a deterministic
reset). Every ``eval_every`` env steps the greedy actor plays ``eval_episodes`` of them (the curves of the
PNG). ``clonekit run adversarial-il --seeds 0-2`` aggregates over seeds (each seed its own demonstrations,
training seeds and test seeds).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from clonekit.checkpoint import load_policy
from clonekit.config import check
from clonekit.data import Dataset
from clonekit.data.writer import DatasetWriter
from clonekit.envs import get_env_family
from clonekit.evaluation import rollout
from clonekit.evaluation.plots import _pyplot, save_figure
from clonekit.evaluation.stats import format_metric
from clonekit.experiments.common import check_policy_keys, report_tail, results_head
from clonekit.experts.collect import collect
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.policies import Policy
from clonekit.rl.adversarial import AdversarialConfig, subsample_offsets, train_adversarial
from clonekit.seeding import derive_seed
from clonekit.train import TrainConfig, train

NAME = "adversarial-il"
KEYS = ("bc", "gail", "airl", "gaifo")
ADVERSARIAL = ("gail", "airl", "gaifo")
# Gains on (x, x_dot, theta, theta_dot): push towards where the pole leans and falls, and a little back
# towards the centre; it balanced all 500 steps from each of 30 reset seeds tried.
CARTPOLE_GAINS = np.array([0.1, 0.5, 2.0, 0.5])


def cartpole_expert(obs: np.ndarray) -> np.ndarray:
    """The scripted CartPole expert: observations ``(B, 4)`` -> actions ``(B,)`` int64 (1 pushes right)."""
    return (np.asarray(obs, dtype=np.float64) @ CARTPOLE_GAINS > 0).astype(np.int64)


@dataclass(frozen=True)
class AdversarialILConfig:
    """Settings of ``adversarial-il``.

    Args:
        env: Gymnasium id with discrete actions and a reward threshold (success), e.g. ``CartPole-v1``.
        policies: The keys to run, among ``bc``, ``gail``, ``airl``, ``gaifo``.
        expert: The demonstrator, as ``clonekit collect`` takes it (default: :func:`cartpole_expert`).
        demo_episodes: Expert episodes recorded.
        subsample: Keep every k-th step of each demonstration (from a random offset).
        budget: PPO env steps of each adversarial method.
        reward: The adversarial reward form (see :class:`clonekit.rl.adversarial.AdversarialConfig`).
        disc_updates: Discriminator steps per PPO iteration.
        disc_lr: The discriminator's learning rate.
        grad_penalty: Weight of the discriminator's gradient penalty.
        lr: The adversarial PPO's learning rate.
        bc_steps: BC gradient steps (batch 64).
        hidden_sizes: MLP widths of every policy, critic and discriminator.
        eval_every: Env steps between the curve's evaluations.
        eval_episodes: Unseen reset seeds per curve evaluation.
        final_episodes: Unseen reset seeds for the final metrics.
    """

    env: str = "CartPole-v1"
    policies: tuple[str, ...] = KEYS
    expert: str = "py:clonekit.experiments.adversarial_il:cartpole_expert"
    demo_episodes: int = 1
    subsample: int = 20
    budget: int = 100_352
    reward: Literal["auto", "positive", "logit"] = "positive"
    disc_updates: int = 4
    disc_lr: float = 3e-4
    grad_penalty: float = 0.0
    lr: float = 3e-4
    bc_steps: int = 1000
    hidden_sizes: tuple[int, ...] = (64, 64)
    eval_every: int = 10_240
    eval_episodes: int = 20
    final_episodes: int = 50

    def __post_init__(self) -> None:
        check_policy_keys(self.policies, KEYS)
        check(bool(self.expert), "expert", "an expert spec", self.expert)
        for name in ("demo_episodes", "subsample", "budget", "bc_steps", "eval_every"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        for name in ("eval_episodes", "final_episodes"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        self.adversarial("gail", "demos", 0)  # its own checks name the field

    def adversarial(self, method: str, demos: str, seed: int) -> AdversarialConfig:
        """The :class:`AdversarialConfig` of ``method`` in this study."""
        return AdversarialConfig(
            method=method,  # type: ignore[arg-type]
            demos=demos,
            env=self.env,
            total_steps=self.budget,
            seed=seed,
            reward=self.reward,
            subsample=self.subsample,
            disc_hidden_sizes=self.hidden_sizes,
            disc_lr=self.disc_lr,
            disc_updates=self.disc_updates,
            grad_penalty=self.grad_penalty,
            lr=self.lr,
            hidden_sizes=self.hidden_sizes,
            checkpoint_every=10**9,  # a run is short: an interrupted one starts again
        )


FULL = AdversarialILConfig()
QUICK = replace(FULL, budget=8192, bc_steps=200, eval_every=4096, eval_episodes=5, final_episodes=10)


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: AdversarialILConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``)."""
    config = config or (QUICK if quick else FULL)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    family = get_env_family("gym")
    env_kwargs = {"id": config.env}
    run_seed = derive_seed(seed, "adversarial-il:train") % 2**31
    demos_path = out / "data" / "demos"
    demos = (
        Dataset.open(demos_path)
        if demos_path.exists()
        else collect(
            f"gym:{config.env}",
            config.expert,
            episodes=config.demo_episodes,
            seed=seed,
            out=demos_path,
            show_progress=False,
        )
    )
    kept = subsampled_dataset(demos, config.subsample, run_seed, out / "data" / "demos_kept")
    log(
        f"  demos: {demos.num_episodes} episodes, {demos.num_steps} steps, {kept.num_steps} kept "
        f"(every {config.subsample})"
    )
    test_seed = derive_seed(seed, "adversarial-il:test")
    final_tasks = family.sample_tasks(test_seed, "test", config.final_episodes, set(), **env_kwargs)
    curve_tasks = final_tasks[: config.eval_episodes]

    def mean_return(policy: Policy) -> float:
        results = rollout(policy, family, curve_tasks, len(curve_tasks), test_seed, env_kwargs)
        return float(results.returns.mean())

    finals: dict[str, Any] = {}
    curves: dict[str, list[tuple[int, float]]] = {}
    per_key_returns: dict[str, list[float]] = {}
    for key in config.policies:
        if key == "bc":
            policy = _train_bc(kept, out / "runs" / "bc", config, run_seed)
        else:
            policy, curves[key] = adversarial_curve(
                out / "runs" / key,
                config.adversarial(key, str(demos_path), run_seed),
                config.eval_every,
                mean_return,
                show_progress,
            )
        results = rollout(policy, family, final_tasks, len(final_tasks), test_seed, env_kwargs)
        finals[key] = results.metrics(seed)
        per_key_returns[key] = [float(r) for r in results.returns]
        log(f"  {key}: return {format_metric(finals[key]['return'])}, success {format_metric(finals[key]['success'])}")

    metrics = {
        key: {"test": {"return": finals[key]["return"], "success": finals[key]["success"]}} for key in config.policies
    }
    results_json = {
        **results_head(NAME, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
        "expert_demo_returns": [float(r) for r in episode_returns(demos)],
        "demos": {"episodes": demos.num_episodes, "steps": demos.num_steps, "kept_steps": kept.num_steps},
        "curves": {key: [list(p) for p in curve] for key, curve in curves.items()},
        "returns": per_key_returns,
        "seconds": round(time.perf_counter() - began, 1),
    }
    atomic_write_json(out / "results.json", results_json)
    plots = [f"{NAME}.png"] if _plot(results_json, out / f"{NAME}.png") else []
    atomic_write_text(out / "report.md", _report(results_json, plots))
    return results_json


def subsampled_dataset(demos: Dataset, every: int, seed: int, out: Path) -> Dataset:
    """The steps of ``demos`` that the adversarial methods keep (:func:`subsample_offsets` with ``seed``) as a
    dataset for BC at ``out`` (opened as it is when it exists). Each episode keeps its kept steps in order; its
    last kept step is marked ``truncated`` (the kept steps are not a trajectory)."""
    if out.exists():
        return Dataset.open(out)
    offsets = subsample_offsets(demos.num_episodes, every, seed)
    with DatasetWriter(out, list(demos.streams.values()), spaces=demos.spaces, env=demos.env) as writer:
        for episode, offset in enumerate(offsets.tolist()):
            steps = {name: np.asarray(values) for name, values in demos.episode(episode).items()}
            keep = np.arange(offset, len(steps["obs"]), every)
            kept = {name: values[keep].copy() for name, values in steps.items()}
            kept["terminated"][:] = False
            kept["truncated"][:] = False
            kept["truncated"][-1] = True
            writer.add_episode(kept)
        return writer.close()


def _train_bc(data: Dataset, run_dir: Path, config: AdversarialILConfig, seed: int) -> Policy:
    train(
        "bc",
        data,
        run_dir,
        TrainConfig(
            steps=config.bc_steps,
            batch_size=64,
            seed=seed,
            checkpoint_every=config.bc_steps,
            keep_checkpoints=1,
            tensorboard=False,
            val_fraction=0.0,
        ),
        policy_overrides={"encoder": "mlp", "hidden_sizes": list(config.hidden_sizes)},
        resume=True,
        show_progress=False,
    )
    return load_policy(run_dir)


def adversarial_curve(
    run_dir: Path,
    adversarial: AdversarialConfig,
    eval_every: int,
    score: Callable[[Policy], float],
    show_progress: bool,
) -> tuple[Policy, list[tuple[int, float]]]:
    """Train one adversarial method (or read a finished run back) and return its actor and its curve
    ``[(env_steps, score(greedy actor)), ...]``, scored before training, every ``eval_every`` env steps and at
    the end (``score``: e.g. the mean return or success on fixed test tasks)."""
    saved = run_dir / "curve.json"
    if saved.is_file():
        points = json.loads(saved.read_text(encoding="utf-8"))
        return load_policy(run_dir), [(int(s), float(v)) for s, v in points]
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an unfinished run (no curve.json) starts again
    batch = adversarial.ppo().batch_size
    total = adversarial.ppo().num_iterations * batch
    curve: list[tuple[int, float]] = []

    def evaluate(env_steps: int, actor: Policy) -> None:
        if env_steps in (0, total) or env_steps // eval_every > (env_steps - batch) // eval_every:
            curve.append((env_steps, score(actor)))
            actor.train()

    actor = train_adversarial(adversarial, run_dir, show_progress=show_progress, on_update=evaluate)
    atomic_write_json(saved, curve)
    return actor, curve


def episode_returns(demos: Dataset) -> np.ndarray:
    """``(num_episodes,)`` the return of each episode of ``demos``."""
    rewards = np.asarray(demos.column("reward"), dtype=np.float64)
    return np.add.reduceat(rewards, demos.episode_starts) if demos.num_steps else np.zeros(0)


def _plot(results: dict[str, Any], path: Path) -> bool:
    plt = _pyplot()
    if plt is None:
        return False
    config = results["config"]
    fig, ax = plt.subplots(figsize=(8, 4.8))
    colors = {"gail": "#4c72b0", "airl": "#dd8452", "gaifo": "#55a868"}
    for key, curve in results["curves"].items():
        steps, values = zip(*curve, strict=True)
        ax.plot(steps, values, color=colors[key], lw=2, marker="o", ms=3, label=f"{key} (greedy, test seeds)")
    if "bc" in results["metrics"]:
        ax.axhline(results["metrics"]["bc"]["test"]["return"]["mean"], color="#c44e52", ls="--", label="bc")
    ax.axhline(float(np.mean(results["expert_demo_returns"])), color="k", ls=":", lw=1, label="expert (its demos)")
    ax.set_xlim(0, config["budget"] * 1.02)
    ax.set_xlabel("env steps")
    ax.set_ylabel("mean return")
    ax.set_title(
        f"{NAME}: {config['env']}, {results['demos']['kept_steps']} expert transitions (seed {results['seed']})"
    )
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=5)
    ax.grid(alpha=0.3)
    save_figure(fig, path)
    return True


def _report(results: dict[str, Any], plots: list[str]) -> str:
    config = results["config"]
    demos = results["demos"]
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        f"{config['env']}: {demos['episodes']} demonstration(s) of a scripted expert ({demos['steps']} steps, "
        f"return {np.mean(results['expert_demo_returns']):.0f}), every {config['subsample']}th step "
        f"kept: {demos['kept_steps']} expert transitions. `bc` clones them; `gail`, `airl`, `gaifo` (no actions) "
        f"run PPO for {config['budget']} env steps on a discriminator's reward ({config['reward']}), never the "
        "env's. Final greedy policy on "
        f"{config['final_episodes']} unseen reset seeds (each once); success = return >= the env's threshold.",
        "",
        "| policy | return [95% CI] | success [95% CI] |",
        "|---|---|---|",
    ]
    for key, cell in ((k, results["metrics"][k]["test"]) for k in results["metrics"]):
        lines.append(f"| {key} | {format_metric(cell['return'])} | {format_metric(cell['success'])} |")
    lines += [
        "",
        "Caveat: the positive reward `-log(1 - D)` pays for every step alive, and staying alive is CartPole's task,",
        "so this does not separate imitation from that bonus; the `logit` reward instead teaches an agent to end its",
        "episodes early. Intervals: the episodes of this one seed (across training seeds: `--seeds`).",
        f"Wall time {results['seconds']} s.",
    ]
    lines += report_tail(results, plots)
    return "\n".join(lines)


def results_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(policy, test return, test success)``."""
    return [
        (key, format_metric(cells["test"]["return"]), format_metric(cells["test"]["success"]))
        for key, cells in results["metrics"].items()
    ]


__all__ = [
    "FULL",
    "KEYS",
    "NAME",
    "QUICK",
    "AdversarialILConfig",
    "adversarial_curve",
    "results_table",
    "run",
    "subsampled_dataset",
]
