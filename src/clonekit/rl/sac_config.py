"""Configuration of SAC (:mod:`clonekit.rl.sac`): soft actor-critic for continuous (Box) actions."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from clonekit.config import check


@dataclass(frozen=True)
class SACConfig:
    """Soft actor-critic (squashed Gaussian actor, twin Q with target networks, automatic entropy tuning) on
    vectorized gymnasium envs with Box actions. Defaults are Stable-Baselines3's.

    Args:
        env: A gymnasium id (``Pendulum-v1``) or ``gym:ID``; recorded in the run.
        env_kwargs: Keyword arguments for ``gymnasium.make`` (and the ``gym`` family's options); see
            :mod:`clonekit.envs.gym`.
        total_steps: Env steps to train for (summed over the envs); rounded up to whole vector steps.

        num_envs: Envs stepped together (``gymnasium.vector.SyncVectorEnv``).
        buffer_size: Transitions the replay buffer holds (the oldest are overwritten).
        learning_starts: Env steps of uniformly random actions before the first update.
        batch_size: Transitions per gradient step.
        updates_per_step: Gradient steps per env step (the update-to-data ratio); a vector step of ``num_envs``
            env steps is followed by ``num_envs * updates_per_step`` gradient steps.
        gamma: Discount factor.
        tau: Rate of the target critics' moving average per gradient step.
        lr: Adam learning rate of the actor, the critics and the entropy temperature.
        autotune: Tune the entropy temperature ``alpha`` towards ``target_entropy``; else keep it at ``alpha``.
        alpha: The temperature's initial value (with ``autotune``) or constant value.
        target_entropy: The entropy ``alpha`` is tuned towards; ``None``: ``-A`` (minus the action width).
        hidden_sizes: Widths of the actor's MLP and of each critic's.

        seed: Seeds the networks' initialization, the actions drawn, the minibatches and the envs' resets.
        log_every: Env steps between lines of ``metrics.jsonl`` (means over the interval).
        checkpoint_every: Env steps between resumable checkpoints (also at the end). A checkpoint holds the
            replay buffer; the envs are reset there with seeds derived from ``seed`` and the step count, in a run
            that goes on as in one that resumes there, so a resumed run equals an uninterrupted one.
        keep_checkpoints: How many checkpoints to keep.
        tensorboard: Also write TensorBoard scalars under ``RUN/tb`` (when installed).

        prior: Run directory of a frozen ``continuous_bc`` policy (``mse``/``gaussian`` head, ``chunk`` 1) that the
            actor is pulled towards: demonstration-regularized SAC. ``None``: plain SAC.
        prior_coef: Initial weight of the pull, added to the actor's loss: the squared distance (summed over
            action dimensions, in [-1, 1] units) of the actor's deterministic action ``tanh(mean)`` to the prior's.
        prior_decay_steps: The weight decays linearly to 0 over this many env steps; 0 keeps it constant.
    """

    env: str = "Pendulum-v1"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    total_steps: int = 100_000

    num_envs: int = 1
    buffer_size: int = 1_000_000
    learning_starts: int = 100
    batch_size: int = 256
    updates_per_step: int = 1
    gamma: float = 0.99
    tau: float = 0.005
    lr: float = 3e-4
    autotune: bool = True
    alpha: float = 1.0
    target_entropy: float | None = None
    hidden_sizes: tuple[int, ...] = (256, 256)

    seed: int = 0
    log_every: int = 1000
    checkpoint_every: int = 50_000
    keep_checkpoints: int = 2
    tensorboard: bool = False

    prior: str | None = None
    prior_coef: float = 1.0
    prior_decay_steps: int = 0

    @property
    def num_iterations(self) -> int:
        """Vector steps (of ``num_envs`` env steps each) to reach ``total_steps``."""
        return -(-self.total_steps // self.num_envs)

    def __post_init__(self) -> None:
        check(isinstance(self.env, str) and bool(self.env), "env", "a gymnasium id such as 'Pendulum-v1'", self.env)
        check(isinstance(self.env_kwargs, dict), "env_kwargs", "a JSON object", self.env_kwargs)
        check(self.total_steps >= 1, "total_steps", ">= 1", self.total_steps)
        check(1 <= self.num_envs <= 4096, "num_envs", "in [1, 4096]", self.num_envs)
        check(self.buffer_size >= self.num_envs, "buffer_size", f">= num_envs = {self.num_envs}", self.buffer_size)
        check(self.learning_starts >= 0, "learning_starts", ">= 0", self.learning_starts)
        check(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
        check(1 <= self.updates_per_step <= 1000, "updates_per_step", "in [1, 1000]", self.updates_per_step)
        check(0 <= self.gamma < 1, "gamma", "in [0, 1)", self.gamma)
        check(0 < self.tau <= 1, "tau", "in (0, 1]", self.tau)
        check(self.lr > 0 and math.isfinite(self.lr), "lr", "a finite number > 0", self.lr)
        check(self.alpha > 0 and math.isfinite(self.alpha), "alpha", "a finite number > 0", self.alpha)
        check(
            self.target_entropy is None or math.isfinite(self.target_entropy),
            "target_entropy",
            "a finite number or null",
            self.target_entropy,
        )
        check(
            1 <= len(self.hidden_sizes) <= 16 and all(0 < h <= 65536 for h in self.hidden_sizes),
            "hidden_sizes",
            "1 to 16 widths in [1, 65536]",
            self.hidden_sizes,
        )
        check(self.log_every >= 1, "log_every", ">= 1", self.log_every)
        check(self.checkpoint_every >= 1, "checkpoint_every", ">= 1", self.checkpoint_every)
        check(self.keep_checkpoints >= 1, "keep_checkpoints", ">= 1", self.keep_checkpoints)
        check(self.prior is None or bool(self.prior), "prior", "a run directory or null", self.prior)
        check(
            self.prior_coef >= 0 and math.isfinite(self.prior_coef),
            "prior_coef",
            "a finite number >= 0",
            self.prior_coef,
        )
        check(self.prior_decay_steps >= 0, "prior_decay_steps", ">= 0", self.prior_decay_steps)
