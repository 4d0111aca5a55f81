"""Configuration of PPO (:mod:`clonekit.rl.ppo`), with the optional pull towards a frozen BC prior."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from clonekit.config import check


@dataclass(frozen=True)
class PPOConfig:
    """Proximal policy optimization (clipped objective, GAE) on vectorized gymnasium envs.

    Args:
        env: A gymnasium id (``CartPole-v1``, ``clonekit/Maze-v0``) or ``gym:ID``; recorded in the run.
        env_kwargs: Keyword arguments for ``gymnasium.make`` (and the ``gym`` family's options, e.g.
            ``success_threshold``); see :mod:`clonekit.envs.gym`.
        total_steps: Env steps to train for (summed over the envs); rounded up to whole rollouts.

        num_envs: Envs stepped together (``gymnasium.vector.SyncVectorEnv``).
        num_steps: Steps per env in each rollout; one update uses ``num_envs * num_steps`` transitions.
        gamma: Discount factor.
        gae_lambda: GAE's lambda (1: Monte-Carlo returns, 0: one-step TD).
        lr: Adam learning rate (decays linearly to 0 over the run with ``anneal_lr``).
        anneal_lr: Decay the learning rate linearly to 0 over the run.
        update_epochs: Passes over each rollout.
        num_minibatches: Minibatches per pass (the rollout size must divide evenly).
        clip_coef: Clipping range of the probability ratio.
        clip_vloss: Clip the value update to ``clip_coef`` around the rollout's values (as PPO2 does).
        norm_adv: Normalize advantages per minibatch.
        ent_coef: Weight of the entropy bonus.
        vf_coef: Weight of the value loss.
        max_grad_norm: Clip the global gradient norm to this value.
        target_kl: Stop an update's epochs early when the approximate KL exceeds this; ``None`` never stops.

        encoder: The actor's and the critic's observation encoder, as ``bc`` takes it (``auto``: ``conv`` for
            ``(C, H, W)`` maps, else ``mlp``).
        hidden_sizes: Widths of the actor's and the critic's MLPs (separate networks).
        init_log_std: Initial log standard deviation of the Gaussian (continuous actions, in the actor's
            [-1, 1]-scaled action units); it is one learned vector, independent of the state.

        seed: Seeds the networks' initialization, the actions drawn, the minibatches and the envs' resets.
        checkpoint_every: Env steps between resumable checkpoints (rounded to whole rollouts; also at the end).
            The envs are reset at each checkpoint with seeds derived from ``seed`` and the step count, in a
            run that goes on as in one that resumes there, so a resumed run equals an uninterrupted one.
        keep_checkpoints: How many checkpoints to keep.
        tensorboard: Also write TensorBoard scalars under ``RUN/tb`` (when installed).

        prior: Run directory of a frozen ``bc`` (discrete) or ``continuous_bc`` (``mse``/``gaussian`` head,
            ``chunk`` 1) policy that the policy is pulled towards: demonstration-regularized RL. ``None``: plain PPO.
        prior_coef: Initial weight of the pull: ``KL(pi || pi_BC)`` for discrete actions, the squared distance
            of the Gaussian's mean to the prior's action (both scaled to [-1, 1]) for continuous ones.
        prior_decay_steps: The weight decays linearly to 0 over this many env steps; 0 keeps it constant.
        init_from_prior: Start the actor from the prior's weights (the actor then takes the prior's
            architecture and normalization; ``hidden_sizes`` is the critic's only).
    """

    env: str = "CartPole-v1"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    total_steps: int = 100_000

    num_envs: int = 8
    num_steps: int = 128
    gamma: float = 0.99
    gae_lambda: float = 0.95
    lr: float = 2.5e-4
    anneal_lr: bool = True
    update_epochs: int = 4
    num_minibatches: int = 4
    clip_coef: float = 0.2
    clip_vloss: bool = True
    norm_adv: bool = True
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = None

    encoder: Literal["auto", "mlp", "conv", "cnn"] = "auto"
    hidden_sizes: tuple[int, ...] = (64, 64)
    init_log_std: float = 0.0

    seed: int = 0
    checkpoint_every: int = 50_000
    keep_checkpoints: int = 2
    tensorboard: bool = False

    prior: str | None = None
    prior_coef: float = 1.0
    prior_decay_steps: int = 0
    init_from_prior: bool = False

    @property
    def batch_size(self) -> int:
        """Transitions per rollout: ``num_envs * num_steps``."""
        return self.num_envs * self.num_steps

    @property
    def num_iterations(self) -> int:
        """Rollouts (each followed by an update) to reach ``total_steps``."""
        return -(-self.total_steps // self.batch_size)

    def __post_init__(self) -> None:
        check(isinstance(self.env, str) and bool(self.env), "env", "a gymnasium id such as 'CartPole-v1'", self.env)
        check(isinstance(self.env_kwargs, dict), "env_kwargs", "a JSON object", self.env_kwargs)
        check(self.total_steps >= 1, "total_steps", ">= 1", self.total_steps)
        check(1 <= self.num_envs <= 4096, "num_envs", "in [1, 4096]", self.num_envs)
        check(self.num_steps >= 1, "num_steps", ">= 1", self.num_steps)
        check(0 < self.gamma <= 1, "gamma", "in (0, 1]", self.gamma)
        check(0 <= self.gae_lambda <= 1, "gae_lambda", "in [0, 1]", self.gae_lambda)
        check(self.lr > 0 and math.isfinite(self.lr), "lr", "a finite number > 0", self.lr)
        check(self.update_epochs >= 1, "update_epochs", ">= 1", self.update_epochs)
        check(
            1 <= self.num_minibatches <= self.batch_size and self.batch_size % self.num_minibatches == 0,
            "num_minibatches",
            f"a divisor of num_envs * num_steps = {self.batch_size}",
            self.num_minibatches,
        )
        check(self.clip_coef > 0, "clip_coef", "> 0", self.clip_coef)
        check(self.ent_coef >= 0, "ent_coef", ">= 0", self.ent_coef)
        check(self.vf_coef >= 0, "vf_coef", ">= 0", self.vf_coef)
        check(self.max_grad_norm > 0, "max_grad_norm", "> 0", self.max_grad_norm)
        check(self.target_kl is None or self.target_kl > 0, "target_kl", "> 0 or null", self.target_kl)
        check(
            1 <= len(self.hidden_sizes) <= 16 and all(0 < h <= 65536 for h in self.hidden_sizes),
            "hidden_sizes",
            "1 to 16 widths in [1, 65536]",
            self.hidden_sizes,
        )
        check(self.encoder in ("auto", "mlp", "conv", "cnn"), "encoder", "auto|mlp|conv|cnn", self.encoder)
        check(-5 <= self.init_log_std <= 2, "init_log_std", "in [-5, 2]", self.init_log_std)
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
        check(not self.init_from_prior or self.prior is not None, "init_from_prior", "false without a prior", True)
