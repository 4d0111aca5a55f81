"""Adversarial imitation: GAIL, AIRL and GAIfO, a discriminator trained against PPO's own rollouts.

A discriminator ``D`` learns to tell expert transitions (from a clonekit dataset) from the policy's, and its
judgement is PPO's reward (:class:`clonekit.rl.ppo.RewardModel`; PPO itself is unchanged). Every PPO
iteration, before the policy update, ``D`` takes ``disc_updates`` Adam steps of binary cross-entropy (expert
label 1, policy label 0) on minibatches of the fresh rollout and of the expert transitions, then rewards that
rollout. The logit ``l`` of ``D`` (``D = sigmoid(l)``, the probability of "expert") is, per method:

* ``gail`` (Ho & Ermon 2016): ``l = f(s, a)``, an MLP on the normalized observation and the action (one-hot for
  discrete actions, [-1, 1] units for continuous ones);
* ``airl`` (Fu et al. 2018): ``l = f(s, a, s') - log pi(a | s)`` with ``f = g(s, a) + gamma (1 - done) h(s') - h(s)``
  (``g`` the reward, ``h`` a shaping potential; ``log pi`` the current policy's, for expert transitions too);
* ``gaifo`` (Torabi et al. 2018): ``l = f(s, s')`` on observation pairs, so the demonstrations need no ``action``.

Reward (``reward``): ``positive`` is ``-log(1 - D) = softplus(l)`` (GAIL's paper; always > 0, so in an env whose
episodes end on failure, such as CartPole, it also pays for merely surviving), ``logit`` is ``l = log D -
log(1 - D)`` (AIRL's; can be negative). ``auto`` takes ``positive`` for gail and gaifo, ``logit`` for airl.
Regularization: an optional zero-centred gradient penalty ``grad_penalty * |d l / d x|^2`` on inputs mixed
between expert and policy ones (as WGAN-GP / DAC interpolate), and the observations are standardized with the
expert's statistics (buffers of ``D``).

Expert transitions: step ``t`` of an episode with ``s' =`` step ``t + 1``'s observation; an episode's last step
has no stored ``s'``, so ``gaifo`` drops it, ``airl`` keeps it only when it ``terminated`` (``h(s')`` is then
unused) and ``gail`` keeps every step. ``subsample`` keeps every k-th transition of each episode from a random
offset, as GAIL's paper subsamples its trajectories.

The run directory is PPO's (:mod:`clonekit.rl.ppo`): ``load_policy(RUN)`` is the final actor; every checkpoint
also holds ``D``, its Adam state and generator (exact resume), and ``RUN/adversarial.json`` records the settings
and the demonstrations' fingerprint (a resume checks both).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clonekit.checkpoint import atomic_save_tensors, optimizer_from_tensors, optimizer_to_tensors, read_json
from clonekit.config import check, check_same_config, config_to_json
from clonekit.data import Dataset
from clonekit.errors import CheckpointError, ConfigError
from clonekit.io import atomic_write_json
from clonekit.nn import MLPEncoder
from clonekit.rl.ads import ScheduledDiscount
from clonekit.rl.agent import Actor, ActorCritic
from clonekit.rl.config import PPOConfig
from clonekit.rl.ppo import Rollout, UpdateHook, train_ppo
from clonekit.rl.vector import VectorEnv, gym_env_factories
from clonekit.seeding import derive_seed

METHODS = ("gail", "airl", "gaifo")
PROVENANCE_FILE = "adversarial.json"
DISCRIMINATOR_FILE = "discriminator.safetensors"


@dataclass(frozen=True)
class AdversarialConfig:
    """Adversarial imitation (GAIL, AIRL, GAIfO) with PPO on a gymnasium env.

    Args:
        method: ``gail`` (``D(s, a)``), ``airl`` (``g(s, a) + gamma h(s') - h(s) - log pi``) or ``gaifo``
            (``D(s, s')``, needs no actions).
        demos: Dataset directory of expert demonstrations recorded in ``env`` (``obs`` as the env's ``gym``
            family records it; ``action`` for gail and airl).
        env: A gymnasium id (``CartPole-v1``) or ``gym:ID``.
        env_kwargs: Keyword arguments for the env, as :class:`clonekit.rl.PPOConfig` takes them.
        total_steps: PPO env steps (summed over the envs).
        seed: Seeds PPO, the discriminator's initialization and minibatches, and the subsampling.

        reward: ``positive`` (``-log(1 - D)``), ``logit`` (``log D - log(1 - D)``) or ``auto`` (see the module
            docstring).
        subsample: Keep every k-th expert transition of each episode (1: all).
        disc_hidden_sizes: Widths of the discriminator's MLPs (``f``; for airl ``g`` and ``h`` each).
        disc_lr: The discriminator's Adam learning rate.
        disc_updates: Discriminator minibatch steps per PPO iteration.
        disc_batch_size: Expert and policy transitions per discriminator minibatch (each).
        grad_penalty: Weight of the zero-centred gradient penalty on mixed inputs (0: none).

        discount_schedule: ``fixed`` (PPO's ``gamma`` throughout) or ``ads`` (Automatic Discount Scheduling,
            :mod:`clonekit.rl.ads`: ``alpha ** (1 / progress)``, capped at ``gamma``).
        ads_alpha: ADS's ``alpha`` in (0, 1): the discount at a progress of one matched expert step.
        ads_tolerance: ADS's matching distance, in expert-standardized observation units.
        ads_window: ADS's look-ahead along the expert sequence (1: every expert step must be matched).

        num_envs, num_steps, lr, gamma, gae_lambda, update_epochs, num_minibatches, ent_coef, hidden_sizes,
        checkpoint_every: PPO's settings (see :class:`clonekit.rl.PPOConfig`).
    """

    method: Literal["gail", "airl", "gaifo"] = "gail"
    demos: str = ""
    env: str = "CartPole-v1"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    total_steps: int = 100_000
    seed: int = 0

    reward: Literal["auto", "positive", "logit"] = "auto"
    subsample: int = 1
    disc_hidden_sizes: tuple[int, ...] = (64, 64)
    disc_lr: float = 3e-4
    disc_updates: int = 4
    disc_batch_size: int = 256
    grad_penalty: float = 0.0

    discount_schedule: Literal["fixed", "ads"] = "fixed"
    ads_alpha: float = 0.2
    ads_tolerance: float = 0.5
    ads_window: int = 4

    num_envs: int = 8
    num_steps: int = 128
    lr: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    update_epochs: int = 4
    num_minibatches: int = 4
    ent_coef: float = 0.0
    hidden_sizes: tuple[int, ...] = (64, 64)
    checkpoint_every: int = 50_000

    def __post_init__(self) -> None:
        check(self.method in METHODS, "method", "|".join(METHODS), self.method)
        check(bool(self.demos), "demos", "a dataset directory", self.demos)
        check(self.reward in ("auto", "positive", "logit"), "reward", "auto|positive|logit", self.reward)
        check(self.subsample >= 1, "subsample", ">= 1", self.subsample)
        check(
            1 <= len(self.disc_hidden_sizes) <= 16 and all(0 < h <= 65536 for h in self.disc_hidden_sizes),
            "disc_hidden_sizes",
            "1 to 16 widths in [1, 65536]",
            self.disc_hidden_sizes,
        )
        check(self.disc_lr > 0 and math.isfinite(self.disc_lr), "disc_lr", "a finite number > 0", self.disc_lr)
        check(self.disc_updates >= 0, "disc_updates", ">= 0", self.disc_updates)
        check(self.disc_batch_size >= 1, "disc_batch_size", ">= 1", self.disc_batch_size)
        check(
            self.grad_penalty >= 0 and math.isfinite(self.grad_penalty),
            "grad_penalty",
            "a finite number >= 0",
            self.grad_penalty,
        )
        check(self.discount_schedule in ("fixed", "ads"), "discount_schedule", "fixed|ads", self.discount_schedule)
        check(0 < self.ads_alpha < 1, "ads_alpha", "a number in (0, 1)", self.ads_alpha)
        check(
            self.ads_tolerance > 0 and math.isfinite(self.ads_tolerance),
            "ads_tolerance",
            "a finite number > 0",
            self.ads_tolerance,
        )
        check(self.ads_window >= 1, "ads_window", ">= 1", self.ads_window)
        if self.discount_schedule == "ads":
            check(self.method == "gaifo", "discount_schedule", "ads only with method gaifo", self.method)
        self.ppo()  # PPO's own checks name the field

    @property
    def reward_form(self) -> str:
        """The reward used: ``positive`` or ``logit`` (``auto`` resolved by method)."""
        if self.reward != "auto":
            return self.reward
        return "logit" if self.method == "airl" else "positive"

    def ppo(self) -> PPOConfig:
        """The PPO config of the run."""
        return PPOConfig(
            env=self.env,
            env_kwargs=dict(self.env_kwargs),
            total_steps=self.total_steps,
            num_envs=self.num_envs,
            num_steps=self.num_steps,
            gamma=self.gamma,
            gae_lambda=self.gae_lambda,
            lr=self.lr,
            update_epochs=self.update_epochs,
            num_minibatches=self.num_minibatches,
            ent_coef=self.ent_coef,
            encoder="mlp",
            hidden_sizes=self.hidden_sizes,
            seed=self.seed,
            checkpoint_every=self.checkpoint_every,
            keep_checkpoints=1,
        )


@dataclass(frozen=True)
class Transitions:
    """Expert transitions: ``obs`` ``(M, D)`` float32, ``actions`` ``(M,)`` int64 or ``(M, A)`` float32 in
    [-1, 1] units (``None`` for observation-only data), ``next_obs`` ``(M, D)``, ``terminated`` ``(M,)`` bool."""

    obs: Tensor
    actions: Tensor | None
    next_obs: Tensor
    terminated: Tensor


def subsample_offsets(num_episodes: int, every: int, seed: int) -> np.ndarray:
    """``(num_episodes,)`` the first kept step of each episode when keeping every ``every``-th one (drawn from
    ``seed``; all 0 when ``every`` is 1), so another consumer (e.g. BC in a study) can keep the same steps."""
    rng = np.random.default_rng(derive_seed(seed, "adversarial:subsample"))
    return rng.integers(every, size=num_episodes)


def expert_transitions(
    demos: Dataset, method: str, action_space: gymnasium.Space[Any], subsample: int, seed: int
) -> Transitions:
    """The expert transitions of ``demos`` that ``method`` trains on (see the module docstring); a one-line
    ``DatasetError`` when gail or airl get a dataset without ``action``."""
    if method in ("gail", "airl"):
        demos.require_streams(["action"], method)
    obs_all = np.asarray(demos.column("obs"), dtype=np.float32).reshape(demos.num_steps, -1)
    terminated_all = np.asarray(demos.column("terminated"), dtype=bool)
    offsets = subsample_offsets(demos.num_episodes, subsample, seed)
    rows, nexts, ends = [], [], []
    for start, length, offset in zip(
        demos.episode_starts.tolist(), demos.episode_lengths.tolist(), offsets.tolist(), strict=True
    ):
        for t in range(offset, length, subsample):
            last = t == length - 1
            ended = bool(terminated_all[start + t]) and last
            if last and (method == "gaifo" or (method == "airl" and not ended)):
                continue  # no stored next observation, and this method needs one
            rows.append(start + t)
            nexts.append(start + t + (0 if last else 1))  # a terminated last step: s' unused (masked by done)
            ends.append(ended)
    if not rows:
        raise ConfigError(f"demos: {demos.path} leaves no expert transitions for {method} (episodes too short)")
    index = np.asarray(rows)
    actions: Tensor | None = None
    if "action" in demos.streams:
        raw = np.asarray(demos.column("action"))[index]
        if isinstance(action_space, gymnasium.spaces.Discrete):
            actions = torch.from_numpy(raw.astype(np.int64).reshape(-1))
        else:
            assert isinstance(action_space, gymnasium.spaces.Box)
            low, high = action_space.low.ravel(), action_space.high.ravel()
            unit = 2.0 * (raw.reshape(len(index), -1) - low) / (high - low) - 1.0
            actions = torch.from_numpy(np.clip(unit, -1.0, 1.0).astype(np.float32))
    return Transitions(
        torch.from_numpy(obs_all[index]),
        actions,
        torch.from_numpy(obs_all[np.asarray(nexts)]),
        torch.from_numpy(np.asarray(ends, dtype=bool)),
    )


class Discriminator(nn.Module):
    """The logit ``l`` of ``D`` for a batch of transitions (see the module docstring for each method).

    Inputs: ``obs``, ``next_obs`` ``(B, D)``; ``actions`` ``(B,)`` int64 or ``(B, A)`` in [-1, 1] units;
    ``terminated`` ``(B,)`` bool; ``log_prob`` ``(B,)`` (airl only). Output ``(B,)``.
    """

    obs_mean: Tensor
    obs_std: Tensor

    def __init__(
        self,
        method: str,
        obs_dim: int,
        action_dim: int,
        discrete: bool,
        hidden_sizes: tuple[int, ...],
        gamma: float,
        obs_mean: Tensor,
        obs_std: Tensor,
    ) -> None:
        super().__init__()
        self.method, self.discrete, self.action_dim, self.gamma = method, discrete, action_dim, gamma
        self.register_buffer("obs_mean", obs_mean.float())
        self.register_buffer("obs_std", obs_std.float())
        second = obs_dim if method == "gaifo" else action_dim
        self.f = MLPEncoder((obs_dim + second,), hidden_sizes)
        self.f_out = nn.Linear(self.f.out_dim, 1)
        if method == "airl":  # f above is AIRL's g(s, a); h is the shaping potential
            self.h = MLPEncoder((obs_dim,), hidden_sizes)
            self.h_out = nn.Linear(self.h.out_dim, 1)

    def normalize(self, obs: Tensor) -> Tensor:
        """Observations standardized with the expert's statistics."""
        return (obs - self.obs_mean) / self.obs_std

    def action_features(self, actions: Tensor) -> Tensor:
        """``(B, action_dim)``: one-hot for discrete actions, clipped [-1, 1] values for continuous ones."""
        if self.discrete:
            return F.one_hot(actions.long(), self.action_dim).float()
        return actions.float().clamp(-1.0, 1.0)

    def inputs(self, obs: Tensor, actions: Tensor | None, next_obs: Tensor) -> Tensor:
        """The input of ``f``: ``(B, D + D)`` for gaifo, ``(B, D + action_dim)`` otherwise."""
        second = self.normalize(next_obs) if self.method == "gaifo" else self.action_features(actions)  # type: ignore[arg-type]
        return torch.cat([self.normalize(obs), second], -1)

    def potential(self, obs: Tensor) -> Tensor:
        """AIRL's ``h(s)`` ``(B,)``."""
        return self.h_out(self.h(self.normalize(obs))).squeeze(-1)

    def logits_from_inputs(
        self, inputs: Tensor, obs: Tensor, next_obs: Tensor, terminated: Tensor, log_prob: Tensor | None
    ) -> Tensor:
        """``l`` from ``f``'s precomputed input (so a gradient penalty can differentiate with respect to it)."""
        f = self.f_out(self.f(inputs)).squeeze(-1)
        if self.method != "airl":
            return f
        assert log_prob is not None
        shaped = f + self.gamma * (~terminated).float() * self.potential(next_obs) - self.potential(obs)
        return shaped - log_prob

    def forward(
        self, obs: Tensor, actions: Tensor | None, next_obs: Tensor, terminated: Tensor, log_prob: Tensor | None
    ) -> Tensor:
        return self.logits_from_inputs(self.inputs(obs, actions, next_obs), obs, next_obs, terminated, log_prob)


class AdversarialReward:
    """PPO's reward model (:class:`clonekit.rl.ppo.RewardModel`): trains the discriminator on each rollout
    against the expert transitions, then rewards the rollout with it."""

    def __init__(self, config: AdversarialConfig, expert: Transitions, discriminator: Discriminator) -> None:
        self.config, self.expert, self.discriminator = config, expert, discriminator
        self.optimizer = torch.optim.Adam(discriminator.parameters(), lr=config.disc_lr)
        self.generator = torch.Generator().manual_seed(derive_seed(config.seed, "adversarial:discriminator"))
        self.provenance: dict[str, Any] = {}

    def _expert_log_prob(self, agent: ActorCritic, index: Tensor) -> Tensor | None:
        if self.config.method != "airl":
            return None
        assert self.expert.actions is not None
        with torch.no_grad():
            params = agent.distribution(self.expert.obs[index])
            return agent.log_prob_entropy(params, self.expert.actions[index])[0]

    def rewards(self, rollout: Rollout, agent: ActorCritic) -> tuple[Tensor, dict[str, float]]:
        """Train ``D`` on ``rollout`` (``disc_updates`` steps), then return its rewards ``(T, N)``."""
        t_len, n = rollout.log_prob.shape
        obs = rollout.obs.reshape(t_len * n, -1).float()
        next_obs = rollout.next_obs.reshape(t_len * n, -1).float()
        actions = rollout.actions.reshape(t_len * n, *rollout.actions.shape[2:])
        terminated, log_prob = rollout.terminated.reshape(-1), rollout.log_prob.reshape(-1)
        losses, expert_acc, policy_acc = [], [], []
        size = self.config.disc_batch_size
        with torch.enable_grad():
            for _ in range(self.config.disc_updates):
                mine = torch.randint(len(obs), (size,), generator=self.generator)
                theirs = torch.randint(len(self.expert.obs), (size,), generator=self.generator)
                ex = self.expert
                ex_actions = ex.actions[theirs] if ex.actions is not None else None
                ex_logp = self._expert_log_prob(agent, theirs)
                ex_in = self.discriminator.inputs(ex.obs[theirs], ex_actions, ex.next_obs[theirs])
                my_in = self.discriminator.inputs(obs[mine], actions[mine], next_obs[mine])
                ex_logit = self.discriminator.logits_from_inputs(
                    ex_in, ex.obs[theirs], ex.next_obs[theirs], ex.terminated[theirs], ex_logp
                )
                my_logit = self.discriminator.logits_from_inputs(
                    my_in, obs[mine], next_obs[mine], terminated[mine], log_prob[mine]
                )
                loss = F.binary_cross_entropy_with_logits(
                    ex_logit, torch.ones_like(ex_logit)
                ) + F.binary_cross_entropy_with_logits(my_logit, torch.zeros_like(my_logit))
                if self.config.grad_penalty > 0:
                    loss = loss + self.config.grad_penalty * self._penalty(ex_in, my_in)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                losses.append(float(loss.detach()))
                expert_acc.append(float((ex_logit > 0).float().mean()))
                policy_acc.append(float((my_logit < 0).float().mean()))
        with torch.no_grad():
            logit = self.discriminator(obs, actions, next_obs, terminated, log_prob)
            reward = F.softplus(logit) if self.config.reward_form == "positive" else logit
        info = {"learned_reward": float(reward.mean())}
        if losses:
            info |= {
                "disc_loss": float(np.mean(losses)),
                "disc_expert_acc": float(np.mean(expert_acc)),
                "disc_policy_acc": float(np.mean(policy_acc)),
            }
        return reward.reshape(t_len, n), info

    def _penalty(self, expert_inputs: Tensor, policy_inputs: Tensor) -> Tensor:
        """Mean ``|d f / d x|^2`` at inputs mixed between expert and policy ones (uniform weights)."""
        mix = torch.rand((len(expert_inputs), 1), generator=self.generator)
        mixed = (mix * expert_inputs.detach() + (1 - mix) * policy_inputs.detach()).requires_grad_(True)
        out = self.discriminator.f_out(self.discriminator.f(mixed)).sum()
        (grad,) = torch.autograd.grad(out, mixed, create_graph=True)
        return grad.square().sum(-1).mean()

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """The discriminator's weights, its Adam state and generator, and the run's provenance."""
        opt_tensors, opt_rest = optimizer_to_tensors(self.optimizer.state_dict())
        tensors = {f"disc.{k}": v for k, v in self.discriminator.state_dict().items()}
        tensors |= {f"opt.{k}": v for k, v in opt_tensors.items()}
        tensors["generator"] = self.generator.get_state()
        return tensors, {"optimizer": opt_rest, "provenance": self.provenance}

    def load_state(self, tensors: dict[str, Tensor], rest: dict[str, Any]) -> None:
        """Restore :meth:`state`; a ``CheckpointError`` when the checkpoint was made with other settings or
        demonstrations."""
        if rest.get("provenance") != self.provenance:
            raise CheckpointError(
                "checkpoint: its discriminator was trained with other settings or demonstrations "
                f"({rest.get('provenance')} != {self.provenance})"
            )
        self.discriminator.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("disc.")})
        opt = {k[4:]: v for k, v in tensors.items() if k.startswith("opt.")}
        self.optimizer.load_state_dict(optimizer_from_tensors(opt, rest["optimizer"]))
        self.generator.set_state(tensors["generator"])


def env_spaces(config: AdversarialConfig) -> tuple[gymnasium.spaces.Box, gymnasium.Space[Any]]:
    """The observation space (as PPO sees it) and the action space of ``config.env``."""
    factories, block = gym_env_factories(config.env, config.env_kwargs, 1)
    envs = VectorEnv.for_block(factories, block)
    try:
        return envs.observation_space, envs.action_space
    finally:
        envs.close()


def train_adversarial(
    config: AdversarialConfig,
    out: str | Path,
    resume: bool = False,
    show_progress: bool = True,
    on_update: UpdateHook | None = None,
) -> Actor:
    """Train ``config.method`` into run directory ``out`` (PPO's, see the module docstring); returns the actor.

    ``on_update(env_steps, actor)`` is PPO's hook (e.g. to evaluate every N env steps). With ``resume=True`` an
    interrupted run continues exactly; without it an existing non-empty ``out`` is an error.
    """
    run_dir = Path(out)
    demos = Dataset.open(config.demos)
    obs_space, action_space = env_spaces(config)
    obs_dim = math.prod(obs_space.shape)
    if len(obs_space.shape) != 1:
        raise ConfigError(f"env: {config.env}: expected vector observations for the discriminator, got {obs_space}")
    demo_shape = tuple(demos.streams["obs"].shape) if "obs" in demos.streams else None
    if demo_shape is None or math.prod(demo_shape) != obs_dim:
        raise ConfigError(f"demos: {demos.path}: expected obs of shape {obs_space.shape} (the env's), got {demo_shape}")
    expert = expert_transitions(demos, config.method, action_space, config.subsample, config.seed)
    discrete = isinstance(action_space, gymnasium.spaces.Discrete)
    action_dim = int(action_space.n) if discrete else math.prod(action_space.shape or ())  # type: ignore[attr-defined]
    torch.manual_seed(derive_seed(config.seed, "adversarial:init"))  # PPO reseeds torch before its own networks
    discriminator = Discriminator(
        config.method,
        obs_dim,
        action_dim,
        discrete,
        config.disc_hidden_sizes,
        config.gamma,
        expert.obs.mean(0),
        expert.obs.std(0).clamp_min(1e-3) if len(expert.obs) > 1 else torch.ones(obs_dim),
    )
    reward = AdversarialReward(config, expert, discriminator)
    reward.provenance = {"adversarial_config": config_to_json(config), "demos_fingerprint": demos.fingerprint}
    scheduled: ScheduledDiscount | None = None
    if config.discount_schedule == "ads":
        obs_all = np.asarray(demos.column("obs"), dtype=np.float32).reshape(demos.num_steps, -1)
        episodes = [
            obs_all[start : start + length]
            for start, length in zip(demos.episode_starts.tolist(), demos.episode_lengths.tolist(), strict=True)
        ]
        scheduled = ScheduledDiscount(
            reward,
            episodes,
            discriminator.obs_mean.numpy(),
            discriminator.obs_std.numpy(),
            config.num_envs,
            config.ads_alpha,
            config.gamma,
            config.ads_tolerance,
            config.ads_window,
        )
    if resume and (run_dir / PROVENANCE_FILE).is_file():
        started = read_json(run_dir / PROVENANCE_FILE, "adversarial provenance")
        check_same_config(config, started.get("adversarial_config"), str(run_dir / PROVENANCE_FILE))
    actor = train_ppo(
        config.ppo(),
        run_dir,
        resume=resume,
        show_progress=show_progress,
        on_update=on_update,
        reward_model=scheduled if scheduled is not None else reward,
        discount=scheduled.discount if scheduled is not None else None,
    )
    atomic_save_tensors(dict(discriminator.state_dict()), run_dir / DISCRIMINATOR_FILE)
    atomic_write_json(run_dir / PROVENANCE_FILE, reward.provenance | {"demos": str(config.demos)})
    return actor


__all__ = [
    "METHODS",
    "AdversarialConfig",
    "AdversarialReward",
    "Discriminator",
    "Transitions",
    "expert_transitions",
    "subsample_offsets",
    "train_adversarial",
]
