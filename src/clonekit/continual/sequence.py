"""Continual offline learning: one learner trained on a sequence of offline tasks, task after task.

Stage ``k`` trains the policy of stage ``k - 1`` further (its weights, normalization included; a fresh
optimizer) on task ``k``'s dataset plus a replay of earlier tasks (:func:`train_continual`):

* ``none``: plain fine-tuning, no replay (the policy forgets what the new data does not repeat);
* ``uniform``: a buffer of ``buffer_size`` transitions of the earlier tasks, drawn uniformly;
* ``oer``: the same buffer size, filled by OER's model-based experience selection
  (:func:`clonekit.continual.selection.model_based_order`): after a task's stage, a forward dynamics model
  (``dynamics``, trained by the one training loop on that task's data) rolls the just-trained policy out and
  the stored transitions nearest to its predicted trajectories are kept.

Simplifications against OER (Gai et al. 2023), said plainly: the learner is a behaviour-cloning policy
(e.g. ``bc``), not an offline RL actor-critic, so there is no Q-learning for replay to disturb and OER's *dual
behaviour cloning* (a second actor that clones the replay, kept apart from the Q-learned one) is not built:
the one network clones the new task and the replay together. What remains of that idea is the replay's
share of every batch (``replay_share``, through the training loop's ``weight`` sampling stream): a small buffer
is drawn as often as it needs to be, whatever its size against the new task's data. Replay keeps single
transitions, so a policy that reads windows of steps (frame stacks, chunks, recurrent memory) is refused.

Layout of a run directory ``OUT``: ``continual.json`` (settings, tasks, finished stages: acknowledged there
atomically), ``stage_K/`` (the training run of stage K), ``dynamics_K/`` (``oer``: the model of task K),
``replay-K.json`` (the order over task K's steps its buffer share is a prefix of) and ``data-K`` (the
current stage's training set: task K's episodes, then the replay as one-step episodes, with a ``weight``
stream and the episode info ``continual_task``). A rerun of the same call continues at the first unfinished
step (training resumes exactly; selections and datasets are seeded), so a run killed between or inside
stages ends with the same weights as one never interrupted.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from clonekit.checkpoint import CONFIG_FILE, MODEL_FILE, load_policy, load_run_config, read_json
from clonekit.config import check, check_same_config, config_to_json
from clonekit.continual.selection import buffer_shares, model_based_order, rollout_starts, uniform_order
from clonekit.data import Dataset, DatasetWriter, array_stream
from clonekit.errors import CheckpointError, ConfigError, DatasetError
from clonekit.io import acknowledge_dataset, atomic_write_json, make_temp_dir, remove_stale_datasets
from clonekit.policies import Policy, build_policy, policy_classes
from clonekit.policies.dynamics import ForwardDynamicsModel
from clonekit.seeding import derive_seed
from clonekit.train import TrainConfig, policy_config_for, train

STATE_FILE = "continual.json"
STATE_FORMAT = "clonekit-continual/1"
REPLAYS = ("none", "uniform", "oer")
BASE_STREAMS = ("obs", "action", "reward", "terminated", "truncated")

# hook(stage, event) is called at "trained", "selected" and "done" of every stage (tests kill runs there).
StageHook = Callable[[int, str], None]


@dataclass(frozen=True)
class ContinualConfig:
    """Settings of a continual offline run (see the module docstring).

    Args:
        replay: ``"none"`` (fine-tuning), ``"uniform"`` or ``"oer"`` (model-based experience selection).
        buffer_size: Transitions of earlier tasks the replay keeps, in all (equal shares per earlier task).
        replay_share: Fraction of every training batch drawn from the replay (when there is one); the rest comes
            from the current task. ``None``: every stored step equally likely (the replay's share is then its
            share of the steps).
        stage_steps: Gradient steps per stage (task).
        model_steps: ``oer``: gradient steps of each task's forward dynamics model.
        model_overrides: ``oer``: config overrides of the dynamics model (e.g. ``{"conv_channels": [32, 32]}``).
        rollout_starts: ``oer``: model rollouts per task, from the episodes' first steps (then random steps).
        rollout_horizon: ``oer``: the longest model rollout, in steps.
    """

    replay: str = "oer"
    buffer_size: int = 1000
    replay_share: float | None = 0.5
    stage_steps: int = 2000
    model_steps: int = 1000
    model_overrides: dict[str, Any] | None = None
    rollout_starts: int = 256
    rollout_horizon: int = 64

    def __post_init__(self) -> None:
        check(self.replay in REPLAYS, "replay", f"one of {list(REPLAYS)}", self.replay)
        check(self.buffer_size >= 1, "buffer_size", ">= 1", self.buffer_size)
        share = self.replay_share
        check(share is None or (math.isfinite(share) and 0 < share < 1), "replay_share", "null or in (0, 1)", share)
        check(self.stage_steps >= 1, "stage_steps", ">= 1", self.stage_steps)
        check(self.model_steps >= 1, "model_steps", ">= 1", self.model_steps)
        check(self.rollout_starts >= 1, "rollout_starts", ">= 1", self.rollout_starts)
        check(self.rollout_horizon >= 1, "rollout_horizon", ">= 1", self.rollout_horizon)


@dataclass
class ContinualRun:
    """A finished continual run: its directory, tasks and per-stage records (replay counts per earlier task)."""

    path: Path
    tasks: list[Dataset]
    stages: list[dict[str, Any]]

    def stage_dir(self, stage: int) -> Path:
        """The training run of stage ``stage`` (0-based: stage ``k`` learned task ``k``)."""
        return self.path / f"stage_{stage}"

    def policy(self, stage: int) -> Policy:
        """The policy after stage ``stage``."""
        return load_policy(self.stage_dir(stage))


def train_continual(
    policy: str,
    tasks: Sequence[str | Path | Dataset],
    out: str | Path,
    config: ContinualConfig | None = None,
    train_config: TrainConfig | None = None,
    policy_overrides: dict[str, Any] | None = None,
    seed: int = 0,
    show_progress: bool = False,
    hook: StageHook | None = None,
    first_stage: str | Path | None = None,
) -> ContinualRun:
    """Train ``policy`` on the offline ``tasks`` (datasets, in order) one stage each, into ``out``.

    ``train_config`` holds the training loop's settings of every stage (its ``steps``, ``seed`` and
    ``sample_weights`` are set per stage: ``config.stage_steps``, a seed derived from ``seed`` and the stage, and
    the replay's weights). An existing ``out`` continues when started with the same policy, tasks, seed and
    settings; otherwise :class:`CheckpointError`. See the module docstring.

    ``first_stage``: a finished stage 0 of another run on the same first task with the same policy and stage
    settings (stage 0 has no replay, so every replay method trains the same one), copied in as this run's stage
    0 instead of training it again; a run whose settings differ is a :class:`ConfigError`.
    """
    config = config or ContinualConfig()
    base_train = train_config or TrainConfig()
    datasets = [t if isinstance(t, Dataset) else Dataset.open(t) for t in tasks]
    if len(datasets) < 2:
        raise ConfigError(f"tasks: expected a sequence of at least 2 datasets, got {len(datasets)}")
    _, policy_cls = policy_classes(policy)
    streams = tuple(dict.fromkeys((*BASE_STREAMS, *policy_cls.required_streams)))
    for dataset in datasets:
        dataset.require_streams(streams, f"continual learning of policy {policy!r}")
    _check_same_layout(datasets, streams)
    if config.replay != "none":
        probe = build_policy(policy, policy_config_for(policy, datasets[0], policy_overrides))
        if probe.sample_windows() or policy_cls.windows_from_episode_start:
            raise ConfigError(
                f"replay {config.replay!r}: policy {policy!r} reads windows of steps; replay keeps single "
                "transitions (use replay 'none' or a policy that acts on one observation)"
            )
    out_dir = Path(out)
    state = _open_run(out_dir, policy, datasets, seed, config, base_train, policy_overrides)
    for k, dataset in enumerate(datasets):
        if k < len(state["stages"]):
            continue
        data, counts = _training_set(out_dir, state, datasets, k, config, streams)
        stage_train = replace(
            base_train,
            steps=config.stage_steps,
            seed=derive_seed(seed, f"continual-train:{k}") % 2**31,
            sample_weights="weight" if counts else None,
        )
        if k == 0 and first_stage is not None:
            _adopt_first_stage(Path(first_stage), out_dir / "stage_0", policy, datasets[0], stage_train)
        trained = train(
            policy,
            data,
            out_dir / f"stage_{k}",
            stage_train,
            policy_overrides=policy_overrides,
            resume=True,
            show_progress=show_progress,
            init_from=out_dir / f"stage_{k - 1}" if k else None,
        )
        _call(hook, k, "trained")
        if config.replay != "none" and k < len(datasets) - 1:
            _select(out_dir, trained, dataset, k, config, base_train, seed, show_progress)
            _call(hook, k, "selected")
        record = {"stage": k, "replay": counts, "replay_steps": sum(counts.values())}
        new_state = {**state, "stages": [*state["stages"], record]}
        atomic_write_json(out_dir / STATE_FILE, new_state)
        state.update(new_state)
        _call(hook, k, "done")
    return ContinualRun(out_dir, datasets, list(state["stages"]))


def _call(hook: StageHook | None, stage: int, event: str) -> None:
    if hook is not None:
        hook(stage, event)


def _adopt_first_stage(source: Path, target: Path, policy: str, dataset: Dataset, stage_train: TrainConfig) -> None:
    """Copy the finished run ``source`` to ``target`` (via a temporary directory and a rename) after checking it
    trained ``policy`` on ``dataset`` with ``stage_train``; nothing to do when ``target`` has finished."""
    if (target / MODEL_FILE).is_file():
        return
    recorded = load_run_config(source)
    found = {
        "policy": recorded.get("policy"),
        "dataset": recorded.get("dataset", {}).get("fingerprint"),
        "train_config": recorded.get("train_config"),
    }
    wanted = {"policy": policy, "dataset": dataset.fingerprint, "train_config": config_to_json(stage_train)}
    for key, value in wanted.items():
        if found[key] != value:
            raise ConfigError(
                f"first_stage: {source / CONFIG_FILE} {key}: expected {value!r} (this run's stage 0), "
                f"found {found[key]!r}"
            )
    if not (source / MODEL_FILE).is_file():
        raise CheckpointError(f"first_stage: {source / MODEL_FILE}: final weights not found; the run has not finished")
    if target.exists():
        shutil.rmtree(target)  # an unfinished copy or training of stage 0: replaced by the finished one
    tmp = make_temp_dir(target.parent, ".stage_0.")
    shutil.copytree(source, tmp / "run")
    os.replace(tmp / "run", target)
    tmp.rmdir()


def _check_same_layout(datasets: list[Dataset], streams: tuple[str, ...]) -> None:
    """Every task must store the learner's streams alike (one network reads them all)."""
    first = datasets[0]
    for dataset in datasets[1:]:
        for name in streams:
            a, b = first.streams[name], dataset.streams[name]
            if (a.kind, a.dtype, a.shape) != (b.kind, b.dtype, b.shape):
                raise DatasetError(
                    f"{dataset.path}: stream {name!r} is {b.describe()}, but the first task ({first.path}) has "
                    f"{a.describe()}; every task of a continual run must store it alike"
                )


def _open_run(
    out_dir: Path,
    policy: str,
    datasets: list[Dataset],
    seed: int,
    config: ContinualConfig,
    train_config: TrainConfig,
    overrides: dict[str, Any] | None,
) -> dict[str, Any]:
    """The run's state from ``continual.json`` after checking it fits this call; a new run's state otherwise."""
    tasks = [{"path": str(d.path), "fingerprint": d.fingerprint} for d in datasets]
    path = out_dir / STATE_FILE
    if path.exists():
        state = read_json(path, "continual run")
        if state.get("format") != STATE_FORMAT:
            raise CheckpointError(f"{path}: format: expected {STATE_FORMAT!r}, found {state.get('format')!r}")
        check_same_config(config, state.get("config"), str(path))
        check_same_config(train_config, state.get("train_config"), str(path))
        recorded = {
            "policy": state.get("policy"),
            "seed": state.get("seed"),
            "policy_overrides": state.get("policy_overrides"),
            "tasks": [t.get("fingerprint") for t in state.get("tasks", [])],
        }
        wanted = {
            "policy": policy,
            "seed": seed,
            "policy_overrides": overrides,
            "tasks": [t["fingerprint"] for t in tasks],
        }
        for key, value in wanted.items():
            if recorded[key] != value:
                raise CheckpointError(
                    f"{path}: {key}: the run was started with {recorded[key]!r}, this call has {value!r}; "
                    "use the same settings to continue it, or another --out"
                )
        remove_stale_datasets(out_dir, state.get("dataset"))
        return state
    if out_dir.exists() and any(out_dir.iterdir()):
        raise CheckpointError(f"{out_dir}: exists and is not a continual run (no {STATE_FILE}); choose another --out")
    state = {
        "format": STATE_FORMAT,
        "policy": policy,
        "seed": seed,
        "config": config_to_json(config),
        "train_config": config_to_json(train_config),
        "policy_overrides": overrides,
        "tasks": tasks,
        "dataset": None,
        "stages": [],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, state)
    return state


def _replay_steps(out_dir: Path, k: int, config: ContinualConfig) -> dict[int, np.ndarray]:
    """Earlier task -> the steps of its share of stage ``k``'s replay buffer."""
    shares = buffer_shares(config.buffer_size, k)
    kept = {}
    for task, share in enumerate(shares):
        order = read_json(out_dir / f"replay-{task}.json", "replay order")["order"]
        kept[task] = np.asarray(order[:share], dtype=np.int64)
    return kept


def _training_set(
    out_dir: Path,
    state: dict[str, Any],
    datasets: list[Dataset],
    k: int,
    config: ContinualConfig,
    streams: tuple[str, ...],
) -> tuple[Dataset, dict[str, int]]:
    """Stage ``k``'s training data and its replay counts per earlier task (task index as a string)."""
    if k == 0 or config.replay == "none":
        return datasets[k], {}
    kept = _replay_steps(out_dir, k, config)
    counts = {str(task): len(steps) for task, steps in kept.items()}
    name = f"data-{k}"
    if state.get("dataset") == name:
        return Dataset.open(out_dir / name), counts
    written = _write_training_set(out_dir / name, datasets, k, kept, config, streams)
    acknowledge_dataset(out_dir, STATE_FILE, state, {**state, "dataset": name})
    return written, counts


def _write_training_set(
    path: Path,
    datasets: list[Dataset],
    k: int,
    kept: dict[int, np.ndarray],
    config: ContinualConfig,
    streams: tuple[str, ...],
) -> Dataset:
    current = datasets[k]
    replayed = sum(len(steps) for steps in kept.values())
    weights = _weights(current.num_steps, replayed, config.replay_share)
    specs = [current.streams[name] for name in streams]
    specs.append(array_stream("weight", "float32", (), "sampling weight: current task vs replay"))
    extra = {
        "continual": {"stage": k, "replay": config.replay, "replay_steps": {str(t): len(s) for t, s in kept.items()}}
    }
    writer = DatasetWriter(
        path,
        specs,
        spaces=current.spaces,
        env=current.env,
        episode_info=("continual_task",),
        extra=extra,
        overwrite=True,
    )
    with writer:
        for e in range(current.num_episodes):
            recorded = current.episode(e)
            episode = {name: recorded[name] for name in streams}
            episode["weight"] = np.full(len(recorded["obs"]), weights[0], np.float32)
            writer.add_episode(episode, {"continual_task": k})
        for task, steps in kept.items():
            rows = datasets[task].gather(steps, list(streams))
            for i in range(len(steps)):
                # One transition as a one-step episode: it ends there (truncated unless it terminated).
                step = {name: rows[name][i : i + 1] for name in streams}
                step["truncated"] = ~step["terminated"].astype(bool)
                step["weight"] = np.full(1, weights[1], np.float32)
                writer.add_episode(step, {"continual_task": task})
        return writer.close()


def _weights(current_steps: int, replay_steps: int, share: float | None) -> tuple[float, float]:
    """Sampling weights (current-task step, replay step) so that the replay makes ``share`` of the draws
    (scaled to a mean of 1 per step); ``(1, 1)`` when ``share`` is None or nothing is replayed."""
    if share is None or replay_steps == 0:
        return 1.0, 1.0
    total = current_steps + replay_steps
    return (1 - share) * total / current_steps, share * total / replay_steps


def _select(
    out_dir: Path,
    trained: Policy,
    dataset: Dataset,
    k: int,
    config: ContinualConfig,
    base_train: TrainConfig,
    seed: int,
    show_progress: bool,
) -> None:
    """Write ``replay-K.json``: the order over task ``k``'s steps its replay share is a prefix of."""
    path = out_dir / f"replay-{k}.json"
    if path.exists():
        return
    select_seed = derive_seed(seed, f"continual-select:{k}")
    record: dict[str, Any] = {"task": k, "replay": config.replay, "dataset_fingerprint": dataset.fingerprint}
    if config.replay == "uniform":
        order = uniform_order(dataset.num_steps, select_seed)
    else:
        model_train = replace(
            base_train,
            steps=config.model_steps,
            seed=derive_seed(seed, f"continual-model:{k}") % 2**31,
            sample_weights=None,
            action_labels="action",
        )
        model = train(
            "dynamics",
            dataset,
            out_dir / f"dynamics_{k}",
            model_train,
            policy_overrides=config.model_overrides,
            resume=True,
            show_progress=show_progress,
        )
        assert isinstance(model, ForwardDynamicsModel)
        starts = rollout_starts(dataset, config.rollout_starts, select_seed)
        order, visits = model_based_order(trained, model, dataset, starts, config.rollout_horizon, select_seed)
        record["visited_steps"] = int((visits > 0).sum())
        record["rollout_steps"] = int(visits.sum())
    record["order"] = order.tolist()
    atomic_write_json(path, record)


__all__ = ["REPLAYS", "ContinualConfig", "ContinualRun", "train_continual"]
