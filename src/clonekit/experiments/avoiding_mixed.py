"""Experiment ``avoiding-mixed``: imitation from a few expert episodes plus much worse data (issue 17).

Data, all on ``train_starts`` training start states of Avoiding (continuous 2-D), in stated proportions:

* ``expert_episodes`` episodes of the ``paths`` expert (:mod:`clonekit.experts.avoiding`; one of the 8 paths
  per episode), marked by the per-step ``expert`` stream (``True`` on their steps);
* ``noisy_episodes`` of the same expert whose action is replaced, at each step with probability
  ``noise_prob``, by a uniform random one (it steers back to its path afterwards, so many still succeed);
* ``random_episodes`` of uniform random actions (they wander near the start until they crash or time out).

The reward is the env's sparse success reward (1 on crossing the finish line, else 0); ReCOIL ignores it,
reading only the ``expert`` marks. Policy keys (each trained ``steps`` steps with the same MLP widths, except
``dt``, which has its own ``dt_*`` settings):

* ``bc_expert``: ``continuous_bc`` (MSE) on the expert episodes only;
* ``bc_all``: the same on every episode;
* ``bc_filtered``: the same on the successful episodes only (the ``success`` filter of
  :mod:`clonekit.quality.curate`);
* ``iql``, ``td3bc``, ``dt``: the offline RL baselines on every episode with the sparse reward;
* ``recoil``: :mod:`clonekit.policies.recoil` on every episode with the ``expert`` marks.

Split ``test``: ``test_starts`` start states no episode began at; metric ``success`` (every policy here acts
deterministically on deterministic tasks, so each start state counts once; Wilson interval). A key whose
policy is not registered is an error naming it (``policies`` lists the keys to run). Every stage is skipped
or resumed when its output is already in ``OUT``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clonekit.config import check
from clonekit.data import Dataset, DatasetWriter, array_stream
from clonekit.data.spaces import space_to_json
from clonekit.envs import get_env_family
from clonekit.envs.avoiding import AvoidingVecEnv
from clonekit.errors import DatasetError
from clonekit.evaluation import rollout, split_tasks
from clonekit.evaluation.plots import plot_success_bars
from clonekit.evaluation.stats import format_metric
from clonekit.experiments.common import (
    avoiding_step_streams,
    behaviour_composition,
    check_policy_keys,
    play_episodes,
    report_tail,
    require_registered,
    results_head,
    successful_episodes,
    torch_threads,
    train_offline_key,
)
from clonekit.experts.avoiding import AvoidingExpert
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.seeding import derive_seed

NAME = "avoiding-mixed"
KEYS = ("bc_expert", "bc_all", "bc_filtered", "iql", "td3bc", "dt", "recoil")
# key -> (registered policy, training data: "expert" | "all" | "filtered")
POLICY_OF_KEY = {
    "bc_expert": ("continuous_bc", "expert"),
    "bc_all": ("continuous_bc", "all"),
    "bc_filtered": ("continuous_bc", "filtered"),
    "iql": ("iql", "all"),
    "td3bc": ("td3bc", "all"),
    "dt": ("dt", "all"),
    "recoil": ("recoil", "all"),
}
BEHAVIOURS = ("expert", "noisy", "random")


@dataclass(frozen=True)
class AvoidingMixedConfig:
    """Settings of ``avoiding-mixed``.

    Args:
        train_starts: Training start states (episode ``k`` of each behaviour starts at ``k % train_starts``).
        expert_episodes: Episodes of the ``paths`` expert (marked ``expert``).
        noisy_episodes: Episodes of the expert with random actions mixed in (not marked).
        random_episodes: Episodes of uniform random actions (not marked).
        noise_prob: Per-step probability that a noisy episode takes a uniform random action.
        test_starts: Held-out start states of the ``test`` split (one deterministic rollout each).
        policies: Policy keys to run, a subset of ``bc_expert, bc_all, bc_filtered, iql, td3bc, dt, recoil``.
        steps: Gradient steps of every policy.
        batch_size: Transitions per gradient step.
        lr: Adam learning rate.
        hidden_sizes: MLP widths of every policy (and of each critic).
        recoil_beta: ReCOIL's mixing weight ``beta``.
        recoil_temperatures: ReCOIL's advantage-weight inverse temperatures to choose from: one run each, and
            ``recoil`` is the one with the highest success on the ``val`` split (``val_starts`` start states drawn
            apart from the test ones; ties go to the earlier temperature). The test split never chooses.
        val_starts: Start states of the ``val`` split (one deterministic rollout each).
        iql_beta: IQL's advantage-weight inverse temperature.
        dt_steps: Gradient steps of the Decision Transformer (a transformer step costs far more than an MLP's).
        dt_batch_size: Windows of ``dt_context`` steps per Decision Transformer step.
        dt_context: Steps the Decision Transformer sees (its ``context_length``).
    """

    train_starts: int = 20
    expert_episodes: int = 10
    noisy_episodes: int = 100
    random_episodes: int = 100
    noise_prob: float = 0.5
    test_starts: int = 200
    policies: tuple[str, ...] = KEYS
    steps: int = 5000
    batch_size: int = 256
    lr: float = 3e-4
    hidden_sizes: tuple[int, ...] = (256, 256)
    recoil_beta: float = 0.5
    recoil_temperatures: tuple[float, ...] = (0.5, 1.0, 3.0)
    val_starts: int = 100
    iql_beta: float = 3.0
    dt_steps: int = 3000
    dt_batch_size: int = 64
    dt_context: int = 10

    def __post_init__(self) -> None:
        for name in (
            "train_starts",
            "expert_episodes",
            "test_starts",
            "val_starts",
            "steps",
            "batch_size",
            "dt_steps",
            "dt_batch_size",
            "dt_context",
        ):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        for name in ("noisy_episodes", "random_episodes"):
            check(getattr(self, name) >= 0, name, ">= 0", getattr(self, name))
        check(0 <= self.noise_prob <= 1, "noise_prob", "in [0, 1]", self.noise_prob)
        check_policy_keys(self.policies, KEYS)
        check(self.lr > 0, "lr", "> 0", self.lr)
        check(len(self.hidden_sizes) >= 1, "hidden_sizes", "at least one width", self.hidden_sizes)
        check(0 < self.recoil_beta < 1, "recoil_beta", "in (0, 1)", self.recoil_beta)
        temperatures = self.recoil_temperatures
        check(
            len(temperatures) >= 1 and all(math.isfinite(t) and t >= 0 for t in temperatures),
            "recoil_temperatures",
            "one or more finite numbers >= 0",
            temperatures,
        )
        check(self.iql_beta >= 0, "iql_beta", ">= 0", self.iql_beta)


FULL = AvoidingMixedConfig()
QUICK = replace(
    FULL,
    expert_episodes=8,
    noisy_episodes=40,
    random_episodes=40,
    test_starts=60,
    val_starts=40,
    steps=1500,
    hidden_sizes=(128, 128),
    dt_steps=300,
)


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: AvoidingMixedConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``)."""
    config = config or (QUICK if quick else FULL)
    require_registered(config.policies, POLICY_OF_KEY)
    # Small networks: extra intra-op threads buy nothing and, on a busy machine, cost a lot.
    with torch_threads(1):
        return _run(out, seed, quick, show_progress, log, config)


def _run(
    out: Path, seed: int, quick: bool, show_progress: bool, log: Any, config: AvoidingMixedConfig
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    data = _datasets(out, config, seed)
    mixed = data["all"]
    composition = behaviour_composition(mixed, BEHAVIOURS, seed, log)

    family = get_env_family("avoiding")
    tasks = split_tasks(mixed.env, "test", seed, config.test_starts)
    # Validation start states: another draw of held-out starts (its own seed), used only to choose settings.
    val_tasks = split_tasks(mixed.env, "test", derive_seed(seed, f"{NAME}:val"), config.val_starts)

    def success(key: str, run_name: str, overrides: dict[str, Any], starts: list[Any], count: int) -> Any:
        policy_name, source = POLICY_OF_KEY[key]
        run = out / "runs" / run_name
        policy = train_offline_key(config, key, policy_name, data[source], run, seed, overrides, show_progress)
        torch.manual_seed(derive_seed(seed, f"{NAME}:{run_name}"))  # any sampling noise of a stochastic policy
        return rollout(policy, family, starts, count, seed).metrics(seed)["success"]

    metrics: dict[str, dict[str, Any]] = {}
    selection: dict[str, Any] = {}
    for key in config.policies:
        run_name, overrides = key, _overrides(key, config)
        if key == "recoil":
            on_val = {}
            for temperature in config.recoil_temperatures:
                name = f"recoil_t{temperature:g}"
                on_val[temperature] = success(
                    key, name, {**overrides, "temperature": temperature}, val_tasks, config.val_starts
                )
                log(f"  {name:12s} val success  {format_metric(on_val[temperature])}")
            chosen = max(config.recoil_temperatures, key=lambda t: on_val[t]["mean"])  # first of equals
            selection["recoil"] = {"temperature": chosen, "val_success": {f"{t:g}": v for t, v in on_val.items()}}
            run_name, overrides = f"recoil_t{chosen:g}", {**overrides, "temperature": chosen}
        metrics[key] = {"test": {"success": success(key, run_name, overrides, tasks, config.test_starts)}}
        log(f"  {key:12s} test success {format_metric(metrics[key]['test']['success'])}")

    results = {
        **results_head(NAME, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
        "selection": selection,
        "data": {
            "composition": composition,
            "filtered_episodes": data["filtered"].num_episodes,
            "expert_step_fraction": composition["expert"]["steps"] / mixed.num_steps,
        },
    }
    atomic_write_json(out / "results.json", results)
    plots = ["success.png"] if plot_success_bars(results, out / "success.png", metric="success") else []
    atomic_write_text(out / "report.md", _report(results, plots))
    return results


def _overrides(key: str, config: AvoidingMixedConfig) -> dict[str, Any]:
    """Policy config overrides of ``key``: the shared widths, and each method's own knobs."""
    widths = {"hidden_sizes": list(config.hidden_sizes)}
    if key.startswith("bc_"):
        return {**widths, "head": "mse"}
    if key == "recoil":  # its temperature is chosen on the val split (see recoil_temperatures)
        return {**widths, "beta": config.recoil_beta}
    if key == "iql":
        return {**widths, "beta": config.iql_beta}
    if key == "dt":
        return {"context_length": config.dt_context}
    return widths


def _datasets(out: Path, config: AvoidingMixedConfig, seed: int) -> dict[str, Dataset]:
    """``all`` (every episode, with the ``expert`` stream), ``expert`` (its expert episodes) and ``filtered``
    (its successful episodes); written once, a rerun checks that they fit the settings."""
    root = out / "data"
    path = root / "all"
    counts = {"expert": config.expert_episodes, "noisy": config.noisy_episodes, "random": config.random_episodes}
    if path.exists():
        mixed = Dataset.open(path)
        recorded = mixed.extra.get("mixture", {})
        fits = (
            mixed.env.get("seed") == seed
            and len(mixed.env.get("tasks", [])) == config.train_starts
            and recorded.get("episodes") == counts
            and recorded.get("noise_prob") == config.noise_prob
        )
        if not fits:
            raise DatasetError(f"{path}: exists but was written with other settings; use a fresh --out")
    else:
        mixed = write_mixture(path, seed, config.train_starts, counts, config.noise_prob)
    behaviour = list(mixed.episode_info("behaviour"))
    expert_ids = [i for i, kind in enumerate(behaviour) if kind == "expert"]
    expert = (
        Dataset.open(root / "expert") if (root / "expert").exists() else _subset(mixed, root / "expert", expert_ids)
    )
    filtered = successful_episodes(mixed, root / "filtered")
    return {"all": mixed, "expert": expert, "filtered": filtered}


def _subset(source: Dataset, path: Path, episodes: list[int]) -> Dataset:
    from clonekit.quality.subset import write_subset

    return write_subset(source, path, episodes, "the expert episodes")


def write_mixture(
    path: Path, seed: int, train_starts: int, counts: dict[str, int], noise_prob: float, max_steps: int | None = None
) -> Dataset:
    """Write ``counts[kind]`` episodes of each behaviour (``expert``, ``noisy``, ``random``) on ``train_starts``
    training start states drawn from ``seed``, with the ``expert`` stream (True on the expert episodes' steps)
    and episode info ``task_index`` and ``behaviour``; returns the dataset.

    Noisy episodes follow the ``paths`` expert but take a uniform random action with probability
    ``noise_prob`` at each step; random episodes take uniform random actions throughout.
    """
    family = get_env_family("avoiding")
    tasks = family.sample_tasks(seed, "train", train_starts, set())
    obs_space, act_space = family.spaces()
    streams = avoiding_step_streams(array_stream("expert", "bool", (), "True on the steps of the expert's episodes"))
    env = {
        "id": family.name,
        "kwargs": {},
        "expert": "paths",
        "seed": seed,
        "tasks": [family.task_to_json(t) for t in tasks],
    }
    extra = {"mixture": {"episodes": dict(counts), "noise_prob": noise_prob}}
    writer = DatasetWriter(
        path,
        streams,
        spaces={"observation": space_to_json(obs_space), "action": space_to_json(act_space)},
        env=env,
        episode_info=("task_index", "behaviour"),
        extra=extra,
    )
    with writer:
        for kind in BEHAVIOURS:
            if counts[kind] == 0:
                continue
            task_index = np.arange(counts[kind]) % len(tasks)
            episodes = _play(
                [tasks[i] for i in task_index], kind, noise_prob, derive_seed(seed, f"{NAME}:{kind}"), max_steps
            )
            for episode, index in zip(episodes, task_index, strict=True):
                writer.add_episode(episode, {"task_index": int(index), "behaviour": kind})
        return writer.close()


def _play(tasks: list[Any], kind: str, noise_prob: float, seed: int, max_steps: int | None) -> list[dict[str, Any]]:
    """One episode of behaviour ``kind`` per task, played together; their streams, one dict per episode."""
    rng = np.random.default_rng(seed)
    vec = AvoidingVecEnv(tasks, max_steps)
    expert = AvoidingExpert()
    obs = vec.reset()
    expert.reset(vec, seed=seed)

    def decide(obs: np.ndarray) -> dict[str, np.ndarray]:
        action, _ = expert.act(obs)
        random_action = rng.uniform(-1.0, 1.0, action.shape).astype(np.float32)
        take_random = np.full(len(tasks), kind == "random") | (kind == "noisy") & (rng.random(len(tasks)) < noise_prob)
        action = np.where(take_random[:, None], random_action, action)
        return {"action": action, "expert": np.full(len(tasks), kind == "expert")}

    return play_episodes(vec, obs, decide)


def _report(results: dict[str, Any], plots: list[str]) -> str:
    config = results["config"]
    data = results["data"]
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        f"Avoiding, {config['train_starts']} training start states. Data (sparse success reward; the `expert` "
        "stream marks the expert's steps):",
        "",
        "| behaviour | episodes | steps | success of the episodes |",
        "|---|---|---|---|",
    ]
    for kind, facts in data["composition"].items():
        rate = format_metric(facts["success"]) if facts["success"] else "-"
        lines.append(f"| {kind} | {facts['episodes']} | {facts['steps']} | {rate} |")
    lines += [
        "",
        f"Noisy episodes take a uniform random action with probability {config['noise_prob']} per step; random "
        f"ones always. Expert steps: {data['expert_step_fraction']:.1%} of all; `bc_filtered` trains on the "
        f"{data['filtered_episodes']} successful episodes.",
        "",
        f"Success from {config['test_starts']} held-out start states (`test`), one deterministic rollout each, "
        "Wilson 95% intervals:",
        "",
        "| policy | test success |",
        "|---|---|",
    ]
    for key, splits in results["metrics"].items():
        lines.append(f"| {key} | {format_metric(splits['test']['success'])} |")
    for key, chosen in results.get("selection", {}).items():
        tried = ", ".join(f"{t}: {format_metric(v)}" for t, v in chosen["val_success"].items())
        lines += [
            "",
            f"`{key}`'s temperature {chosen['temperature']:g} was chosen by success on {config['val_starts']} "
            f"validation start states (apart from the test ones): {tried}.",
        ]
    lines += report_tail(results, plots)
    return "\n".join(lines)


def success_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(policy, test success)``."""
    return [(key, format_metric(splits["test"]["success"])) for key, splits in results["metrics"].items()]


__all__ = ["FULL", "KEYS", "NAME", "QUICK", "AvoidingMixedConfig", "run", "success_table", "write_mixture"]
