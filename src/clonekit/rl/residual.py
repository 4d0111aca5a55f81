"""Residual RL on a frozen chunked policy (ResiP): PPO trains a small per-step correction on sparse reward.

The base is a trained ``continuous_bc`` run (typically the diffusion head with ``chunk > 1``) and stays frozen.
PPO (:mod:`clonekit.rl.ppo`, unchanged) sees the task through :class:`ResidualVecEnv`, which wraps envs of the
base run's family: at every step the base acts as it does at evaluation (one batched call for all envs; a chunk
executed step by step from its queue), PPO's observation is the base's normalized observation followed by the
base action in [-1, 1] units, and PPO's action ``delta`` moves the base action
(:func:`clonekit.policies.residual.policy.combine`). The residual actor starts with a zero last layer and a
small standard deviation, so training starts at the base's behaviour. The reward is the env's own (sparse
success for Avoiding).

The residual trains on the base run's training tasks (start states), never on test ones. A run directory
``RUN2``: ``ppo/`` is the PPO run (checkpoints, ``metrics.jsonl``; exact resume as PPO's, including the base's
sampling noise, which comes from torch's global generator that PPO checkpoints); at the end ``config.json``
and ``model.safetensors`` describe the ``residual`` policy, whose weights include a *copy* of the base's, so
``load_policy(RUN2)`` and ``clonekit eval RUN2`` act as base + residual without the base run. The base run's
path and the SHA-256 of its weights are recorded in ``residual.json`` (and a resume checks the hash).
"""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch
from torch import nn

from clonekit.checkpoint import (
    CONFIG_FILE,
    MODEL_FILE,
    atomic_save_tensors,
    load_policy,
    load_run_config,
    read_json,
)
from clonekit.config import check, check_same_config, config_to_json
from clonekit.envs import get_env_family
from clonekit.errors import CheckpointError, ConfigError
from clonekit.io import atomic_write_json
from clonekit.nn.chunking import ChunkQueue
from clonekit.policies.continuous_bc import ContinuousBCPolicy
from clonekit.policies.residual import ResidualConfig, ResidualPolicy, residual_inputs
from clonekit.policies.residual.policy import combine
from clonekit.rl.agent import Actor
from clonekit.rl.config import PPOConfig
from clonekit.rl.ppo import UpdateHook, train_ppo
from clonekit.rl.run import rl_run_config
from clonekit.rl.vector import VectorEnv

PPO_DIR = "ppo"
PROVENANCE_FILE = "residual.json"


@dataclass(frozen=True)
class ResidualRLConfig:
    """Residual PPO on a frozen ``continuous_bc`` base run.

    Args:
        base: Run directory of the frozen base (``continuous_bc``, vector observations).
        env: Env family to train in; must be the base run's (its training tasks are reused).
        env_kwargs: The family's options for training and for the run's evaluation (e.g. ``finish_gate`` of
            ``avoiding``); they replace the base run's.
        total_steps: Env steps of PPO (summed over the envs).
        seed: Seeds the residual's initialization, PPO's draws, the base's sampling noise and the env resets.

        scale: Largest correction, as a fraction of the half action range.
        hidden_sizes: Widths of the residual's and the critic's MLPs.
        init_log_std: Initial log standard deviation of ``delta`` (in [-1, 1] units, before ``scale``).

        num_envs, num_steps, lr, gamma, gae_lambda, update_epochs, num_minibatches, ent_coef, clip_coef,
        checkpoint_every: PPO's settings (see :class:`clonekit.rl.PPOConfig`).
    """

    base: str = ""
    env: str = ""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    total_steps: int = 100_000
    seed: int = 0

    scale: float = 0.2
    hidden_sizes: tuple[int, ...] = (64, 64)
    init_log_std: float = -1.0

    num_envs: int = 16
    num_steps: int = 128
    lr: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    update_epochs: int = 4
    num_minibatches: int = 4
    ent_coef: float = 0.0
    clip_coef: float = 0.2
    checkpoint_every: int = 50_000

    def __post_init__(self) -> None:
        check(bool(self.base), "base", "a run directory", self.base)
        check(bool(self.env) and ":" not in self.env, "env", "an env family name such as 'avoiding'", self.env)
        check(isinstance(self.env_kwargs, dict), "env_kwargs", "a JSON object", self.env_kwargs)
        check(0 < self.scale <= 2 and math.isfinite(self.scale), "scale", "in (0, 2]", self.scale)
        self.ppo()  # PPO's own checks name the field

    def ppo(self) -> PPOConfig:
        """The PPO config of the run (its ``env`` names the wrapped family, for the record)."""
        return PPOConfig(
            env=f"residual:{self.env}",
            env_kwargs=dict(self.env_kwargs),
            total_steps=self.total_steps,
            num_envs=self.num_envs,
            num_steps=self.num_steps,
            gamma=self.gamma,
            gae_lambda=self.gae_lambda,
            lr=self.lr,
            update_epochs=self.update_epochs,
            num_minibatches=self.num_minibatches,
            clip_coef=self.clip_coef,
            ent_coef=self.ent_coef,
            encoder="mlp",
            hidden_sizes=self.hidden_sizes,
            init_log_std=self.init_log_std,
            seed=self.seed,
            checkpoint_every=self.checkpoint_every,
            keep_checkpoints=1,
        )


class ResidualVecEnv(VectorEnv):
    """``num_envs`` envs of a family where a frozen base acts and the agent's action corrects it, stepped as one
    batch (one base call per step for all envs; see the module docstring), with PPO's vector-env interface
    (same-step autoreset, the ended episodes' last observations returned apart).

    Observation: ``float32 (D + A,)``, the base's normalized observation and its action in [-1, 1] units.
    Action: ``delta`` ``(A,)`` in [-1, 1]. Env ``i`` draws each episode's task from ``tasks`` with its own
    generator, seeded by :meth:`reset` with ``seed + i``.
    """

    def __init__(
        self,
        family: Any,
        env_kwargs: dict[str, Any],
        tasks: list[Any],
        base: ContinuousBCPolicy,
        scale: float,
        num_envs: int,
    ) -> None:
        self.family, self.env_kwargs, self.tasks = family, env_kwargs, tasks
        self.base, self.scale, self.num_envs = base, scale, num_envs
        width = base.config.obs_shape[0] + base.action_dim
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (width,), dtype=np.float32)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (base.action_dim,), dtype=np.float32)
        self._rngs = [np.random.default_rng(i) for i in range(num_envs)]
        self._slots: list[Any] = []
        self._obs = np.zeros((num_envs, base.config.obs_shape[0]), dtype=np.float32)
        self._state: Any = None
        self._base_action = torch.zeros(num_envs, base.action_dim)

    def _start(self, i: int) -> np.ndarray:
        """A new episode in slot ``i`` (a task drawn by its generator); returns its first observation ``(D,)``."""
        rng = self._rngs[i]
        vec = self.family.make_vec([self.tasks[int(rng.integers(len(self.tasks)))]], **self.env_kwargs)
        self._slots[i] = vec
        return np.asarray(vec.reset(seed=int(rng.integers(2**31)))[0], dtype=np.float32)

    @torch.no_grad()
    def _observe(self) -> np.ndarray:
        """Let the base act on every slot's observation; returns the agent's observations ``(N, D + A)``."""
        obs = torch.from_numpy(self._obs)
        self._base_action, self._state = self.base.act({"obs": obs}, self._state)
        return residual_inputs(self.base, obs, self._base_action).numpy()

    def reset(self, seed: int) -> np.ndarray:
        """Start an episode in every slot, slot ``i``'s generator seeded with ``seed + i``."""
        self._rngs = [np.random.default_rng(seed + i) for i in range(self.num_envs)]
        self._slots = [None] * self.num_envs
        self._obs = np.stack([self._start(i) for i in range(self.num_envs)])
        self._state = self.base.initial_state(self.num_envs)
        return self._observe()

    @torch.no_grad()
    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[int, np.ndarray]]:
        delta = torch.from_numpy(np.asarray(actions, dtype=np.float32)).reshape(self.num_envs, -1)
        executed = combine(self.base, self._base_action, delta, self.scale).numpy()
        reward = np.zeros(self.num_envs, dtype=np.float32)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        for i, vec in enumerate(self._slots):
            obs, r, term, trunc = vec.step(executed[i : i + 1])
            self._obs[i], reward[i], terminated[i], truncated[i] = obs[0], r[0], term[0], trunc[0]
        ended = np.flatnonzero(terminated | truncated)
        final: dict[int, np.ndarray] = {}
        if len(ended):
            # The last observations, seen with the base's action there from a fresh state (for PPO's bootstrap).
            last = torch.from_numpy(self._obs[ended].copy())
            last_action, _ = self.base.act({"obs": last}, self.base.initial_state(len(ended)))
            final = dict(zip(ended.tolist(), residual_inputs(self.base, last, last_action).numpy(), strict=True))
            for slot in ended.tolist():
                self._obs[slot] = self._start(slot)
            self._state = reset_rows(self._state, self.base.initial_state(self.num_envs), torch.from_numpy(ended))
        return self._observe(), reward, terminated, truncated, final

    def close(self) -> None:
        """Close the slots' envs that can be closed."""
        for vec in self._slots:
            close = getattr(vec, "close", None)
            if close is not None:
                close()


def reset_rows(state: Any, fresh: Any, rows: torch.Tensor) -> Any:
    """``state`` (a policy's batched ``act`` state: ``None``, a tensor, a :class:`ChunkQueue` or a tuple of these)
    with the rows ``rows`` taken from ``fresh`` (an ``initial_state`` of the same batch)."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        out = state.clone()
        out[rows] = fresh[rows]
        return out
    if isinstance(state, ChunkQueue):
        return ChunkQueue(
            reset_rows(state.actions, fresh.actions, rows), reset_rows(state.remaining, fresh.remaining, rows)
        )
    if isinstance(state, tuple):
        return tuple(reset_rows(s, f, rows) for s, f in zip(state, fresh, strict=True))
    raise ConfigError(f"base policy: cannot reset a state of type {type(state).__name__} per env")


def zero_last_layer(actor: Actor) -> None:
    """Make the residual output exactly zero at first: its head's weights and bias to 0."""
    for layer in actor.head.modules():
        if isinstance(layer, nn.Linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_base(run: str | Path) -> tuple[ContinuousBCPolicy, dict[str, Any]]:
    """The frozen base policy of run ``run`` and its run config; a one-line ``ConfigError`` when it is not a
    ``continuous_bc`` run."""
    recorded = load_run_config(Path(run))
    if recorded["policy"] != "continuous_bc":
        raise ConfigError(
            f"--base {run}: expected a continuous_bc run (continuous actions), found policy {recorded['policy']!r}"
        )
    base = load_policy(run)
    assert isinstance(base, ContinuousBCPolicy)
    base.requires_grad_(False)
    return base, recorded


def train_residual(
    config: ResidualRLConfig,
    out: str | Path,
    resume: bool = False,
    show_progress: bool = True,
    on_update: UpdateHook | None = None,
) -> ResidualPolicy:
    """Train a residual on the frozen base of ``config.base`` by PPO into run directory ``out``; returns the
    ``residual`` policy (base + residual), also written to ``out`` (see the module docstring).

    ``on_update(env_steps, actor)`` is PPO's hook (``actor``: the residual network alone). With ``resume=True`` an
    interrupted run continues exactly; without it an existing non-empty ``out`` is an error.
    """
    run_dir = Path(out)
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        raise CheckpointError(f"{run_dir}: already exists; pass --resume to continue it, or choose another --out")
    base, recorded = load_base(config.base)
    base_env = recorded.get("dataset", {}).get("env", {})
    if base_env.get("id") != config.env:
        raise ConfigError(
            f"--env: expected the base run's env family {base_env.get('id')!r} (its training tasks are reused), "
            f"got {config.env!r}"
        )
    family = get_env_family(config.env)
    tasks = [family.task_from_json(t, **config.env_kwargs) for t in base_env.get("tasks", [])]
    if not tasks:
        raise ConfigError(f"--base {config.base}: its env block records no training tasks to train the residual on")
    provenance = {
        "base": str(config.base),
        "base_sha256": file_sha256(Path(config.base) / MODEL_FILE),
        "residual_rl_config": config_to_json(config),
    }
    if resume and (run_dir / PROVENANCE_FILE).is_file():
        started = read_json(run_dir / PROVENANCE_FILE, "residual provenance")
        check_same_config(config, started.get("residual_rl_config"), str(run_dir / PROVENANCE_FILE))
        if started.get("base_sha256") != provenance["base_sha256"]:
            raise CheckpointError(
                f"{run_dir / PROVENANCE_FILE}: the run started from base weights {started.get('base_sha256')}, "
                f"but {config.base} now holds {provenance['base_sha256']}"
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / PROVENANCE_FILE, provenance)
    block = {**base_env, "id": config.env, "kwargs": dict(config.env_kwargs)}
    envs = partial(ResidualVecEnv, family, dict(config.env_kwargs), tasks, base, config.scale, config.num_envs)
    actor = train_ppo(
        config.ppo(),
        run_dir / PPO_DIR,
        resume=resume,
        show_progress=show_progress,
        env_block=block,
        make_envs=envs,
        on_update=on_update,
        init_actor=zero_last_layer,
    )
    assert isinstance(actor, ContinuousBCPolicy)
    policy = residual_policy(base, actor, config.scale)
    atomic_save_tensors(dict(policy.state_dict()), run_dir / MODEL_FILE)
    dataset = {"fingerprint": recorded.get("dataset", {}).get("fingerprint", ""), "env": block}
    atomic_write_json(run_dir / CONFIG_FILE, rl_run_config(policy, "residual_ppo", config.seed, dataset))
    return policy


def residual_policy(base: ContinuousBCPolicy, residual: ContinuousBCPolicy, scale: float) -> ResidualPolicy:
    """The ``residual`` policy acting as ``base`` plus ``residual`` (copies of both; eval mode)."""
    config = ResidualConfig(config_to_json(base.config), config_to_json(residual.config), scale)
    policy = ResidualPolicy(config)
    policy.base.load_state_dict(base.state_dict())
    policy.residual.load_state_dict(copy.deepcopy(residual.state_dict()))
    return policy.eval()
