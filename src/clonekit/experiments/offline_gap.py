"""Experiment ``offline-gap``: the generalization gap of offline learners, training mazes vs unseen mazes
(issue 17 item 5).

Data, all on ``train_mazes`` training mazes (``maze_size`` square, discrete moves), in stated proportions:

* ``expert_episodes`` episodes of the BFS expert (shortest paths), marked by the per-step ``expert`` stream
  (1 on their steps, 0 elsewhere);
* ``noisy_episodes`` of the same expert whose move is replaced, at each step with probability ``noise_prob``,
  by a uniform random one (the expert replans from wherever it lands, so many still reach the goal, late);
* ``random_episodes`` of uniform random moves (most time out).

Episode ``k`` of each behaviour plays maze ``k % train_mazes`` from a random start cell. The reward is the
env's sparse success reward (1 on reaching the goal, else 0). Policy keys, every one on the same data:

* ``bc``: behaviour cloning (``bc``) on every episode;
* ``bc_filtered``: the same on the successful episodes only (the ``success`` filter of
  :mod:`clonekit.quality.curate`);
* ``iql``: discrete implicit Q-learning with the sparse reward (``gamma`` ``iql_gamma``, ``beta`` ``iql_beta``:
  on mazes one wasted move must cost visible value, see ``tests/test_offline_rl.py``);
* ``recoil``: :mod:`clonekit.policies.recoil` (discrete) with the ``expert`` marks, no reward;
* ``dt``: the Decision Transformer (discrete) conditioned on the best return in the data.

Splits per key: ``train`` (the training mazes, new random start cells) and ``test`` (``test_mazes`` unseen
mazes), metric ``success`` (95% intervals: cluster bootstrap over mazes, or Wilson when each maze is played
once). ``gap``: ``success_gap`` = train - test success, with a 95% interval from the bootstrap of the difference
of the two independent means (each split resampled by its own cluster bootstrap over mazes; train and test
mazes differ, so no pairing exists). Every stage is skipped or resumed when its output is already in ``OUT``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clonekit.config import check
from clonekit.data import Dataset, DatasetWriter, array_stream
from clonekit.data.spaces import space_to_json
from clonekit.envs import get_env_family
from clonekit.envs.maze import MazeVecEnv
from clonekit.errors import DatasetError
from clonekit.evaluation import rollout, split_tasks
from clonekit.evaluation.plots import plot_success_bars
from clonekit.evaluation.rollout import EpisodeResults
from clonekit.evaluation.stats import CONFIDENCE, format_metric, resample_weights, weighted_mean
from clonekit.experiments.common import (
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
from clonekit.experts.bfs import BFSExpert
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.seeding import derive_seed

NAME = "offline-gap"
KEYS = ("bc", "bc_filtered", "iql", "recoil", "dt")
# key -> (registered policy, training data: "all" | "filtered")
POLICY_OF_KEY = {
    "bc": ("bc", "all"),
    "bc_filtered": ("bc", "filtered"),
    "iql": ("iql", "all"),
    "recoil": ("recoil", "all"),
    "dt": ("dt", "all"),
}
BEHAVIOURS = ("expert", "noisy", "random")
SPLITS = ("train", "test")


@dataclass(frozen=True)
class OfflineGapConfig:
    """Settings of ``offline-gap``.

    Args:
        maze_size: Side of the square mazes.
        train_mazes: Training mazes (episode ``k`` of each behaviour plays maze ``k % train_mazes``).
        expert_episodes: Episodes of the BFS expert (marked ``expert``).
        noisy_episodes: Episodes of the expert with random moves mixed in (not marked).
        random_episodes: Episodes of uniform random moves (not marked).
        noise_prob: Per-step probability that a noisy episode takes a uniform random move.
        test_mazes: Unseen mazes of the ``test`` split.
        eval_episodes: Evaluation episodes per policy and split (from random start cells).
        policies: Policy keys to run, a subset of ``bc, bc_filtered, iql, recoil, dt``.
        steps: Gradient steps of every policy but ``dt``.
        batch_size: Transitions per gradient step.
        lr: Adam learning rate.
        hidden_sizes: MLP widths of every policy but ``dt`` (after the conv layers where the policy has them).
        iql_gamma: IQL's discount.
        iql_beta: IQL's advantage-weight inverse temperature.
        dt_steps: Gradient steps of the Decision Transformer.
        dt_batch_size: Windows of ``dt_context`` steps per Decision Transformer step.
        dt_context: Steps the Decision Transformer sees (its ``context_length``).
    """

    maze_size: int = 9
    train_mazes: int = 40
    expert_episodes: int = 80
    noisy_episodes: int = 160
    random_episodes: int = 160
    noise_prob: float = 0.3
    test_mazes: int = 100
    eval_episodes: int = 400
    policies: tuple[str, ...] = KEYS
    steps: int = 2000
    batch_size: int = 128
    lr: float = 1e-3
    hidden_sizes: tuple[int, ...] = (128,)
    iql_gamma: float = 0.9
    iql_beta: float = 10.0
    dt_steps: int = 1000
    dt_batch_size: int = 32
    dt_context: int = 10

    def __post_init__(self) -> None:
        check(self.maze_size >= 5, "maze_size", ">= 5", self.maze_size)
        for name in (
            "train_mazes",
            "expert_episodes",
            "test_mazes",
            "eval_episodes",
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
        check(0 < self.iql_gamma < 1, "iql_gamma", "in (0, 1)", self.iql_gamma)
        check(self.iql_beta >= 0, "iql_beta", ">= 0", self.iql_beta)


FULL = OfflineGapConfig()
QUICK = replace(
    FULL,
    maze_size=7,
    train_mazes=20,
    expert_episodes=30,
    noisy_episodes=60,
    random_episodes=60,
    test_mazes=30,
    eval_episodes=90,
    steps=400,
    hidden_sizes=(64,),
    batch_size=64,
    dt_steps=150,
)


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: OfflineGapConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``)."""
    config = config or (QUICK if quick else FULL)
    require_registered(config.policies, POLICY_OF_KEY)
    # Small networks: extra intra-op threads buy nothing and, on a busy machine, cost a lot.
    with torch_threads(1):
        return _run(out, seed, quick, show_progress, log, config)


def _run(out: Path, seed: int, quick: bool, show_progress: bool, log: Any, config: OfflineGapConfig) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    data = _datasets(out, config, seed)
    mixed = data["all"]
    composition = behaviour_composition(mixed, BEHAVIOURS, seed, log)

    family = get_env_family("maze")
    env_kwargs = dict(mixed.env["kwargs"])
    tasks = {split: split_tasks(mixed.env, split, seed, config.test_mazes) for split in SPLITS}
    metrics: dict[str, dict[str, Any]] = {}
    for key in config.policies:
        policy_name, source = POLICY_OF_KEY[key]
        run = out / "runs" / key
        policy = train_offline_key(
            config, key, policy_name, data[source], run, seed, _overrides(key, config), show_progress
        )
        episodes: dict[str, EpisodeResults] = {}
        for split in SPLITS:
            torch.manual_seed(derive_seed(seed, f"{NAME}:{key}:{split}"))  # any sampling noise of a policy
            episodes[split] = rollout(policy, family, tasks[split], config.eval_episodes, seed, env_kwargs)
        metrics[key] = {split: {"success": episodes[split].metrics(seed)["success"]} for split in SPLITS}
        metrics[key]["gap"] = {"success_gap": success_gap(episodes["train"], episodes["test"], seed)}
        log(
            f"  {key:12s} train {format_metric(metrics[key]['train']['success'])}, test "
            f"{format_metric(metrics[key]['test']['success'])}, gap {format_metric(metrics[key]['gap']['success_gap'])}"
        )

    results = {
        **results_head(NAME, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
        "data": {
            "composition": composition,
            "filtered_episodes": data["filtered"].num_episodes,
            "expert_step_fraction": composition["expert"]["steps"] / mixed.num_steps,
        },
    }
    atomic_write_json(out / "results.json", results)
    bars = {**results, "metrics": {k: {s: m[s] for s in SPLITS} for k, m in metrics.items()}}
    plots = ["success.png"] if plot_success_bars(bars, out / "success.png", metric="success") else []
    atomic_write_text(out / "report.md", _report(results, plots))
    return results


def success_gap(train_episodes: EpisodeResults, test_episodes: EpisodeResults, seed: int) -> dict[str, Any]:
    """Train - test success with a 95% percentile interval of the difference of two independent means, each
    resampled by its own cluster bootstrap over mazes (:func:`clonekit.evaluation.stats.resample_weights`)."""
    draws = []
    for split, part in (("train", train_episodes), ("test", test_episodes)):
        x = part.success.astype(np.float64)
        stat = weighted_mean(x)
        draws.append(np.concatenate([stat(w) for w in resample_weights(part.task_index, derive_seed(seed, split))]))
    alpha = (1 - CONFIDENCE) / 2
    lo, hi = np.quantile(draws[0] - draws[1], [alpha, 1 - alpha])
    return {
        "mean": float(train_episodes.success.mean() - test_episodes.success.mean()),
        "ci95": [float(lo), float(hi)],
        "n": int(train_episodes.success.size + test_episodes.success.size),
        "n_tasks": int(np.unique(train_episodes.task_index).size + np.unique(test_episodes.task_index).size),
        "method": "bootstrap_difference_of_independent_means",
    }


def _overrides(key: str, config: OfflineGapConfig) -> dict[str, Any]:
    """Policy config overrides of ``key``: the shared widths, and each method's own knobs."""
    widths = {"hidden_sizes": list(config.hidden_sizes)}
    if key == "iql":
        return {**widths, "gamma": config.iql_gamma, "beta": config.iql_beta}
    if key == "dt":
        return {"context_length": config.dt_context}
    return widths


def _datasets(out: Path, config: OfflineGapConfig, seed: int) -> dict[str, Dataset]:
    """``all`` (every episode, with the ``expert`` stream) and ``filtered`` (its successful episodes); written
    once, a rerun checks that they fit the settings."""
    root = out / "data"
    path = root / "all"
    counts = {"expert": config.expert_episodes, "noisy": config.noisy_episodes, "random": config.random_episodes}
    if path.exists():
        mixed = Dataset.open(path)
        recorded = mixed.extra.get("mixture", {})
        fits = (
            mixed.env.get("seed") == seed
            and len(mixed.env.get("tasks", [])) == config.train_mazes
            and mixed.env.get("kwargs", {}).get("size") == config.maze_size
            and recorded.get("episodes") == counts
            and recorded.get("noise_prob") == config.noise_prob
        )
        if not fits:
            raise DatasetError(f"{path}: exists but was written with other settings; use a fresh --out")
    else:
        mixed = write_maze_mixture(path, seed, config.maze_size, config.train_mazes, counts, config.noise_prob)
    filtered = successful_episodes(mixed, root / "filtered")
    return {"all": mixed, "filtered": filtered}


def write_maze_mixture(
    path: Path, seed: int, maze_size: int, train_mazes: int, counts: dict[str, int], noise_prob: float
) -> Dataset:
    """Write ``counts[kind]`` episodes of each behaviour (``expert``, ``noisy``, ``random``) on ``train_mazes``
    training mazes drawn from ``seed``, with the 0/1 ``expert`` stream (1 on the expert episodes' steps) and
    episode info ``task_index`` and ``behaviour``; returns the dataset."""
    family = get_env_family("maze")
    env_kwargs = {"size": maze_size}
    tasks = family.sample_tasks(seed, "train", train_mazes, set(), **env_kwargs)
    obs_space, act_space = family.spaces(**env_kwargs)
    assert obs_space.shape is not None
    streams = [
        array_stream("obs", "uint8", obs_space.shape, "observation"),
        array_stream("action", "int64", (), "move"),
        array_stream("reward", "float32", ()),
        array_stream("terminated", "bool", ()),
        array_stream("truncated", "bool", ()),
        array_stream("expert", "int64", (), "1 on the steps of the expert's episodes, else 0"),
    ]
    env = {
        "id": family.name,
        "kwargs": env_kwargs,
        "expert": "bfs",
        "seed": seed,
        "tasks": [family.task_to_json(t) for t in tasks],
    }
    writer = DatasetWriter(
        path,
        streams,
        spaces={"observation": space_to_json(obs_space), "action": space_to_json(act_space)},
        env=env,
        episode_info=("task_index", "behaviour"),
        extra={"mixture": {"episodes": dict(counts), "noise_prob": noise_prob}},
    )
    with writer:
        for kind in BEHAVIOURS:
            if counts[kind] == 0:
                continue
            task_index = np.arange(counts[kind]) % len(tasks)
            episodes = _play([tasks[i] for i in task_index], kind, noise_prob, derive_seed(seed, f"{NAME}:{kind}"))
            for episode, index in zip(episodes, task_index, strict=True):
                writer.add_episode(episode, {"task_index": int(index), "behaviour": kind})
        return writer.close()


def _play(tasks: list[Any], kind: str, noise_prob: float, seed: int) -> list[dict[str, np.ndarray]]:
    """One episode of behaviour ``kind`` per maze, played together; their streams, one dict per episode."""
    rng = np.random.default_rng(seed)
    vec = MazeVecEnv(tasks)
    obs = vec.reset(seed=int(rng.integers(2**31)))
    expert = BFSExpert()
    expert.reset(vec)

    def decide(obs: np.ndarray) -> dict[str, np.ndarray]:
        action = expert.act(obs)[0].astype(np.int64)
        random_action = rng.integers(0, 4, len(tasks))
        take_random = np.full(len(tasks), kind == "random") | (kind == "noisy") & (rng.random(len(tasks)) < noise_prob)
        action = np.where(take_random, random_action, action)
        return {"action": action, "expert": np.full(len(tasks), int(kind == "expert"))}

    return play_episodes(vec, obs, decide)


def _report(results: dict[str, Any], plots: list[str]) -> str:
    config = results["config"]
    data = results["data"]
    size = config["maze_size"]
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        f"Maze, {config['train_mazes']} training mazes ({size}x{size}). Data (sparse success reward; the `expert` "
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
        f"Noisy episodes take a uniform random move with probability {config['noise_prob']} per step; random "
        f"ones always. Expert steps: {data['expert_step_fraction']:.1%} of all; `bc_filtered` trains on the "
        f"{data['filtered_episodes']} successful episodes.",
        "",
        f"Success over {config['eval_episodes']} episodes from random start cells on the training mazes (`train`) "
        f"and on {config['test_mazes']} unseen mazes (`test`); 95% intervals: cluster bootstrap over mazes. Gap: "
        "train - test, 95% interval from the bootstrap of the difference of the two independent means:",
        "",
        "| policy | train success | test (unseen) success | gap (train - test) |",
        "|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in success_table(results)]
    lines += report_tail(results, plots)
    return "\n".join(lines)


def success_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(policy, train success, test success, gap)``."""
    return [
        (
            key,
            format_metric(splits["train"]["success"]),
            format_metric(splits["test"]["success"]),
            format_metric(splits["gap"]["success_gap"]),
        )
        for key, splits in results["metrics"].items()
    ]


__all__ = [
    "FULL",
    "KEYS",
    "NAME",
    "QUICK",
    "OfflineGapConfig",
    "run",
    "success_gap",
    "success_table",
    "write_maze_mixture",
]
