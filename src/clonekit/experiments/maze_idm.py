"""Experiment ``maze-idm``: inverse-dynamics labelling (VPT) of a large observation-only maze dataset.

BFS-expert episodes on ``train_mazes`` mazes are split in two: the first ``labelled_episodes`` keep their
actions (the small labelled set), the other ``unlabelled_episodes`` lose them (the large observation-only
set, :mod:`clonekit.data.observation_only`). An inverse dynamics model (``idm``, trained on the labelled set
only) labels the large set (:mod:`clonekit.policies.idm.label`). Three BC policies, same settings:

* ``bc_true``: on the large set with its true (expert) actions, the ceiling;
* ``bc_idm``: on the large set with the IDM's labels (same observations as ``bc_true``, only labels differ);
* ``bc_small``: on the labelled set only, what one can do without labelling.

Split ``test``: ``test_mazes`` unseen mazes, metric ``success`` (95% intervals clustered by maze). Key
``idm``, split ``unlabelled``: ``label_accuracy`` (IDM labels against the true actions, steps clustered by
maze), and the same on the steps whose observation window shows the agent move (``label_accuracy_moved``)
and on those where it does not (``label_accuracy_unchanged``): the dataset stores no observation after an
episode's last action, so the last step's window repeats its observation, as a move into a wall would. The
expert never walks into a wall; ``wall_bump_consistent`` probes what the IDM would answer if it had: for each
unlabelled state next to a wall it gets the unchanged window ``(o_t, o_t)`` and counts as consistent when its
label is one of the moves a wall blocks there (``wall_bump_chance``: what a uniform guess would score).

Every stage writes into ``OUT`` and is skipped or resumed when its output is already there.
"""

from __future__ import annotations

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
from clonekit.envs.maze import AGENT, MOVES, WALL
from clonekit.errors import DatasetError
from clonekit.evaluation import rollout, split_tasks
from clonekit.evaluation.plots import _pyplot, save_figure
from clonekit.evaluation.stats import format_metric, summarize
from clonekit.experiments.common import collected_once, report_tail, results_head
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.policies.idm import InverseDynamicsModel
from clonekit.policies.idm.label import label_dataset
from clonekit.quality.subset import write_subset
from clonekit.train import TrainConfig, train

NAME = "maze-idm"
BC_KEYS = ("bc_true", "bc_idm", "bc_small")


@dataclass(frozen=True)
class MazeIDMConfig:
    """Settings of ``maze-idm``.

    Args:
        maze_size: Side of the square mazes.
        train_mazes: Mazes the expert episodes are played on (episode ``k`` on maze ``k % train_mazes``).
        labelled_episodes: Expert episodes that keep their actions (the IDM's training data, ``bc_small``'s).
        unlabelled_episodes: Expert episodes whose actions are dropped (labelled by the IDM).
        test_mazes: Unseen mazes of the ``test`` split.
        eval_episodes: Evaluation episodes per policy.
        idm_steps: Gradient steps of the inverse dynamics model.
        bc_steps: Gradient steps of every BC policy.
        hidden_sizes: BC's MLP widths after its conv layers.
        batch_size: Transitions per gradient step (IDM and BC).
        lr: Adam learning rate.
    """

    maze_size: int = 9
    train_mazes: int = 400
    labelled_episodes: int = 40
    unlabelled_episodes: int = 400
    test_mazes: int = 100
    eval_episodes: int = 400
    idm_steps: int = 1000
    bc_steps: int = 2000
    hidden_sizes: tuple[int, ...] = (128,)
    batch_size: int = 128
    lr: float = 1e-3

    def __post_init__(self) -> None:
        check(self.maze_size >= 5, "maze_size", ">= 5", self.maze_size)
        for name in (
            "train_mazes",
            "labelled_episodes",
            "unlabelled_episodes",
            "test_mazes",
            "eval_episodes",
            "idm_steps",
            "bc_steps",
            "batch_size",
        ):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check(len(self.hidden_sizes) >= 1, "hidden_sizes", "at least one width", self.hidden_sizes)
        check(self.lr > 0, "lr", "> 0", self.lr)


FULL = MazeIDMConfig()
QUICK = replace(
    FULL,
    maze_size=7,
    train_mazes=60,
    labelled_episodes=8,
    unlabelled_episodes=80,
    test_mazes=30,
    eval_episodes=90,
    idm_steps=300,
    bc_steps=300,
    hidden_sizes=(64,),
    batch_size=64,
)


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: MazeIDMConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``)."""
    config = config or (QUICK if quick else FULL)
    out.mkdir(parents=True, exist_ok=True)
    data = _datasets(out, config, seed)
    log(
        f"labelled: {data['labelled'].num_episodes} episodes, {data['labelled'].num_steps} steps; unlabelled: "
        f"{data['unlabelled'].num_episodes} episodes, {data['unlabelled'].num_steps} steps"
    )

    def train_config(steps: int) -> TrainConfig:
        return TrainConfig(
            steps=steps,
            batch_size=config.batch_size,
            lr=config.lr,
            seed=seed,
            checkpoint_every=max(steps // 2, 1),
            keep_checkpoints=1,
            tensorboard=False,
            val_fraction=0.0,
        )

    idm = train(
        "idm",
        data["labelled"],
        out / "runs" / "idm",
        train_config(config.idm_steps),
        resume=True,
        same_settings=True,
        show_progress=show_progress,
    )
    assert isinstance(idm, InverseDynamicsModel)
    path = out / "data" / "idm_labelled"
    labelled_by_idm = (
        Dataset.open(path) if path.exists() else label_dataset(data["unlabelled"], out / "runs" / "idm", path)
    )
    idm_metrics = _label_metrics(idm, data["unlabelled"], labelled_by_idm, data["true"], seed)
    log(f"  idm label accuracy {format_metric(idm_metrics['label_accuracy'])}")

    family = get_env_family("maze")
    env_kwargs = dict(data["true"].env["kwargs"])
    tasks = split_tasks(data["true"].env, "test", seed, config.test_mazes)
    metrics: dict[str, dict[str, Any]] = {"idm": {"unlabelled": idm_metrics}}
    sources = {"bc_true": data["true"], "bc_idm": labelled_by_idm, "bc_small": data["labelled"]}
    for key in BC_KEYS:
        train(
            "bc",
            sources[key],
            out / "runs" / key,
            train_config(config.bc_steps),
            policy_overrides={"hidden_sizes": list(config.hidden_sizes)},
            resume=True,
            same_settings=True,
            show_progress=show_progress,
        )
        policy = load_policy(out / "runs" / key)
        episodes = rollout(policy, family, tasks, config.eval_episodes, seed, env_kwargs)
        metrics[key] = {"test": {"success": episodes.metrics(seed)["success"]}}
        log(f"  {key:8s} test success {format_metric(metrics[key]['test']['success'])}")

    results = {
        **results_head(NAME, seed, quick, config, torch.get_num_threads()),
        "metrics": metrics,
        "data": {
            name: {"episodes": dataset.num_episodes, "steps": dataset.num_steps}
            for name, dataset in (("labelled", data["labelled"]), ("unlabelled", data["unlabelled"]))
        },
    }
    atomic_write_json(out / "results.json", results)
    plots = ["maze_idm.png"] if _plot(results, out / "maze_idm.png") else []
    atomic_write_text(out / "report.md", _report(results, plots))
    return results


def _datasets(out: Path, config: MazeIDMConfig, seed: int) -> dict[str, Dataset]:
    """``labelled`` (first episodes, with actions), ``true`` (the others, with actions) and ``unlabelled`` (the
    same others without actions); collected once, a rerun checks they fit the settings."""
    root = out / "data"
    path = root / "expert"
    episodes = config.labelled_episodes + config.unlabelled_episodes
    expert = collected_once(
        path,
        "maze",
        "bfs",
        seed=seed,
        episodes=episodes,
        num_tasks=config.train_mazes,
        env_kwargs={"size": config.maze_size},
        show_progress=False,
    )
    if expert.num_episodes != episodes:  # the BFS expert never fails, so no episode should be skipped
        raise DatasetError(f"{path}: expected {episodes} expert episodes, found {expert.num_episodes}")
    first = list(range(config.labelled_episodes))
    rest = list(range(config.labelled_episodes, episodes))
    labelled = write_subset(expert, root / "labelled", first, f"first {len(first)} episodes")
    true = write_subset(expert, root / "true", rest, f"episodes {len(first)}..{episodes - 1}")
    unlabelled_path = root / "unlabelled"
    unlabelled = (
        Dataset.open(unlabelled_path)
        if unlabelled_path.exists()
        else write_observation_only(true, unlabelled_path, drop=("procedure",))
    )
    return {"labelled": labelled, "true": true, "unlabelled": unlabelled}


def _label_metrics(
    idm: InverseDynamicsModel, unlabelled: Dataset, labelled_by_idm: Dataset, true: Dataset, seed: int
) -> dict[str, Any]:
    """``label_accuracy`` (overall, moved, unchanged) clustered by maze, and the wall-bump probe."""
    predicted = np.asarray(labelled_by_idm.column("action"))
    actual = np.asarray(true.column("action"))
    mazes = np.repeat(np.asarray(true.episode_info("task_index")), true.episode_lengths)
    obs = np.asarray(unlabelled.column("obs"))
    last = np.zeros(len(obs), dtype=bool)
    last[unlabelled.episode_starts + unlabelled.episode_lengths - 1] = True
    following = np.roll(obs, -1, axis=0)
    # The window (o_t, o_{t+1}) is unchanged where the agent did not move and, since the dataset holds no
    # observation after an episode's last action, at every last step (its window repeats o_t).
    unchanged = last | (following == obs).reshape(len(obs), -1).all(axis=1)
    correct = predicted == actual
    metrics: dict[str, Any] = {
        "label_accuracy": summarize(correct, seed, groups=mazes),
        "label_accuracy_moved": summarize(correct[~unchanged], seed, groups=mazes[~unchanged]),
        "label_accuracy_unchanged": summarize(correct[unchanged], seed, groups=mazes[unchanged]),
        "unchanged_fraction": float(unchanged.mean()),
        "unchanged_last_step_fraction": float((unchanged & last).sum() / max(unchanged.sum(), 1)),
    }
    metrics |= _wall_bump_probe(idm, obs, mazes, seed)
    return metrics


def _wall_bump_probe(idm: InverseDynamicsModel, obs: np.ndarray, mazes: np.ndarray, seed: int) -> dict[str, Any]:
    """What the IDM labels an unchanged window ``(o_t, o_t)`` of a state next to a wall, where only the moves
    into a wall leave the observation unchanged."""
    agents = np.argwhere(obs[:, AGENT] == 1)  # (N, 3): step, row, col (one agent cell per step)
    steps, rows, cols = agents[:, 0], agents[:, 1], agents[:, 2]
    blocked = np.stack([obs[steps, WALL, rows + dr, cols + dc] == 1 for dr, dc in MOVES], axis=1)  # (N, 4)
    near_wall = blocked.any(axis=1)
    states = obs[steps[near_wall]]
    windows = torch.from_numpy(np.stack([states, states], axis=1))
    labels = idm.predict(windows).numpy()
    consistent = blocked[near_wall][np.arange(len(labels)), labels]
    return {
        "wall_bump_consistent": summarize(consistent, seed, groups=mazes[steps[near_wall]]),
        "wall_bump_chance": float(blocked[near_wall].mean()),
        "wall_bump_labels": np.bincount(labels, minlength=len(MOVES)).tolist(),
    }


def _plot(results: dict[str, Any], path: Path) -> bool:
    plt = _pyplot()
    if plt is None:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    cells = [results["metrics"][key]["test"]["success"] for key in BC_KEYS]
    x = np.arange(len(BC_KEYS))
    means = [c["mean"] for c in cells]
    left.bar(
        x,
        means,
        yerr=[[c["mean"] - c["ci95"][0] for c in cells], [c["ci95"][1] - c["mean"] for c in cells]],
        capsize=4,
        color=["#4c72b0", "#dd8452", "#8c8c8c"],
    )
    left.set_xticks(x, BC_KEYS)
    left.set_ylim(0, 1.05)
    left.set_ylabel("success on unseen mazes (95% CI)")
    left.set_title("BC on true, IDM and only the labelled actions")
    left.grid(axis="y", alpha=0.3)
    idm = results["metrics"]["idm"]["unlabelled"]
    names = ("label_accuracy", "label_accuracy_moved", "label_accuracy_unchanged", "wall_bump_consistent")
    short = ("all\nsteps", "agent\nmoved", "window\nunchanged", "wall-bump\nprobe")
    vals = [idm[n] for n in names]
    xr = np.arange(len(names))
    right.bar(
        xr,
        [v["mean"] for v in vals],
        yerr=[[v["mean"] - v["ci95"][0] for v in vals], [v["ci95"][1] - v["mean"] for v in vals]],
        capsize=4,
        color="#55a868",
    )
    right.axhline(idm["wall_bump_chance"], color="k", ls=":", lw=1, label="wall-bump chance")
    right.set_xticks(xr, short, fontsize=9)
    right.set_ylim(0, 1.05)
    right.set_title("IDM labels vs true actions")
    right.legend(loc="lower left", fontsize=8)
    right.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{results['experiment']} (seed {results['seed']})")
    save_figure(fig, path)
    return True


def _report(results: dict[str, Any], plots: list[str]) -> str:
    config = results["config"]
    data = results["data"]
    idm = results["metrics"]["idm"]["unlabelled"]
    share = data["labelled"]["episodes"] / (data["labelled"]["episodes"] + data["unlabelled"]["episodes"])
    lines = [
        f"# {NAME} (seed {results['seed']}{', quick' if results['quick'] else ''})",
        "",
        f"BFS-expert episodes on {config['train_mazes']} {config['maze_size']}x{config['maze_size']} mazes: "
        f"{data['labelled']['episodes']} keep their actions ({data['labelled']['steps']} steps, {share:.1%} of the",
        f"episodes), {data['unlabelled']['episodes']} lose them ({data['unlabelled']['steps']} steps). The inverse "
        "dynamics model (`idm`), trained on the labelled episodes only, labels the others; `bc_true` trains on",
        "them with the expert's actions, `bc_idm` with the IDM's, `bc_small` on the labelled episodes only.",
        "Success: greedy policy on unseen mazes from random start cells; 95% intervals are a cluster bootstrap",
        "over mazes. `n=E/M tasks`: E episodes (or steps) on M mazes.",
        "",
        "| policy | test (unseen mazes) success |",
        "|---|---|",
    ]
    for key in BC_KEYS:
        lines.append(f"| {key} | {format_metric(results['metrics'][key]['test']['success'])} |")
    lines += [
        "",
        "IDM labels against the expert's actions on the unlabelled set:",
        "",
        "| steps | label accuracy |",
        "|---|---|",
        f"| all | {format_metric(idm['label_accuracy'], 3)} |",
        f"| agent moved between o_t and o_t+1 | {format_metric(idm['label_accuracy_moved'], 3)} |",
        f"| observation unchanged | {format_metric(idm['label_accuracy_unchanged'], 3)} |",
        "",
        f"The observation window is unchanged on {idm['unchanged_fraction']:.1%} of the unlabelled steps, "
        f"{idm['unchanged_last_step_fraction']:.0%} of them",
        "last steps of episodes (the dataset stores no observation after the last action, so that window",
        "repeats o_t; the expert never walks into a wall). There the IDM must infer the move from o_t alone",
        "(the goal is next to the agent). A move into a wall leaves the agent in place too, and then",
        "(o_t, o_t+1) cannot tell which wall was hit: given the unchanged window of states next to a wall,",
        f"the IDM's label is a move a wall blocks there in {format_metric(idm['wall_bump_consistent'], 3)} of",
        f"them (a uniform guess: {idm['wall_bump_chance']:.2f}; labels up/down/left/right: {idm['wall_bump_labels']}).",
        "Such labels are consistent with the observations but not identifiable: data with wall bumps would get",
        "a guess there.",
    ]
    lines += report_tail(results, plots)
    return "\n".join(lines)


def success_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(key, test success or label accuracy)``."""
    rows: list[tuple[str, ...]] = [(key, format_metric(results["metrics"][key]["test"]["success"])) for key in BC_KEYS]
    rows.append(("idm", format_metric(results["metrics"]["idm"]["unlabelled"]["label_accuracy"], 3)))
    return rows


__all__ = ["BC_KEYS", "FULL", "NAME", "QUICK", "MazeIDMConfig", "run", "success_table"]
