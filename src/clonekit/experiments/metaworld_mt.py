"""Experiment ``metaworld-mt``: behaviour cloning of Meta-World's scripted policies, one policy for several tasks.

Meta-World's own scripted policies (the ``scripted`` expert) demonstrate ``demos_per_task`` episodes of each
task name, each on its own training seed (object and goal positions); one ``continuous_bc`` policy per action
head learns all task names at once from the state observation plus a one-hot task id (MT-style; see
:mod:`clonekit.envs.metaworld`). Every policy, and the scripted expert itself, then plays
``test_seeds_per_task`` unseen seeds of every task name, one episode each:

* ``expert``: the scripted policy (the reference);
* ``mlp``: regression to the mean action (MSE);
* ``gmm``: a Gaussian mixture head;
* ``diffusion``: score-based denoising (BESO-style, a few Euler steps);
* ``diffusion_chunked``: the same, predicting chunks of actions executed with a receding horizon.

Split ``test`` aggregates all task names (its interval resamples task names, so it reflects how success
varies between them); ``test:TASK`` holds one task name's episodes (independent seeds: Wilson interval).
Everything is derived from ``--seed``; the data, each policy's training and each policy's evaluation are
skipped or resumed when their output is already in ``OUT``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clonekit.config import check
from clonekit.data import Dataset
from clonekit.envs import get_env_family
from clonekit.envs.metaworld import check_task_names
from clonekit.evaluation import rollout, split_tasks
from clonekit.evaluation.plots import plot_success_bars
from clonekit.evaluation.stats import format_metric, summarize
from clonekit.evaluation.task_plots import plot_task_success
from clonekit.experiments.common import (
    collected_once,
    head_policies,
    report_tail,
    results_head,
    torch_threads,
    train_head,
)
from clonekit.experts.metaworld import ScriptedMetaWorldPolicy
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.policies import Policy
from clonekit.seeding import derive_seed

NAME = "metaworld-mt"
ENV = "metaworld"
# Mixed difficulty (groups of Seo et al. 2022, "Masked World Models"): reach and drawer-open are easy,
# pick-place and assembly hard, shelf-place and disassemble very hard.
DEFAULT_TASKS = ("reach-v3", "drawer-open-v3", "pick-place-v3", "assembly-v3", "shelf-place-v3", "disassemble-v3")


@dataclass(frozen=True)
class MetaWorldMTConfig:
    """Settings of ``metaworld-mt``.

    Args:
        task_names: Meta-World v3 task names; one policy learns them all (one-hot task id in the observation).
        demos_per_task: Expert demonstrations per task name, each on its own training seed.
        test_seeds_per_task: Unseen seeds per task name played by every policy (one episode each).
        max_steps: Episode limit (Meta-World's own is 500); an episode ends early once it succeeds.
        mlp_steps: Gradient steps of the MSE policy.
        gmm_steps: Gradient steps of the GMM policy.
        diffusion_steps: Gradient steps of each diffusion policy.
        batch_size: Transitions per gradient step.
        lr: Adam learning rate.
        hidden_sizes: Widths of the observation encoder of every policy.
        denoising_steps: Denoising steps per action (chunk) of the diffusion policies at inference.
        chunk: Actions per chunk of ``diffusion_chunked``.
        execute_steps: Actions of a chunk executed before predicting the next (receding horizon).
        eval_parallel: Episodes stepped together in one batched env during evaluation (each holds a MuJoCo
            model of about 25 MB).
    """

    task_names: tuple[str, ...] = DEFAULT_TASKS
    demos_per_task: int = 10
    test_seeds_per_task: int = 30
    max_steps: int = 500
    mlp_steps: int = 8000
    gmm_steps: int = 8000
    diffusion_steps: int = 8000
    batch_size: int = 256
    lr: float = 1e-3
    hidden_sizes: tuple[int, ...] = (256, 256, 256)
    denoising_steps: int = 5
    chunk: int = 8
    execute_steps: int = 4
    eval_parallel: int = 60

    def __post_init__(self) -> None:
        check_task_names(list(self.task_names))
        for name in ("demos_per_task", "test_seeds_per_task", "max_steps", "batch_size", "denoising_steps"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        for name in ("mlp_steps", "gmm_steps", "diffusion_steps", "eval_parallel"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check(self.chunk >= 1, "chunk", ">= 1", self.chunk)
        check(self.lr > 0, "lr", "> 0", self.lr)
        check(1 <= self.execute_steps <= self.chunk, "execute_steps", f"in [1, chunk={self.chunk}]", self.execute_steps)

    @property
    def env_kwargs(self) -> dict[str, Any]:
        return {"task_names": list(self.task_names), "max_steps": self.max_steps}

    def policies(self) -> dict[str, tuple[int, dict[str, Any]]]:
        """Learned policy key -> (gradient steps, ``continuous_bc`` config overrides)."""
        return head_policies(self)


FULL = MetaWorldMTConfig()
QUICK = replace(
    FULL,
    demos_per_task=5,
    test_seeds_per_task=5,
    max_steps=200,
    mlp_steps=600,
    gmm_steps=600,
    diffusion_steps=600,
    hidden_sizes=(128, 128),
)


def _dataset(out: Path, config: MetaWorldMTConfig, seed: int, show_progress: bool) -> Dataset:
    path = out / "data"
    num_tasks = config.demos_per_task * len(config.task_names)
    # Task i is task_names[i % K] (see clonekit.envs.metaworld.sample_tasks): one episode per training seed.
    return collected_once(
        path,
        ENV,
        "scripted",
        seed=seed,
        episodes=num_tasks,
        num_tasks=num_tasks,
        env_kwargs=config.env_kwargs,
        show_progress=show_progress,
    )


def _evaluate(policy: Policy, tasks: list[Any], config: MetaWorldMTConfig, seed: int) -> dict[str, Any]:
    """Play every test task once; ``{"task": [name per episode], "success": [bool], "length": [int]}``."""
    results = rollout(
        policy,
        get_env_family(ENV),
        tasks,
        len(tasks),
        seed,
        config.env_kwargs,
        max_parallel=config.eval_parallel,
    )
    return {
        "task": [tasks[i].name for i in results.task_index],
        "success": [bool(s) for s in results.success],
        "length": [int(n) for n in results.lengths],
    }


def _metrics(episodes: dict[str, Any], config: MetaWorldMTConfig, seed: int) -> dict[str, Any]:
    """Split ``test`` (all task names; clustered by task name) and ``test:TASK`` (one name)."""
    names = np.asarray(episodes["task"])
    success = np.asarray(episodes["success"], dtype=bool)
    lengths = np.asarray(episodes["length"], dtype=np.float64)
    metrics: dict[str, Any] = {
        "test": {
            "success": summarize(success, seed, groups=names),
            "length": summarize(lengths, seed, iqm=True, groups=names),
        }
    }
    for task in config.task_names:
        mask = names == task
        metrics[f"test:{task}"] = {
            "success": summarize(success[mask], seed),
            "length": summarize(lengths[mask], seed, iqm=True),
        }
    return metrics


def run_cell(out: Path, config: MetaWorldMTConfig, seed: int, name: str, show_progress: bool = False) -> dict[str, Any]:
    """Train (or resume) policy ``name`` (or take the scripted ``expert``) and play the test tasks.

    The episodes are kept in ``out/eval/NAME.json``, so a finished cell is not played again. Returns them.
    """
    episodes_path = out / "eval" / f"{name}.json"
    if episodes_path.exists():
        episodes: dict[str, Any] = json.loads(episodes_path.read_text())
        return episodes
    dataset = Dataset.open(out / "data")
    policy: Policy
    if name == "expert":
        policy = ScriptedMetaWorldPolicy(list(config.task_names))
    else:
        policy = train_head(dataset, out, config, seed, name, show_progress)
    tasks = split_tasks(dataset.env, "test", seed, config.test_seeds_per_task * len(config.task_names))
    torch.manual_seed(derive_seed(seed, f"{NAME}:{name}:test"))  # the heads' sampling noise
    episodes = _evaluate(policy, tasks, config, seed)
    episodes_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(episodes_path, episodes)
    return episodes


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: MetaWorldMTConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``).

    ``config`` replaces the preset chosen by ``quick`` (``FULL`` or ``QUICK``).
    """
    config = config or (QUICK if quick else FULL)
    # These networks are small: extra intra-op threads buy nothing and, on a busy machine, cost a lot.
    with torch_threads(1):
        return _run(out, seed, quick, show_progress, log, config)


def _run(out: Path, seed: int, quick: bool, show_progress: bool, log: Any, config: MetaWorldMTConfig) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    dataset = _dataset(out, config, seed, show_progress)
    log(
        f"{dataset.num_episodes} expert demonstrations ({config.demos_per_task} per task, "
        f"{len(config.task_names)} tasks), {dataset.num_steps} steps"
    )
    metrics: dict[str, dict[str, Any]] = {}
    for name in ("expert", *config.policies()):
        episodes = run_cell(out, config, seed, name, show_progress)
        metrics[name] = _metrics(episodes, config, seed)
        log(f"  {name:17s} test success {format_metric(metrics[name]['test']['success'])}")
    results = {
        **results_head(NAME, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
        "demonstrations": {
            "episodes": dataset.num_episodes,
            "steps": dataset.num_steps,
            "per_task": config.demos_per_task,
        },
    }
    atomic_write_json(out / "results.json", results)
    plots = []
    if plot_task_success(results, out / "success_per_task.png", list(config.task_names)):
        plots.append("success_per_task.png")
    aggregate = {**results, "metrics": {k: {"test": v["test"]} for k, v in metrics.items()}}
    if plot_success_bars(aggregate, out / "success.png"):
        plots.append("success.png")
    atomic_write_text(out / "report.md", _report(results, plots, config))
    return results


def _report(results: dict[str, Any], plots: list[str], config: MetaWorldMTConfig) -> str:
    demos = results["demonstrations"]
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        f"One behaviour-cloning policy per action head learns {len(config.task_names)} Meta-World tasks from "
        f"{demos['episodes']} scripted-expert demonstrations ({demos['per_task']} per task, {demos['steps']} "
        "steps), with a one-hot task id in the observation.",
        f"Success on {config.test_seeds_per_task} unseen seeds (object and goal positions) per task, one "
        f"episode each, at most {config.max_steps} steps; `expert` is Meta-World's scripted policy on the same "
        "seeds.",
        "Per task: Wilson 95% intervals (independent seeds). `all tasks`: the interval resamples task names",
        "(cluster bootstrap, or Wilson over tasks when every episode agrees), so it reflects how success varies",
        "between the tasks.",
        "",
        "| policy | all tasks | " + " | ".join(config.task_names) + " |",
        "|---|---|" + "---|" * len(config.task_names),
    ]
    for name, splits in results["metrics"].items():
        cells = [format_metric(splits["test"]["success"])]
        cells += [_fraction(splits[f"test:{task}"]["success"]) for task in config.task_names]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += report_tail(results, plots)
    return "\n".join(lines)


def _fraction(metric: dict[str, Any]) -> str:
    """``27/30 [0.74, 0.97]``."""
    lo, hi = metric["ci95"]
    return f"{round(metric['mean'] * metric['n'])}/{metric['n']} [{lo:.2f}, {hi:.2f}]"


def success_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(policy, test success over all tasks, worst task)`` of formatted metrics."""
    rows: list[tuple[str, ...]] = []
    for name, splits in results["metrics"].items():
        per_task = {s.removeprefix("test:"): m["success"]["mean"] for s, m in splits.items() if s.startswith("test:")}
        worst = min(per_task, key=lambda t: per_task[t])
        rows.append((name, format_metric(splits["test"]["success"]), f"{worst} {per_task[worst]:.2f}"))
    return rows


__all__ = ["FULL", "NAME", "QUICK", "MetaWorldMTConfig", "run", "run_cell", "success_table"]
