"""RLIF: interventions as reward, an implicit Q-learning critic, and advantage-weighted behaviour cloning.

RLIF (Luo et al., *RLIF: Interactive Imitation Learning as Reinforcement Learning*, ICLR 2024) plays its rounds
as HG-DAgger does (the policy acts, the intervener takes over while its rule fires) but learns by off-policy RL
on *all* the data with one reward: -1 on the step that made the intervener step in, 0 everywhere else
(:func:`rlif_rewards`; the env's own reward is not used). It does not copy the intervener's actions blindly,
so it can do better than the intervener when the interventions are suboptimal.

The learner here is IQL (Kostrikov et al., *Offline Reinforcement Learning with Implicit Q-Learning*, 2021),
which fits clonekit's policy contract because its policy extraction is weighted behaviour cloning:

1. a critic (:class:`IQLCritic`) is fitted on the run's transitions (:func:`fit_critic`): twin ``Q(s, a)``
   (discrete actions: one output per action; continuous: ``Q`` takes ``(s, a)``), ``V(s)`` by expectile
   regression on the target ``Q`` of the data's own action (no action outside the data is ever valued), and
   ``Q`` regressed on ``r + gamma * (1 - terminated) * V(s')`` with Polyak-averaged target ``Q`` networks;
2. every step gets the weight ``exp(temperature * (Q(s, a) - V(s)))``, clipped at ``max_weight`` and then
   divided by the mean (:func:`advantage_weights`);
3. the policy (``bc``, ``continuous_bc``, ...) is trained by the ordinary :func:`clonekit.train.train` with
   those weights as its sampling weights (the run's ``weight`` stream), so it saves, loads, evaluates and
   exports like any other clonekit policy.

``s'`` is the next step's observation in the same episode. An episode's last step bootstraps only when the
episode was truncated, not terminated; the observation after it is not stored, so it bootstraps from its own
observation, ``V(s)`` (the cut is at an arbitrary step, and the state one step later is close to it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from clonekit.config import check
from clonekit.nn import Normalizer
from clonekit.nn.critics import TwinQ, expectile_loss
from clonekit.nn.encoders import mlp
from clonekit.policies.from_data import auto_normalize_obs


@dataclass(frozen=True)
class CriticConfig:
    """Settings of RLIF's IQL critic and of the advantage weights it gives.

    Args:
        gamma: Discount of the intervention penalty; ``1 / (1 - gamma)`` is roughly how many steps ahead an
            intervention still lowers a step's value.
        expectile: ``tau`` of the expectile regression of ``V(s)`` on ``Q(s, a)`` of the data's actions: 0.5 fits
            their mean, towards 1 their best (IQL: 0.7-0.9).
        temperature: Inverse temperature ``beta`` of the weights ``exp(beta * (Q(s, a) - V(s)))``; 0 weights
            every step alike (plain behaviour cloning on all data).
        max_weight: Weights are clipped at this value before they are normalized to mean 1.
        steps: Gradient steps of the critic (``Q`` and ``V`` take one each per step).
        batch_size: Transitions per gradient step.
        lr: Adam learning rate of ``Q`` and ``V``.
        hidden_sizes: Widths of the MLPs of ``Q`` and ``V`` (over the flattened, normalized observation, with the
            action appended for continuous actions).
        polyak: Rate of the target ``Q`` networks' moving average (1: copy every step).
    """

    gamma: float = 0.9
    expectile: float = 0.8
    temperature: float = 3.0
    max_weight: float = 100.0
    steps: int = 600
    batch_size: int = 256
    lr: float = 1e-3
    hidden_sizes: tuple[int, ...] = (128, 128)
    polyak: float = 0.02

    def __post_init__(self) -> None:
        check(0 <= self.gamma < 1, "gamma", "in [0, 1)", self.gamma)
        check(0 < self.expectile < 1, "expectile", "in (0, 1)", self.expectile)
        temperature = self.temperature
        check(math.isfinite(temperature) and temperature >= 0, "temperature", "a finite number >= 0", temperature)
        check(math.isfinite(self.max_weight) and self.max_weight >= 1, "max_weight", "a number >= 1", self.max_weight)
        check(self.steps >= 1, "steps", ">= 1", self.steps)
        check(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
        check(math.isfinite(self.lr) and self.lr > 0, "lr", "a finite number > 0", self.lr)
        check(
            1 <= len(self.hidden_sizes) <= 8 and all(0 < h <= 4096 for h in self.hidden_sizes),
            "hidden_sizes",
            "1 to 8 widths in [1, 4096]",
            self.hidden_sizes,
        )
        check(0 < self.polyak <= 1, "polyak", "in (0, 1]", self.polyak)


def rlif_rewards(intervention: np.ndarray, is_demo: bool, delay: int = 0) -> np.ndarray:
    """RLIF's reward ``(T,)`` float32 of one episode with ``intervention`` flags ``(T,)``.

    -1 on the policy step that made the intervener step in, 0 elsewhere; a demonstration (``is_demo``) is all
    0. For an intervention that starts at step ``s``:

    * with no reaction delay the intervener took over at the very step its rule fired, so the proposal it
      rejected never ran and is not in the data: the -1 goes on step ``s - 1``, the action that led into the
      state where the policy went wrong (RLIF's own convention);
    * with a reaction delay of ``d >= 1`` steps the rule fired at step ``s - d`` and that step's action ran:
      the -1 goes on step ``s - d``. It is never put before the policy's own stretch of steps that ends at
      ``s`` (at the earliest, on the first step after the previous intervention, or on step 0);
    * an intervention at step 0 has no policy step before it in the episode, so it gives no reward.

    The intervention steps themselves get 0: they are ordinary transitions for the critic.
    """
    flags = np.asarray(intervention, dtype=bool)
    rewards = np.zeros(len(flags), dtype=np.float32)
    if is_demo:
        return rewards
    check(delay >= 0, "delay", ">= 0", delay)
    lag = max(delay, 1)
    starts = np.flatnonzero(flags & ~np.concatenate([[False], flags[:-1]]))
    ends = np.flatnonzero(flags & ~np.concatenate([flags[1:], [False]]))  # last step of each intervention
    for start in starts.tolist():
        if start == 0:
            continue
        before = ends[ends < start]
        first_own = int(before[-1]) + 1 if len(before) else 0  # the policy's stretch that ends at `start`
        rewards[max(start - lag, first_own)] = -1.0
    return rewards


@dataclass(frozen=True)
class Transitions:
    """A dataset's steps as one table for the critic (``N`` steps in all).

    Args:
        obs: ``(N, *obs_shape)`` float32 observations.
        action: ``(N,)`` int64 discrete actions, or ``(N, *action_shape)`` float32 continuous ones.
        reward: ``(N,)`` float32 RLIF rewards.
        next_index: ``(N,)`` int64 row of ``s'``: the next step of the episode (its own row at an episode's end).
        bootstrap: ``(N,)`` float32: 0 where the step terminated its episode (no value after it), else 1.
    """

    obs: Tensor
    action: Tensor
    reward: Tensor
    next_index: Tensor
    bootstrap: Tensor

    @classmethod
    def from_episodes(
        cls, episodes: Sequence[dict[str, np.ndarray]], is_demo: Sequence[bool], discrete: bool, delay: int = 0
    ) -> Transitions:
        """The transitions of ``episodes`` (each with ``obs``, ``action``, ``terminated`` and ``intervention``),
        rewarded by :func:`rlif_rewards`. The episodes are only read."""
        lengths = np.array([len(e["action"]) for e in episodes], dtype=np.int64)
        ends = np.cumsum(lengths) - 1
        next_index = np.arange(int(lengths.sum()), dtype=np.int64) + 1
        next_index[ends] = ends  # the last step bootstraps from its own observation (when truncated)
        reward = [rlif_rewards(e["intervention"], demo, delay) for e, demo in zip(episodes, is_demo, strict=True)]
        terminated = np.concatenate([np.asarray(e["terminated"], dtype=bool) for e in episodes])
        action = np.concatenate([np.asarray(e["action"]) for e in episodes])
        return cls(
            obs=torch.from_numpy(np.concatenate([np.asarray(e["obs"], dtype=np.float32) for e in episodes])),
            action=torch.from_numpy(action.astype(np.int64 if discrete else np.float32)),
            reward=torch.from_numpy(np.concatenate(reward)),
            next_index=torch.from_numpy(next_index),
            bootstrap=torch.from_numpy((~terminated).astype(np.float32)),
        )

    def __len__(self) -> int:
        return len(self.reward)


class IQLCritic(nn.Module):
    """Twin ``Q(s, a)`` with target copies and ``V(s)``, each an MLP over the normalized, flattened observation.

    Discrete actions (``num_actions``): ``Q`` has one output per action, read at the data's action ``(B,)``.
    Continuous actions (``num_actions=None``): ``Q`` takes the observation with the action ``(B, *action_shape)``
    appended. The normalization statistics are fitted on the data the critic learns from.
    """

    def __init__(
        self,
        obs_shape: Sequence[int],
        num_actions: int | None,
        action_shape: Sequence[int],
        hidden_sizes: Sequence[int],
    ) -> None:
        super().__init__()
        self.num_actions = num_actions
        self.normalizer = Normalizer(obs_shape, auto_normalize_obs(obs_shape))
        features = math.prod(obs_shape)
        action_dim = 0 if num_actions is not None else math.prod(action_shape)
        self.q = TwinQ(features, num_actions, action_dim, hidden_sizes)  # online q.q, targets q.q_target
        self.v = mlp(features, hidden_sizes, 1)

    def features(self, obs: Tensor) -> Tensor:
        """Normalized, flattened observations ``(B, F)`` of ``(B, *obs_shape)``: the input of every network."""
        return self.normalizer(obs).flatten(1)

    def twin_q(self, features: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """The two online ``Q(s, a)`` ``(B,)`` of :meth:`features` ``(B, F)`` and actions."""
        return self.q.online(features, action)

    def target_q(self, features: Tensor, action: Tensor) -> Tensor:
        """The smaller of the two target ``Q(s, a)`` ``(B,)``."""
        return self.q.target(features, action)

    def value(self, features: Tensor) -> Tensor:
        """``V(s)`` ``(B,)`` of :meth:`features` ``(B, F)``."""
        return self.v(features).squeeze(1)

    @torch.no_grad()
    def advantage(self, obs: Tensor, action: Tensor) -> Tensor:
        """``Q(s, a) - V(s)`` ``(B,)`` of observations ``(B, *obs_shape)`` and actions, with the target ``Q``
        (IQL's policy extraction)."""
        features = self.features(obs)
        return self.target_q(features, action) - self.value(features)

    def update_target(self, rate: float) -> None:
        """Move the target ``Q`` networks towards the online ones by ``rate``."""
        self.q.update_target(rate)


def fit_critic(
    data: Transitions, num_actions: int | None, config: CriticConfig, seed: int
) -> tuple[IQLCritic, dict[str, float]]:
    """Fit an :class:`IQLCritic` to ``data`` for ``config.steps`` steps; returns it with its last losses.

    Seeded by ``seed`` (initialization and batches); torch's global random state is left as it was, and
    ``data`` is only read. Deterministic on the CPU for a given number of torch threads.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        critic = IQLCritic(data.obs.shape[1:], num_actions, data.action.shape[1:], config.hidden_sizes)
    critic.normalizer.fit(data.obs.numpy())
    with torch.no_grad():  # the normalizer is fixed from here on: every observation is encoded once
        features = torch.cat([critic.features(chunk) for chunk in torch.split(data.obs, 4096)])
    # Fused Adam: one kernel per update instead of a Python loop over the parameters (small networks).
    q_optimizer = torch.optim.Adam(critic.q.q.parameters(), lr=config.lr, fused=True)
    v_optimizer = torch.optim.Adam(critic.v.parameters(), lr=config.lr, fused=True)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(config.steps):
        rows = torch.randint(0, len(data), (config.batch_size,), generator=generator)
        x, action = features[rows], data.action[rows]
        # V: expectile regression on the target Q of the data's own action.
        with torch.no_grad():
            q_data = critic.target_q(x, action)
            next_value = critic.value(features[data.next_index[rows]])
        v_loss = expectile_loss(q_data - critic.value(x), config.expectile)
        v_optimizer.zero_grad(set_to_none=True)
        v_loss.backward()
        v_optimizer.step()
        # Q: one-step backup through V of the next observation.
        target = data.reward[rows] + config.gamma * data.bootstrap[rows] * next_value
        first, second = critic.twin_q(x, action)
        q_loss = (first - target).square().mean() + (second - target).square().mean()
        q_optimizer.zero_grad(set_to_none=True)
        q_loss.backward()
        q_optimizer.step()
        critic.update_target(config.polyak)
    info = {"v_loss": float(v_loss.detach()), "q_loss": float(q_loss.detach())}
    critic.eval()
    return critic, info


def advantage_weights(advantage: np.ndarray, temperature: float, max_weight: float) -> np.ndarray:
    """``exp(temperature * advantage)`` ``(N,)`` float32, clipped at ``max_weight``, divided by its mean."""
    # Clipped in the exponent, so a large advantage cannot overflow.
    scaled = np.minimum(temperature * np.asarray(advantage, dtype=np.float64), math.log(max_weight))
    weights = np.exp(scaled)
    return (weights / weights.mean()).astype(np.float32)


def discrete_actions(space: gym.spaces.Space) -> int | None:
    """The number of actions of a ``Discrete`` action space; ``None`` for any other (continuous) space."""
    return int(space.n) if isinstance(space, gym.spaces.Discrete) else None


def rlif_weights(
    episodes: Sequence[dict[str, np.ndarray]],
    is_demo: Sequence[bool],
    num_actions: int | None,
    config: CriticConfig,
    seed: int,
    delay: int = 0,
) -> list[np.ndarray]:
    """RLIF's sampling weight of every step of ``episodes``: one ``(T,)`` float32 array per episode.

    Fits the critic on all of them (:func:`fit_critic`; rewards from :func:`rlif_rewards` with the reaction
    ``delay``) and turns its advantages into weights (:func:`advantage_weights`). ``num_actions``: the number of
    discrete actions, ``None`` for continuous actions. The episodes are only read.
    """
    data = Transitions.from_episodes(episodes, is_demo, num_actions is not None, delay)
    critic, _ = fit_critic(data, num_actions, config, seed)
    advantage = np.concatenate(
        [
            critic.advantage(data.obs[rows], data.action[rows]).numpy()
            for rows in torch.split(torch.arange(len(data)), 4096)
        ]
    )
    weights = advantage_weights(advantage, config.temperature, config.max_weight)
    return np.split(weights, np.cumsum([len(e["action"]) for e in episodes])[:-1])


__all__ = [
    "CriticConfig",
    "IQLCritic",
    "Transitions",
    "advantage_weights",
    "discrete_actions",
    "expectile_loss",
    "fit_critic",
    "rlif_rewards",
    "rlif_weights",
]
