"""TD3+BC (Fujimoto & Gu, *A Minimalist Approach to Offline Reinforcement Learning*, 2021), continuous actions.

Every network reads the normalized, flattened observation ``x`` ``(B, F)``; actions are scaled to [-1, 1] per
dimension with the range seen in the training data (buffers, as in ``continuous_bc``).

* Twin critics ``Q(x, a)`` regressed on ``r + gamma * (1 - terminated) * min Q_target(x', a')`` with the target
  actor's action smoothed by clipped Gaussian noise, ``a' = clip(pi_target(x') + clip(eps, -c, c), -1, 1)``.
* A deterministic actor ``pi(x) = tanh(MLP(x))`` minimizing ``-lambda * Q_1(x, pi(x)) + mean((pi(x) - a)^2)``
  with ``lambda = alpha / mean|Q_1(x, pi(x))|`` (no gradient through ``lambda``).

The training loop takes one optimizer step over all parameters per batch, so the losses are summed: the
critic's regression target is computed without gradient, and the actor's ``Q_1`` term runs through the critic
with its weights detached (:meth:`clonekit.nn.critics.TwinQ.first_with_fixed_weights`), so each loss reaches
only its own network. Delayed policy updates: the actor term is left out of the loss on all but every
``policy_freq``-th step; the actor's parameters then get no gradient at all (``None``), so Adam leaves them
and their moments untouched, as TD3's separate actor optimizer would. Only on those steps do the target
networks move (:meth:`TD3BCPolicy.after_optimizer_step`) and is ``actor_loss`` in the logged ``info``. The
count of optimizer steps is a buffer, so a resumed run keeps the same rhythm.

The next observation ``x'`` is the second step of an ``obs`` window of length 2 (clipped to the episode, so at
an episode's last step it is the step's own observation): a terminated step does not bootstrap, and the last
step of a truncated episode bootstraps from its own observation (the one after the cut is not stored).
"""

from __future__ import annotations

import copy
import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from clonekit.data import Dataset
from clonekit.nn import Normalizer
from clonekit.nn.critics import TwinQ, polyak_update
from clonekit.nn.encoders import mlp
from clonekit.nn.normalize import actions_from_unit, actions_to_unit, feature_range
from clonekit.policies.base import AttackScores, Policy
from clonekit.policies.td3bc.config import TD3BCConfig


class TD3BCPolicy(Policy):
    """TD3+BC: twin critics with targets and a deterministic actor with a BC term (see the module docstring).

    ``act`` returns ``pi(obs)`` ``(B, A)`` in the data's action range. Training reads ``obs`` as windows
    ``(B, 2, *obs_shape)`` (the step and the next one), ``action`` ``(B, A)``, ``reward`` and ``terminated``
    ``(B,)``.
    """

    name = "td3bc"
    required_streams: ClassVar[tuple[str, ...]] = ("obs", "action", "reward", "terminated")
    action_low: Tensor
    action_high: Tensor
    optimizer_steps: Tensor

    @property
    def deterministic(self) -> bool:
        """The actor is a deterministic function of the observation."""
        return True

    def __init__(self, config: TD3BCConfig) -> None:
        super().__init__()
        self.config = config
        self.action_dim = config.action_shape[0]
        features = math.prod(config.obs_shape)
        self.normalizer = Normalizer(config.obs_shape, config.normalize_obs)
        self.critic = TwinQ(features, None, self.action_dim, config.hidden_sizes)
        self.actor = mlp(features, config.hidden_sizes, self.action_dim)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.register_buffer("action_low", -torch.ones(self.action_dim))
        self.register_buffer("action_high", torch.ones(self.action_dim))
        self.register_buffer("optimizer_steps", torch.zeros((), dtype=torch.int64))

    def prepare(self, dataset: Dataset) -> None:
        self.normalizer.fit(dataset.column_chunks("obs"))  # streamed: a large column is not copied
        low, high = feature_range(dataset.column_chunks("action"), (self.action_dim,))
        self.action_low.copy_(torch.from_numpy(low))
        self.action_high.copy_(torch.from_numpy(high))

    def sample_windows(self) -> dict[str, int | tuple[int, int]]:
        return {"obs": 2}  # the sampled step and the next one (the step itself at its episode's end)

    def features(self, obs: Tensor) -> Tensor:
        """Normalized, flattened observations ``(B, F)`` of ``(B, *obs_shape)``: the input of every network."""
        return self.normalizer(obs).flatten(1)

    def normalize_action(self, actions: Tensor) -> Tensor:
        """Actions ``(B, A)`` mapped to [-1, 1] with the training range."""
        return actions_to_unit(actions, self.action_low, self.action_high)

    def unnormalize_action(self, actions: Tensor) -> Tensor:
        """Inverse of :meth:`normalize_action`, after clipping to [-1, 1]."""
        return actions_from_unit(actions, self.action_low, self.action_high)

    def policy_action(self, obs: Tensor) -> Tensor:
        """``pi(obs)`` ``(B, A)`` in [-1, 1] units, of observations ``(B, *obs_shape)``."""
        return torch.tanh(self.actor(self.features(obs)))

    def _actor_step(self) -> bool:
        """Whether the coming optimizer step (1-based: ``optimizer_steps + 1``) updates the actor."""
        return (int(self.optimizer_steps) + 1) % self.config.policy_freq == 0

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        config = self.config
        x, x_next = self.features(batch["obs"][:, 0]), self.features(batch["obs"][:, 1])
        action = self.normalize_action(batch["action"])
        reward, terminated = batch["reward"].float(), batch["terminated"].float()
        with torch.no_grad():
            noise = (torch.randn_like(action) * config.policy_noise).clamp(-config.noise_clip, config.noise_clip)
            next_action = (torch.tanh(self.actor_target(x_next)) + noise).clamp(-1, 1)
            target = reward + config.gamma * (1 - terminated) * self.critic.target(x_next, next_action)
        first, second = self.critic.online(x, action)
        critic_loss = (first - target).square().mean() + (second - target).square().mean()
        info = {"critic_loss": float(critic_loss.detach()), "q_mean": float(first.detach().mean())}
        if not self._actor_step():
            return critic_loss, info
        pi = torch.tanh(self.actor(x))
        q = self.critic.first_with_fixed_weights(x, pi)
        lam = config.alpha / q.abs().mean().detach().clamp_min(1e-6)
        bc_loss = (pi - action).square().mean()
        actor_loss = -lam * q.mean() + bc_loss
        info |= {"actor_loss": float(actor_loss.detach()), "bc_loss": float(bc_loss.detach()), "lambda": float(lam)}
        return critic_loss + actor_loss, info

    def after_optimizer_step(self, step: int) -> None:
        self.optimizer_steps += 1
        if int(self.optimizer_steps) % self.config.policy_freq == 0:
            self.critic.update_target(self.config.polyak)
            polyak_update(self.actor_target, self.actor, self.config.polyak)

    def act(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, Any]:
        return self.unnormalize_action(self.policy_action(obs["obs"])), None

    def attack_scores(self, clean: dict[str, Tensor]) -> AttackScores:
        """The action ``(B, A)``."""
        return lambda inputs: self.unnormalize_action(self.policy_action(inputs["obs"]))

    def export_module(self) -> nn.Module:
        return _TD3BCExport(self)


class _TD3BCExport(nn.Module):
    """``obs -> action``: what ``TD3BCPolicy.act`` returns."""

    output_names = ("action",)

    def __init__(self, policy: TD3BCPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, obs: Tensor) -> Tensor:
        return self.policy.unnormalize_action(self.policy.policy_action(obs))
