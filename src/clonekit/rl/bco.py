"""Behavioural cloning from observation (BCO; Torabi, Warnell & Stone 2018): imitation from expert observations
alone, through an inverse dynamics model (IDM) learned from the agent's *own* interaction with the env.

No labelled expert data is needed at all. The phases of a run:

0. *Pre-demonstration*: a uniformly random policy acts for ``pre_steps`` env steps; the IDM (``idm``,
   :mod:`clonekit.policies.idm`) learns ``(s_t, s_{t+1}) -> a_t`` from these transitions; it labels the expert's
   observation pairs (``clonekit label``'s :func:`~clonekit.policies.idm.label.label_dataset`), and behaviour
   cloning (``bc`` for Discrete actions, ``continuous_bc`` for Box ones) trains on the labelled demonstrations.
1. ... ``iterations`` (BCO(alpha)): the current BC policy acts for ``alpha * pre_steps`` more env steps, the IDM
   is retrained on every transition the agent has made so far, relabels the demonstrations, and BC retrains.
   The agent's later data lies where the imitating policy goes, nearer the expert's states than random play.

The env's reward is never used (it is stored with the agent's transitions, and the phases' mean episode return
is logged for the reader). Every env step counts: ``env_steps`` of a run is the sum over its phases (each rounded
up to whole steps of the ``num_envs`` envs).

The IDM and BC are trained by clonekit's one training loop (:func:`clonekit.train.train`) from scratch in each
phase. The agent's transitions are a clonekit dataset with a float stream ``next_obs_stored``: 0 at an episode's
last step (the dataset holds no observation after it, so the IDM's window there would repeat ``s_t``), 1
elsewhere; the IDM samples steps with these weights, so it never learns from such a pair. The demonstrations'
own last steps are labelled like every other (their window repeats the last observation).

Run directory ``RUN``::

    bco.json                      settings and the demonstrations' fingerprint (a resume checks both)
    metrics.jsonl                 one line per finished phase: env steps, IDM accuracy, label changes, ...
    config.json, model.safetensors  the final BC policy: an ordinary clonekit run (clonekit eval RUN)
    data/demos                    the demonstrations' observation-only copy (when they came with actions,
                                  which are dropped and never read)
    data/agent_K                  every agent transition up to phase K
    data/labelled_K               the demonstrations labelled by phase K's IDM
    runs/idm_K, runs/bc_K         the phase's IDM and BC runs

Every file is written atomically and every stage is a deterministic function of the files before it, so a
killed run continues with ``resume=True`` and ends with the same weights as one never interrupted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium
import numpy as np
import torch

from clonekit.checkpoint import CONFIG_FILE, MODEL_FILE, load_policy, load_run_config, read_json, save_policy
from clonekit.config import check, check_same_config, config_to_json
from clonekit.data import Dataset, DatasetWriter, array_stream, space_to_json
from clonekit.data.observation_only import write_observation_only
from clonekit.errors import CheckpointError, ConfigError, DatasetError
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.policies import Policy
from clonekit.policies.bc.policy import BCPolicy
from clonekit.policies.idm import InverseDynamicsModel
from clonekit.policies.idm.label import idm_labels, label_dataset
from clonekit.rl.vector import VectorEnv, gym_env_factories
from clonekit.seeding import derive_seed
from clonekit.train import TrainConfig, train

PROVENANCE_FILE = "bco.json"
METRICS_FILE = "metrics.jsonl"
# The float stream of the agent's transitions that weights the IDM's samples (0: no next observation stored).
NEXT_OBS_STREAM = "next_obs_stored"

PhaseHook = Callable[[int, Policy], None]


@dataclass(frozen=True)
class BCOConfig:
    """Behavioural cloning from observation on a gymnasium env (see the module docstring).

    Args:
        demos: Dataset directory of expert demonstrations recorded in ``env``; only their ``obs`` stream is
            read (an ``action`` stream, if any, is dropped unread).
        env: A gymnasium id (``CartPole-v1``) or ``gym:ID``; its observations must be the demos'.
        env_kwargs: Keyword arguments for the env, as :class:`clonekit.rl.PPOConfig` takes them.
        seed: Seeds the random policy, the envs' resets, the exploration draws and every training run.

        pre_steps: Env steps of the random policy before the first IDM (the pre-demonstration phase).
        alpha: BCO(alpha): env steps of each later phase, as a fraction of ``pre_steps`` (0 with
            ``iterations`` 0: plain BCO).
        iterations: Phases after the first, each acting with the current BC policy.
        num_envs: Envs stepped together while collecting (a phase's steps are rounded up to a multiple).
        explore: How the BC policy acts while collecting: ``sample`` (Discrete: an action drawn from its
            softmax; Box: its action plus Gaussian noise of ``explore_noise`` half-ranges) or ``greedy`` (its
            action as it is evaluated).
        explore_noise: Standard deviation of the Box exploration noise, in half-ranges of the action bounds.

        idm_steps: Gradient steps of each phase's IDM.
        idm_hidden_sizes: The IDM's MLP widths.
        idm_batch_size: Transitions per IDM gradient step.
        idm_lr: The IDM's Adam learning rate.
        bc_steps: Gradient steps of each phase's BC policy.
        bc_hidden_sizes: The BC policy's MLP widths.
        bc_batch_size: Demonstration steps per BC gradient step.
        bc_lr: BC's Adam learning rate.
    """

    demos: str = ""
    env: str = "CartPole-v1"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    pre_steps: int = 10_000
    alpha: float = 0.0
    iterations: int = 0
    num_envs: int = 8
    explore: Literal["sample", "greedy"] = "sample"
    explore_noise: float = 0.1

    idm_steps: int = 2000
    idm_hidden_sizes: tuple[int, ...] = (256,)
    idm_batch_size: int = 256
    idm_lr: float = 1e-3
    bc_steps: int = 1000
    bc_hidden_sizes: tuple[int, ...] = (64, 64)
    bc_batch_size: int = 64
    bc_lr: float = 1e-3

    def __post_init__(self) -> None:
        check(bool(self.demos), "demos", "a dataset directory", self.demos)
        check(bool(self.env), "env", "a gymnasium id", self.env)
        check(self.pre_steps >= 1, "pre_steps", ">= 1", self.pre_steps)
        check(self.alpha >= 0 and math.isfinite(self.alpha), "alpha", "a finite number >= 0", self.alpha)
        check(self.iterations >= 0, "iterations", ">= 0", self.iterations)
        if self.iterations > 0:
            check(self.alpha * self.pre_steps >= 1, "alpha", "alpha * pre_steps >= 1 with iterations > 0", self.alpha)
        check(self.num_envs >= 1, "num_envs", ">= 1", self.num_envs)
        check(self.explore in ("sample", "greedy"), "explore", "sample|greedy", self.explore)
        noise = self.explore_noise
        check(noise >= 0 and math.isfinite(noise), "explore_noise", "a finite number >= 0", noise)
        for name in ("idm_steps", "idm_batch_size", "bc_steps", "bc_batch_size"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        for name in ("idm_lr", "bc_lr"):
            value = getattr(self, name)
            check(value > 0 and math.isfinite(value), name, "a finite number > 0", value)
        for name in ("idm_hidden_sizes", "bc_hidden_sizes"):
            sizes = getattr(self, name)
            check(
                1 <= len(sizes) <= 16 and all(0 < h <= 65536 for h in sizes),
                name,
                "1 to 16 widths in [1, 65536]",
                sizes,
            )

    def phase_env_steps(self, phase: int) -> int:
        """Env steps of phase ``phase`` (0: the random policy's), rounded up to whole steps of all envs."""
        target = self.pre_steps if phase == 0 else math.ceil(self.alpha * self.pre_steps)
        return math.ceil(target / self.num_envs) * self.num_envs

    @property
    def total_env_steps(self) -> int:
        """Env steps of the whole run (every phase's)."""
        return sum(self.phase_env_steps(k) for k in range(self.iterations + 1))


def _phase_seed(config: BCOConfig, purpose: str, phase: int) -> int:
    return derive_seed(config.seed, f"bco:{purpose}:{phase}") % 2**31


def _check_demos(
    config: BCOConfig, demos: Dataset, obs_space: gymnasium.spaces.Box, action_json: dict[str, Any]
) -> None:
    """One-line errors for demonstrations that cannot be imitated in ``config.env``."""
    recorded = demos.env if isinstance(demos.env, dict) else {}
    recorded_id = recorded.get("kwargs", {}).get("id") if recorded.get("id") == "gym" else None
    wanted = config.env.removeprefix("gym:")
    if recorded_id is not None and recorded_id != wanted:
        raise ConfigError(f"demos: {demos.path} was recorded in gym:{recorded_id}, not in env {wanted}")
    spec = demos.streams["obs"]
    if spec.kind != "array" or math.prod(spec.shape) != math.prod(obs_space.shape):
        raise ConfigError(
            f"demos: {demos.path}: expected obs of shape {obs_space.shape} (env {wanted}'s), got {spec.describe()}"
        )
    space = demos.spaces.get("action")
    if space and space != action_json:
        raise ConfigError(
            f"demos: {demos.path}: meta.json spaces['action'] is {space}, but env {wanted}'s is {action_json}"
        )
    if not (demos.episode_lengths >= 2).any():
        raise DatasetError(f"{demos.path}: no episode has two observations; BCO needs expert observation pairs (s, s')")


class _Explorer:
    """The actions of one collection phase: uniform random (phase 0) or the BC policy's (later phases)."""

    def __init__(self, config: BCOConfig, action_space: gymnasium.Space[Any], policy: Policy | None, seed: int) -> None:
        self.config, self.action_space, self.policy = config, action_space, policy
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        space, n = self.action_space, len(obs)
        if isinstance(space, gymnasium.spaces.Discrete):
            if self.policy is None:
                return self.rng.integers(int(space.n), size=n).astype(np.int64)  # start 0 (VectorEnv checks it)
            with torch.no_grad():
                inputs = {"obs": torch.from_numpy(obs)}
                if self.config.explore == "greedy":
                    return self.policy.act(inputs)[0].numpy().astype(np.int64)
                assert isinstance(self.policy, BCPolicy)
                logits = self.policy.action_logits(inputs)[0].double()
            # Inverse-CDF draws from the softmax, with this phase's generator (reproducible, resumable).
            cdf = torch.softmax(logits, -1).cumsum(-1).numpy()
            draws = self.rng.random((n, 1)) * cdf[:, -1:]
            return np.minimum((draws > cdf).sum(-1), cdf.shape[1] - 1).astype(np.int64)
        assert isinstance(space, gymnasium.spaces.Box)
        low = np.broadcast_to(space.low, (n, *space.shape))
        high = np.broadcast_to(space.high, (n, *space.shape))
        if self.policy is None:
            return self.rng.uniform(low, high).astype(space.dtype)
        with torch.no_grad():
            actions = self.policy.act({"obs": torch.from_numpy(obs)})[0].numpy().reshape(n, *space.shape)
        if self.config.explore == "sample":
            actions = actions + self.rng.normal(size=actions.shape) * self.config.explore_noise * (high - low) / 2
        return np.clip(actions, low, high).astype(space.dtype)


def collect_transitions(
    envs: VectorEnv, act: Callable[[np.ndarray], np.ndarray], steps: int, seed: int
) -> tuple[list[dict[str, np.ndarray]], list[float]]:
    """Play ``steps`` env steps (rounded up to whole steps of all envs) choosing actions with ``act(obs (N,
    *obs_shape)) -> (N, ...)``; returns the episodes as dataset steps (an episode still open at the end is cut
    there, ``truncated``) with ``next_obs_stored`` 0 at each last step, and the returns of the episodes that
    ended."""
    obs = envs.reset(seed)
    open_steps: list[dict[str, list[Any]]] = [{} for _ in range(envs.num_envs)]
    episodes: list[dict[str, np.ndarray]] = []
    returns: list[float] = []

    def close(i: int) -> None:
        steps_i = {name: np.asarray(values) for name, values in open_steps[i].items()}
        stored = np.ones(len(steps_i["reward"]), dtype=np.float32)
        stored[-1] = 0.0
        episodes.append(steps_i | {NEXT_OBS_STREAM: stored})
        open_steps[i] = {}

    for _ in range(math.ceil(steps / envs.num_envs)):
        actions = act(obs)
        next_obs, reward, terminated, truncated, _final = envs.step(actions)
        for i in range(envs.num_envs):
            record = open_steps[i]
            for name, value in (
                ("obs", obs[i]),
                ("action", actions[i]),
                ("reward", reward[i]),
                ("terminated", terminated[i]),
                ("truncated", truncated[i]),
            ):
                record.setdefault(name, []).append(value)
            if terminated[i] or truncated[i]:
                returns.append(float(np.sum(record["reward"])))
                close(i)
        obs = next_obs
    for i in range(envs.num_envs):
        if open_steps[i]:
            open_steps[i]["truncated"][-1] = True
            close(i)
    return episodes, returns


def _idm_train_config(config: BCOConfig, phase: int) -> TrainConfig:
    return TrainConfig(
        steps=config.idm_steps,
        batch_size=config.idm_batch_size,
        lr=config.idm_lr,
        seed=_phase_seed(config, "idm", phase),
        checkpoint_every=max(config.idm_steps // 2, 1),
        keep_checkpoints=1,
        tensorboard=False,
        val_fraction=0.0,
        sample_weights=NEXT_OBS_STREAM,
    )


def _bc_train_config(config: BCOConfig, phase: int) -> TrainConfig:
    return TrainConfig(
        steps=config.bc_steps,
        batch_size=config.bc_batch_size,
        lr=config.bc_lr,
        seed=_phase_seed(config, "bc", phase),
        checkpoint_every=max(config.bc_steps // 2, 1),
        keep_checkpoints=1,
        tensorboard=False,
        val_fraction=0.0,
    )


def idm_accuracy(model: InverseDynamicsModel, agent: Dataset) -> float:
    """The IDM's agreement with the agent's own actions on the transitions whose next observation is stored:
    the fraction of exact labels (Discrete), or ``1 - `` the mean absolute error in half-ranges of the action
    bounds (Box)."""
    keep = np.asarray(agent.column(NEXT_OBS_STREAM)) > 0
    predicted = idm_labels(model, agent)[keep]
    actual = np.asarray(agent.column("action"))[keep]
    if model.config.discrete:
        return float((predicted == actual).mean())
    half_range = (model.action_high - model.action_low).numpy() / 2
    return float(1.0 - (np.abs(predicted - actual) / half_range).mean())


class _Phases:
    """The stages of a run, each skipped when its output is already there."""

    def __init__(self, config: BCOConfig, run_dir: Path, demos: Dataset, show_progress: bool) -> None:
        self.config, self.run_dir, self.demos, self.show_progress = config, run_dir, demos, show_progress
        factories, self.env_block = gym_env_factories(config.env, config.env_kwargs, config.num_envs)
        self.envs = VectorEnv.for_block(factories, self.env_block)
        self.action_space = self.envs.action_space
        self.discrete = isinstance(self.action_space, gymnasium.spaces.Discrete)
        if not self.discrete and not self.action_space.is_bounded():  # type: ignore[attr-defined]
            self.envs.close()
            raise ConfigError(f"env: {config.env}: the random phase needs a bounded Box, got {self.action_space}")

    def agent_path(self, phase: int) -> Path:
        return self.run_dir / "data" / f"agent_{phase}"

    def collect(self, phase: int, policy: Policy | None) -> tuple[Dataset, list[float]]:
        """Phase ``phase``'s cumulative agent dataset and the returns of the episodes it added."""
        path = self.agent_path(phase)
        if path.exists():
            agent = Dataset.open(path)
            return agent, list(agent.extra.get("bco", {}).get("returns", []))
        explorer = _Explorer(self.config, self.action_space, policy, _phase_seed(self.config, "explore", phase))
        episodes, returns = collect_transitions(
            self.envs, explorer, self.config.phase_env_steps(phase), _phase_seed(self.config, "reset", phase)
        )
        obs_spec = self.demos.streams["obs"]
        if self.discrete:
            action_spec = array_stream("action", "int64", (), "the agent's action")
        else:
            action_spec = array_stream("action", str(self.action_space.dtype), tuple(self.action_space.shape or ()))
        streams = [
            array_stream("obs", obs_spec.dtype, tuple(obs_spec.shape), "observation"),
            action_spec,
            array_stream("reward", "float32", ()),
            array_stream("terminated", "bool", ()),
            array_stream("truncated", "bool", ()),
            array_stream(NEXT_OBS_STREAM, "float32", (), "1 where the next step holds the next observation"),
        ]
        earlier = Dataset.open(self.agent_path(phase - 1)) if phase > 0 else None
        env_steps = (earlier.num_steps if earlier is not None else 0) + sum(len(e["reward"]) for e in episodes)
        writer = DatasetWriter(
            path,
            streams,
            spaces={"observation": space_to_json(self.envs.observation_space), "action": self.action_json},
            env=self.env_block,
            extra={"bco": {"phase": phase, "env_steps": env_steps, "returns": returns}},
        )
        with writer:
            if earlier is not None:
                for k in range(earlier.num_episodes):
                    writer.add_episode(earlier.episode(k))
            for episode in episodes:
                writer.add_episode(episode | {"obs": episode["obs"].reshape(len(episode["obs"]), *obs_spec.shape)})
            return writer.close(), returns

    @property
    def action_json(self) -> dict[str, Any]:
        return dict(space_to_json(self.action_space))

    def run_phase(self, phase: int, previous: Policy | None) -> tuple[Policy, dict[str, Any]]:
        """Collect, train the IDM, label the demos, train BC; returns the BC policy and the phase's metrics."""
        config, run_dir = self.config, self.run_dir
        agent, returns = self.collect(phase, previous)
        new_steps = config.phase_env_steps(phase)
        idm = train(
            "idm",
            agent,
            run_dir / "runs" / f"idm_{phase}",
            _idm_train_config(config, phase),
            policy_overrides={"hidden_sizes": list(config.idm_hidden_sizes), "before": 0, "after": 1},
            resume=True,
            same_settings=True,
            show_progress=self.show_progress,
        )
        assert isinstance(idm, InverseDynamicsModel)
        labelled_path = run_dir / "data" / f"labelled_{phase}"
        labelled = (
            Dataset.open(labelled_path)
            if labelled_path.exists()
            else label_dataset(self.demos, run_dir / "runs" / f"idm_{phase}", labelled_path)
        )
        policy_name = "bc" if self.discrete else "continuous_bc"
        train(
            policy_name,
            labelled,
            run_dir / "runs" / f"bc_{phase}",
            _bc_train_config(config, phase),
            policy_overrides={"encoder": "mlp", "hidden_sizes": list(config.bc_hidden_sizes)},
            resume=True,
            same_settings=True,
            show_progress=self.show_progress,
        )
        policy = load_policy(run_dir / "runs" / f"bc_{phase}")
        labels = np.asarray(labelled.column("action"))
        metrics: dict[str, Any] = {
            "step": int(agent.num_steps),
            "phase": phase,
            "phase_env_steps": new_steps,
            "idm_accuracy": idm_accuracy(idm, agent),
            "episodes_ended": len(returns),
            "episode_return_mean": float(np.mean(returns)) if returns else None,  # no episode ended
        }
        if phase > 0:
            before = np.asarray(Dataset.open(run_dir / "data" / f"labelled_{phase - 1}").column("action"))
            changed = labels != before if self.discrete else np.abs(labels - before) > 1e-6
            metrics["label_change"] = float(changed.reshape(len(labels), -1).any(-1).mean())
        return policy, metrics

    def close(self) -> None:
        self.envs.close()


def phase_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The lines of a run's ``metrics.jsonl``: one dict per finished phase (``step``: env steps so far,
    ``idm_accuracy``, ``label_change``, ...); empty before the first phase ends."""
    run_dir = Path(run_dir)
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def train_bco(
    config: BCOConfig,
    out: str | Path,
    resume: bool = False,
    show_progress: bool = True,
    on_phase: PhaseHook | None = None,
) -> Policy:
    """Run BCO (BCO(alpha) with ``iterations > 0``) into run directory ``out``; returns the final BC policy.

    ``on_phase(env_steps, policy)`` is called after every phase with the env steps so far and that phase's BC
    policy (also for the phases a resumed run finds done, so a curve comes out whole). With ``resume=True`` an
    interrupted run continues exactly; without it an existing non-empty ``out`` is an error.
    """
    run_dir = Path(out)
    if run_dir.exists() and any(run_dir.iterdir()):
        if not resume:
            raise CheckpointError(f"{run_dir}: already exists; pass --resume to continue it, or choose another --out")
        started = read_json(run_dir / PROVENANCE_FILE, "bco provenance")
        check_same_config(config, started.get("bco_config"), str(run_dir / PROVENANCE_FILE))
    source = Dataset.open(config.demos)
    source.require_streams(["obs"], "bco")
    provenance = {"bco_config": config_to_json(config), "demos": config.demos, "demos_fingerprint": source.fingerprint}
    if resume and (run_dir / PROVENANCE_FILE).is_file():
        recorded = read_json(run_dir / PROVENANCE_FILE, "bco provenance").get("demos_fingerprint")
        if recorded != source.fingerprint:
            raise CheckpointError(
                f"{run_dir / PROVENANCE_FILE}: the run imitates demos {recorded}, but {config.demos} is "
                f"{source.fingerprint}"
            )
    phases = _Phases(config, run_dir, source, show_progress)
    try:
        _check_demos(config, source, phases.envs.observation_space, phases.action_json)
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / PROVENANCE_FILE, provenance)
        if not source.observation_only:  # BCO never reads the expert's actions: label a copy without them
            copy = run_dir / "data" / "demos"
            phases.demos = Dataset.open(copy) if copy.exists() else write_observation_only(source, copy)
        done = {entry["phase"]: entry for entry in phase_metrics(run_dir)}
        lines: list[dict[str, Any]] = []
        policy: Policy | None = None
        for phase in range(config.iterations + 1):
            policy, metrics = phases.run_phase(phase, policy)
            lines.append(done.get(phase, metrics))
            if phase not in done:
                atomic_write_text(run_dir / METRICS_FILE, "".join(json.dumps(line) + "\n" for line in lines))
            if on_phase is not None:
                on_phase(int(metrics["step"]), policy)
                policy.eval()
    finally:
        phases.close()
    assert policy is not None
    final = run_dir / "runs" / f"bc_{config.iterations}"
    run_config = load_run_config(final) | {"bco": {"run": str(final), "env_steps": config.total_env_steps}}
    if not (run_dir / MODEL_FILE).is_file() or not (run_dir / CONFIG_FILE).is_file():
        save_policy(policy, run_dir, run_config)
    return policy


__all__ = ["NEXT_OBS_STREAM", "BCOConfig", "collect_transitions", "idm_accuracy", "phase_metrics", "train_bco"]
