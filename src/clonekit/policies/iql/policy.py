"""Implicit Q-Learning (Kostrikov et al., *Offline Reinforcement Learning with Implicit Q-Learning*, 2021).

Every network reads the normalized, flattened observation ``x`` ``(B, F)``:

* ``V(x)`` by expectile regression on the smaller target ``Q(x, a)`` of the data's own action ``a``;
* twin ``Q(x, a)`` (discrete actions: one output per action) regressed on ``r + gamma * (1 - terminated) * V(x')``;
* the actor by advantage-weighted regression: the data's action with weight
  ``min(exp(beta * (Q_target(x, a) - V(x))), max_weight)`` (a categorical for discrete actions, a Gaussian or
  the mean alone for continuous ones). ``act`` returns its argmax or mean, so the policy is deterministic.

One optimizer step trains all three: the loss is the sum of the three losses, each of which reaches only its
own network (the regression targets and the weights are computed without gradient). The target ``Q``
networks are parameters without gradient that follow the online ones in :meth:`IQLPolicy.after_optimizer_step`.

Rewards and ``terminated`` come from the dataset (a sparse 0/1 success reward works). The next observation
``x'`` is the second step of an ``obs`` window of length 2 (:meth:`IQLPolicy.sample_windows`), which is clipped
to the episode: at an episode's last step it is the step's own observation. A terminated step does not
bootstrap; the last step of a truncated episode bootstraps from its own value ``V(x)``, since the observation
after the cut is not stored and the cut is at an arbitrary step (RLIF's critic does the same).

Continuous actions are scaled to [-1, 1] per dimension with the range seen in the training data (buffers, as
in ``continuous_bc``); the actor's mean is clipped to that range.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clonekit.data import Dataset
from clonekit.nn import CategoricalHead, GaussianHead, MLPEncoder, Normalizer
from clonekit.nn.critics import TwinQ, expectile_loss
from clonekit.nn.encoders import mlp
from clonekit.nn.normalize import actions_from_unit, actions_to_unit, feature_range
from clonekit.policies.base import AttackScores, Policy
from clonekit.policies.iql.config import IQLConfig


class IQLPolicy(Policy):
    """IQL: expectile value, twin ``Q`` with targets, and an advantage-weighted actor (see the module docstring).

    Discrete actions (``num_actions``): ``act`` returns the actor's most likely action ``(B,)`` int64.
    Continuous actions (``action_shape``): ``act`` returns the actor's mean ``(B, A)`` in the data's range.
    Training reads ``obs`` as windows ``(B, 2, *obs_shape)`` (the step and the next one), ``action``,
    ``reward`` ``(B,)`` and ``terminated`` ``(B,)``.
    """

    name = "iql"
    required_streams: ClassVar[tuple[str, ...]] = ("obs", "action", "reward", "terminated")
    action_low: Tensor
    action_high: Tensor

    @property
    def deterministic(self) -> bool:
        """Acts with the actor's argmax (discrete) or mean (continuous)."""
        return True

    def __init__(self, config: IQLConfig) -> None:
        super().__init__()
        self.config = config
        self.discrete = config.num_actions > 0
        self.action_dim = 0 if self.discrete else config.action_shape[0]
        features = math.prod(config.obs_shape)
        self.normalizer = Normalizer(config.obs_shape, config.normalize_obs)
        self.critic = TwinQ(
            features, config.num_actions if self.discrete else None, self.action_dim, config.hidden_sizes
        )
        self.value = mlp(features, config.hidden_sizes, 1)
        self.actor = MLPEncoder((features,), config.hidden_sizes)
        self.head: CategoricalHead | GaussianHead = (
            CategoricalHead(self.actor.out_dim, config.num_actions)
            if self.discrete
            else GaussianHead(self.actor.out_dim, self.action_dim, learn_std=config.actor == "gaussian")
        )
        width = max(self.action_dim, 1)
        self.register_buffer("action_low", -torch.ones(width))
        self.register_buffer("action_high", torch.ones(width))

    def prepare(self, dataset: Dataset) -> None:
        self.normalizer.fit(dataset.column_chunks("obs"))  # streamed: a large column is not copied
        if not self.discrete:
            low, high = feature_range(dataset.column_chunks("action"), (self.action_dim,))
            self.action_low.copy_(torch.from_numpy(low))
            self.action_high.copy_(torch.from_numpy(high))

    def sample_windows(self) -> dict[str, int | tuple[int, int]]:
        return {"obs": 2}  # the sampled step and the next one (the step itself at its episode's end)

    def features(self, obs: Tensor) -> Tensor:
        """Normalized, flattened observations ``(B, F)`` of ``(B, *obs_shape)``: the input of every network."""
        return self.normalizer(obs).flatten(1)

    def normalize_action(self, actions: Tensor) -> Tensor:
        """Continuous actions ``(B, A)`` mapped to [-1, 1] with the training range."""
        return actions_to_unit(actions, self.action_low, self.action_high)

    def unnormalize_action(self, actions: Tensor) -> Tensor:
        """Inverse of :meth:`normalize_action`, after clipping to [-1, 1]."""
        return actions_from_unit(actions, self.action_low, self.action_high)

    def _actor_nll(self, x: Tensor, action: Tensor) -> Tensor:
        """Per-sample negative log-likelihood ``(B,)`` of the data's action (squared error for ``actor="mse"``)."""
        hidden = self.actor(x)
        if isinstance(self.head, CategoricalHead):
            return F.cross_entropy(self.head(hidden), action.long(), reduction="none")
        mean, log_std = self.head(hidden)
        if not self.head.learn_std:
            return (mean - action).square().sum(-1)
        return (0.5 * ((action - mean) / log_std.exp()).square() + log_std + 0.5 * math.log(2 * math.pi)).sum(-1)

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        config = self.config
        x, x_next = self.features(batch["obs"][:, 0]), self.features(batch["obs"][:, 1])
        action = batch["action"].long() if self.discrete else self.normalize_action(batch["action"])
        reward, terminated = batch["reward"].float(), batch["terminated"].float()
        with torch.no_grad():
            q_data = self.critic.target(x, action)
            target = reward + config.gamma * (1 - terminated) * self.value(x_next).squeeze(1)
        value = self.value(x).squeeze(1)
        value_loss = expectile_loss(q_data - value, config.expectile)
        first, second = self.critic.online(x, action)
        q_loss = (first - target).square().mean() + (second - target).square().mean()
        advantage = (q_data - value).detach()
        # Clipped in the exponent, so a large advantage cannot overflow.
        weight = torch.exp(torch.clamp(config.beta * advantage, max=math.log(config.max_weight)))
        actor_loss = (weight * self._actor_nll(x, action)).mean()
        info = {
            "value_loss": float(value_loss.detach()),
            "q_loss": float(q_loss.detach()),
            "actor_loss": float(actor_loss.detach()),
            "q_mean": float(first.detach().mean()),
            "advantage_mean": float(advantage.mean()),
            "weight_mean": float(weight.mean()),
        }
        return value_loss + q_loss + actor_loss, info

    def after_optimizer_step(self, step: int) -> None:
        self.critic.update_target(self.config.polyak)

    def action_scores(self, obs: Tensor) -> Tensor:
        """The actor's logits ``(B, num_actions)`` (discrete) or its mean ``(B, A)`` in [-1, 1] units, before
        clipping (continuous), of observations ``(B, *obs_shape)``."""
        hidden = self.actor(self.features(obs))
        if isinstance(self.head, CategoricalHead):
            return self.head(hidden)
        return self.head.mode(hidden)

    def act(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, Any]:
        scores = self.action_scores(obs["obs"])
        return (scores.argmax(-1) if self.discrete else self.unnormalize_action(scores)), None

    def action_logits(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, Any] | None:
        """Discrete actions: the actor's logits ``(B, A)`` whose argmax ``act`` returns; None for continuous."""
        return (self.action_scores(obs["obs"]), None) if self.discrete else None

    def attack_scores(self, clean: dict[str, Tensor]) -> AttackScores:
        """The actor's logits ``(B, A)`` (discrete) or the action ``(B, A)`` (continuous)."""
        if self.discrete:
            return lambda inputs: self.action_scores(inputs["obs"])
        return lambda inputs: self.unnormalize_action(self.action_scores(inputs["obs"]))

    def export_module(self) -> nn.Module:
        return _IQLExport(self)


class _IQLExport(nn.Module):
    """``obs -> (action, logits)`` (discrete) or ``obs -> action`` (continuous): what ``IQLPolicy.act`` returns."""

    def __init__(self, policy: IQLPolicy) -> None:
        super().__init__()
        self.policy = policy
        self.output_names = ("action", "logits") if policy.discrete else ("action",)

    def forward(self, obs: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        scores = self.policy.action_scores(obs)
        if self.policy.discrete:
            return scores.argmax(-1), scores
        return self.policy.unnormalize_action(scores)
