"""Experiment ``arm-retarget``: do demonstrations of another body help, once retargeted?

Two embodiments of the planar arm (:mod:`clonekit.envs.arm`): a *source* arm (2 links) with many
demonstrations and a *target* arm (3 links) with few. Both come from the damped least-squares reaching expert
(:mod:`clonekit.experts.arm`), each on its own training tasks. The source demonstrations are retargeted to
the target arm by a kinematic map (:mod:`clonekit.quality.retarget`: the target follows the source's
end-effector path; no target expert involved). With the same network, head (``mse``) and gradient steps:

* ``bc_target_only``: ``continuous_bc`` on the target demonstrations alone;
* ``bc_retargeted``: ``continuous_bc`` on the same target demonstrations plus the retargeted source ones.

Both are evaluated on ``test_tasks`` unseen target tasks (start configuration and target drawn from the test
stream of ``--seed``). Policy and tasks are deterministic, so each task is played once and the success interval
is a Wilson interval over tasks. The headline row uses ``target_episodes``; the sweep repeats the comparison
at every count in ``sweep_target_episodes``. Everything is derived from ``--seed``; stages already in ``OUT``
are reused.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clonekit.config import check
from clonekit.data import Dataset, DatasetWriter
from clonekit.envs import get_env_family
from clonekit.envs.arm import ArmFamily, ArmTask
from clonekit.evaluation import rollout
from clonekit.evaluation.plots import _pyplot, save_figure
from clonekit.evaluation.stats import format_metric, summarize
from clonekit.experiments.common import play_episodes, report_tail, results_head, torch_threads, train_offline_key
from clonekit.experts.arm import ArmReachExpert
from clonekit.experts.collect import collect
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.policies import Policy
from clonekit.quality.retarget import retarget, source_paths
from clonekit.seeding import derive_seed

NAME = "arm-retarget"
KEYS = ("bc_target_only", "bc_retargeted")


@dataclass(frozen=True)
class ArmRetargetConfig:
    """Settings of ``arm-retarget``.

    Args:
        source_links: Links of the source arm (many demonstrations).
        target_links: Links of the target arm (few demonstrations; the arm evaluated).
        source_episodes: Source demonstrations, one per training task of the source arm.
        target_episodes: Target demonstrations of the headline comparison (the ``metrics`` block).
        sweep_target_episodes: Target demonstration counts of the sweep (each a comparison of its own; the
            headline count is added when missing).
        test_tasks: Unseen target tasks each policy is evaluated on (one episode each).
        steps: Gradient steps of every policy.
        batch_size: Transitions per gradient step.
        lr: Adam learning rate.
        hidden_sizes: Widths of the MLP encoder of every policy.
    """

    source_links: int = 2
    target_links: int = 3
    source_episodes: int = 400
    target_episodes: int = 10
    sweep_target_episodes: tuple[int, ...] = (5, 10, 20, 40, 80)
    test_tasks: int = 200
    steps: int = 4000
    batch_size: int = 256
    lr: float = 1e-3
    hidden_sizes: tuple[int, ...] = (256, 256)

    def __post_init__(self) -> None:
        for name in ("source_links", "target_links"):
            check(2 <= getattr(self, name) <= 6, name, "an integer in [2, 6]", getattr(self, name))
        for name in ("source_episodes", "target_episodes", "test_tasks", "steps", "batch_size"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        counts = self.sweep_target_episodes
        check(all(n >= 1 for n in counts), "sweep_target_episodes", "counts >= 1", counts)
        check(self.lr > 0, "lr", "> 0", self.lr)
        check(len(self.hidden_sizes) >= 1, "hidden_sizes", "at least one width", self.hidden_sizes)

    @property
    def counts(self) -> list[int]:
        """Every target demonstration count trained, ascending (sweep plus headline)."""
        return sorted({*self.sweep_target_episodes, self.target_episodes})


FULL = ArmRetargetConfig()
QUICK = replace(FULL, source_episodes=150, sweep_target_episodes=(), test_tasks=60, steps=1500, hidden_sizes=(128, 128))


def write_union(path: Path, parts: list[tuple[str, Dataset]]) -> Dataset:
    """The episodes of every dataset of ``parts`` (``(origin, dataset)``, same env family and options) in order,
    with their tasks, as one dataset at ``path`` (opened as it is when it exists). Episode info: ``task_index``
    into the union's tasks and ``origin``."""
    if path.exists():
        return Dataset.open(path)
    first = parts[0][1]
    names = ("obs", "action", "reward", "terminated", "truncated")
    streams = [first.streams[name] for name in names]
    tasks: list[Any] = []
    writer = DatasetWriter(
        path, streams, spaces=first.spaces, env=first.env, episode_info=("task_index", "origin"), extra={}
    )
    with writer:
        for origin, part in parts:
            offset = len(tasks)
            tasks += part.env["tasks"]
            task_index = np.asarray(part.episode_info("task_index"))
            for i in range(part.num_episodes):
                episode = part.episode(i)
                info: dict[str, int | str] = {"task_index": offset + int(task_index[i]), "origin": origin}
                writer.add_episode({n: episode[n] for n in names}, info)
        writer.env = {**first.env, "tasks": tasks}
        return writer.close()


def _demos(path: Path, links: int, episodes: int, seed: int, show: bool) -> Dataset:
    """Expert demonstrations of the ``links``-link arm, one per training task drawn from ``seed`` (reused when
    ``path`` exists). Tasks come from one stream, so the first ``n`` tasks are the same for every count."""
    if path.exists():
        return Dataset.open(path)
    kwargs = {"links": links}
    return collect(
        "arm",
        "reach",
        episodes=episodes,
        num_tasks=episodes,
        seed=seed,
        out=path,
        env_kwargs=kwargs,
        show_progress=show,
    )


def _datasets(
    out: Path, config: ArmRetargetConfig, seed: int, show: bool
) -> tuple[Dataset, Dataset, dict[int, Dataset]]:
    """Source demonstrations, their retargeted copy and the target demonstrations per count (stages reused)."""
    data = out / "data"
    source = _demos(data / "source", config.source_links, config.source_episodes, seed, show)
    path = data / "retargeted"
    target_kwargs = {"links": config.target_links}
    ik_seed = derive_seed(seed, f"{NAME}:ik")
    retargeted = (
        Dataset.open(path) if path.exists() else retarget(source, "arm", target_kwargs, path, seed=ik_seed).dataset
    )
    targets = {n: _demos(data / f"target_{n}", config.target_links, n, seed, False) for n in config.counts}
    return source, retargeted, targets


def evaluate(policy: Policy, tasks: list[ArmTask], links: int, seed: int) -> dict[str, Any]:
    """Success of ``policy`` on ``tasks`` of the ``links``-link arm, one episode a task (Wilson interval)."""
    results = rollout(policy, get_env_family("arm"), tasks, len(tasks), seed, env_kwargs={"links": links})
    return summarize(results.success.astype(bool), seed, groups=results.task_index)


def expert_success(tasks: list[ArmTask], links: int, seed: int) -> dict[str, Any]:
    """Success of the reaching expert itself on ``tasks`` (the ceiling the policies are measured against)."""
    vec = ArmFamily().make_vec(tasks, links=links)
    expert = ArmReachExpert()
    expert.reset(vec)
    episodes = play_episodes(vec, vec.reset(), lambda obs: {"action": expert.act(obs)[0]})
    return summarize(np.array([ep["reward"].sum() > 0 for ep in episodes]), seed)


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: ArmRetargetConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``).

    ``config`` replaces the preset chosen by ``quick`` (``FULL`` or ``QUICK``).
    """
    config = config or (QUICK if quick else FULL)
    with torch_threads(1):  # small networks: extra intra-op threads buy nothing on a busy machine
        return _run(out, seed, quick, show_progress, log, config)


def _run(out: Path, seed: int, quick: bool, show: bool, log: Any, config: ArmRetargetConfig) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    source, retargeted, targets = _datasets(out, config, seed, show)
    errors = np.asarray(retargeted.episode_info("path_error"), dtype=np.float64)
    dropped = int(retargeted.extra["retarget"]["dropped"])
    log(
        f"{source.num_episodes} source ({config.source_links}-link) episodes -> {retargeted.num_episodes} "
        f"retargeted to {config.target_links} links ({dropped} dropped); end-effector distance from the source "
        f"path: mean {errors.mean():.4f}, max {errors.max():.4f}"
    )
    family = get_env_family("arm")
    assert isinstance(family, ArmFamily)
    target_kwargs = {"links": config.target_links}
    seen = {family.task_key(family.task_from_json(t, **target_kwargs)) for t in retargeted.env["tasks"]}
    seen |= {
        family.task_key(family.task_from_json(t, **target_kwargs)) for t in targets[max(config.counts)].env["tasks"]
    }
    tasks = family.sample_tasks(seed, "test", config.test_tasks, seen, **target_kwargs)
    overrides = {"head": "mse", "hidden_sizes": list(config.hidden_sizes)}
    sweep: dict[str, dict[str, Any]] = {}
    for n in config.counts:
        union = write_union(out / "data" / f"union_{n}", [("target", targets[n]), ("retargeted", retargeted)])
        data_of = {"bc_target_only": targets[n], "bc_retargeted": union}
        sweep[str(n)] = {}
        for key in KEYS:
            run_dir = out / "runs" / f"target_{n}" / key
            policy = train_offline_key(config, key, "continuous_bc", data_of[key], run_dir, seed, overrides, show)
            sweep[str(n)][key] = evaluate(policy, tasks, config.target_links, seed)
        log(f"  {n:3d} target demos: " + "  ".join(f"{key} {format_metric(sweep[str(n)][key])}" for key in KEYS))
    headline = sweep[str(config.target_episodes)]
    results = {
        **results_head(NAME, seed, quick, config, torch.get_num_threads()),
        "metrics": {key: {"test": {"success": headline[key]}} for key in KEYS},
        "sweep": sweep,
        "expert_test_success": expert_success(tasks, config.target_links, seed),
        "retarget": {
            "source_episodes": source.num_episodes,
            "retargeted_episodes": retargeted.num_episodes,
            "dropped": dropped,
            "path_error_mean": float(errors.mean()),
            "path_error_max": float(errors.max()),
            "retargeted_steps": retargeted.num_steps,
        },
    }
    atomic_write_json(out / "results.json", results)
    plots = ["arm_retarget.png"] if _plot(results, source, retargeted, out / "arm_retarget.png") else []
    atomic_write_text(out / "report.md", _report(results, plots))
    return results


def _plot(results: dict[str, Any], source: Dataset, retargeted: Dataset, path: Path) -> bool:
    """Success against target demonstrations (both keys, 95% CI), and a few source paths beside their
    retargeted end-effector paths; False without matplotlib."""
    plt = _pyplot()
    if plt is None:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    counts = sorted(int(n) for n in results["sweep"])
    for key, colour in zip(KEYS, ("tab:gray", "tab:blue"), strict=True):
        cells = [results["sweep"][str(n)][key] for n in counts]
        means = np.array([c["mean"] for c in cells])
        lows = means - np.array([c["ci95"][0] for c in cells])
        highs = np.array([c["ci95"][1] for c in cells]) - means
        left.errorbar(counts, means, yerr=[lows, highs], marker="o", capsize=3, color=colour, label=key)
    expert = results["expert_test_success"]["mean"]
    left.axhline(expert, color="tab:green", linestyle=":", label=f"expert ({expert:.2f})")
    left.set_xscale("log")
    left.minorticks_off()  # the log axis' own minor labels (6x10^0, ...) would crowd the counts
    left.set_xticks(counts, [str(n) for n in counts])
    left.set_xlabel("target-arm demonstrations")
    left.set_ylabel("test success (95% CI)")
    left.set_ylim(0, 1.05)
    left.grid(alpha=0.3)
    left.legend()
    left.set_title("unseen target-arm tasks")
    paths = source_paths(source)
    shown = np.asarray(retargeted.episode_info("source_episode"))[:6]
    for k, i in enumerate(shown):
        colour = f"C{k}"
        right.plot(paths[i][:, 0], paths[i][:, 1], color=colour, linewidth=3, alpha=0.35)
        ee = np.asarray(retargeted.episode(k)["obs"])[:, -2:]
        right.plot(ee[:, 0], ee[:, 1], color=colour, linewidth=1, marker=".", markersize=3)
        right.plot(*paths[i][-1], marker="x", color=colour)
    right.set_aspect("equal")
    right.set_title("source paths (wide) and retargeted end effector (dots)")
    right.grid(alpha=0.3)
    fig.suptitle(f"{results['experiment']} (seed {results['seed']})")
    save_figure(fig, path)
    return True


def _report(results: dict[str, Any], plots: list[str]) -> str:
    config, facts = results["config"], results["retarget"]
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        f"{facts['source_episodes']} demonstrations of a {config['source_links']}-link arm retargeted to a "
        f"{config['target_links']}-link arm by following their end-effector paths ({facts['retargeted_episodes']} "
        f"kept, {facts['dropped']} dropped; end-effector distance from the source path: mean "
        f"{facts['path_error_mean']:.4f}, max {facts['path_error_max']:.4f}, reach 1).",
        "",
        f"Success on {config['test_tasks']} unseen {config['target_links']}-link tasks, one episode each (Wilson "
        "95% intervals). `bc_target_only`: `continuous_bc` on the target demonstrations; `bc_retargeted`: the same "
        f"plus the retargeted ones; {config['steps']} gradient steps each. Expert on the same tasks: "
        f"{format_metric(results['expert_test_success'])}.",
        "",
        "| target demos | bc_target_only | bc_retargeted |",
        "|---|---|---|",
    ]
    for n, cells in sorted(results["sweep"].items(), key=lambda item: int(item[0])):
        mark = " (headline)" if int(n) == config["target_episodes"] else ""
        lines.append(
            f"| {n}{mark} | {format_metric(cells['bc_target_only'])} | {format_metric(cells['bc_retargeted'])} |"
        )
    lines += report_tail(results, plots)
    return "\n".join(lines)


def success_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(policy, test success)`` of the headline comparison."""
    return [(key, format_metric(splits["test"]["success"])) for key, splits in results["metrics"].items()]


__all__ = ["FULL", "KEYS", "NAME", "QUICK", "ArmRetargetConfig", "evaluate", "run", "success_table", "write_union"]
