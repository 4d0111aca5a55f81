"""HILP: a latent-direction policy over a Hilbert representation, prompted with ``phi(g) - phi(s)`` to reach ``g``.

One training step (the recipe of the paper's goal-conditioned implementation) trains three things together:

* ``phi`` by the temporal-distance value loss of :class:`clonekit.pretrain.hilp.HilbertValue`, on goals
  relabeled from the data (:func:`clonekit.pretrain.hilp.relabel_goals`);
* for random unit directions ``z`` ``(B, d)``, twin ``Q(s, z, a)`` and ``V(s, z)`` by IQL on the intrinsic reward
  ``r = (phi(s') - phi(s)) . z`` (``phi`` read without gradient, so the reward is the current representation's
  and the policy losses never move ``phi``);
* the actor ``pi(s, z)`` by advantage-weighted regression on the data's action (weights
  ``min(exp(beta * (Q - V)), max_weight)``).

``act({"obs", "goal"})`` computes ``z = (phi(g) - phi(s)) / ||.||`` every step (replanning towards the goal as
the agent moves) and returns the actor's action, deterministically. Goals are states, normalized like them.
Training reads ``obs`` as windows ``(B, goal_window, D)`` (step ``t`` and the future its goals come from; the
next state is the window's second step, the state itself at an episode's end) and the derived stream
``steps_left`` ``(B,)`` (steps after ``t`` in its episode).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from clonekit.data import Dataset
from clonekit.errors import ConfigError
from clonekit.nn import Normalizer
from clonekit.nn.critics import TwinQ, expectile_loss
from clonekit.nn.encoders import mlp
from clonekit.nn.normalize import actions_from_unit, actions_to_unit, feature_range
from clonekit.policies.base import Policy
from clonekit.policies.hilp.config import HILPConfig
from clonekit.pretrain.hilp import HilbertValue, relabel_goals, steps_to_episode_end


class HILPPolicy(Policy):
    """Hilbert foundation policy for goal reaching (see the module docstring).

    ``act`` reads ``obs`` ``(B, D)`` and ``goal`` ``(B, D)`` and returns actions ``(B, A)`` in the data's range.
    """

    name = "hilp"
    required_streams: ClassVar[tuple[str, ...]] = ("obs", "action")
    action_low: Tensor
    action_high: Tensor

    @property
    def deterministic(self) -> bool:
        """The actor's mean, with ``z`` a function of the state and goal."""
        return True

    def __init__(self, config: HILPConfig) -> None:
        super().__init__()
        self.config = config
        features, action_dim = config.obs_shape[0], config.action_shape[0]
        self.normalizer = Normalizer(config.obs_shape, "per_feature")
        self.hilbert = HilbertValue(features, config.phi_hidden_sizes, config.latent_dim)
        conditioned = features + config.latent_dim
        self.critic = TwinQ(conditioned, None, action_dim, config.hidden_sizes)
        self.value = mlp(conditioned, config.hidden_sizes, 1)
        self.actor = mlp(conditioned, config.hidden_sizes, action_dim)
        self.register_buffer("action_low", -torch.ones(action_dim))
        self.register_buffer("action_high", torch.ones(action_dim))

    def prepare(self, dataset: Dataset) -> None:
        self.normalizer.fit(dataset.column_chunks("obs"))
        low, high = feature_range(dataset.column_chunks("action"), self.config.action_shape)
        self.action_low.copy_(torch.from_numpy(low))
        self.action_high.copy_(torch.from_numpy(high))

    def sample_windows(self) -> dict[str, int | tuple[int, int]]:
        return {"obs": self.config.goal_window}

    def derived_streams(self, dataset: Dataset) -> dict[str, np.ndarray]:
        return {"steps_left": steps_to_episode_end(dataset.episode_lengths)}

    def phi(self, states: Tensor) -> Tensor:
        """The Hilbert representation ``(B, d)`` of raw states ``(B, D)``."""
        return self.hilbert.phi(self.normalizer(states))

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        config = self.config
        window = self.normalizer(batch["obs"].float())  # (B, K, D)
        states, next_states = window[:, 0], window[:, 1]
        goals, offsets = relabel_goals(
            window, batch["steps_left"], config.gamma, config.p_current_goal, config.p_random_goal
        )
        phi_loss, info = self.hilbert.loss(states, next_states, goals, offsets == 0, config.gamma, config.expectile)

        action = actions_to_unit(batch["action"], self.action_low, self.action_high)
        with torch.no_grad():
            phi_now, phi_next = self.hilbert.phi(torch.cat([states, next_states])).split(len(states))
        z = F.normalize(torch.randn(len(states), config.latent_dim), dim=1)
        reward = ((phi_next - phi_now) * z).sum(1)
        x, x_next = torch.cat([states, z], 1), torch.cat([next_states, z], 1)
        with torch.no_grad():
            q_data = self.critic.target(x, action)
            # No terminal states in reward-free data: every step bootstraps (an episode's end repeats its state).
            target = reward + config.skill_gamma * self.value(x_next).squeeze(1)
        value = self.value(x).squeeze(1)
        value_loss = expectile_loss(q_data - value, config.skill_expectile)
        first, second = self.critic.online(x, action)
        q_loss = (first - target).square().mean() + (second - target).square().mean()
        advantage = (q_data - value).detach()
        weight = torch.exp(torch.clamp(config.beta * advantage, max=math.log(config.max_weight)))
        actor_loss = (weight * (self.actor(x) - action).square().sum(-1)).mean()
        info |= {
            "value_loss": float(value_loss.detach()),
            "q_loss": float(q_loss.detach()),
            "actor_loss": float(actor_loss.detach()),
            "weight_mean": float(weight.mean()),
        }
        return phi_loss + value_loss + q_loss + actor_loss, info

    def after_optimizer_step(self, step: int) -> None:
        self.hilbert.update_target(self.config.polyak)
        self.critic.update_target(self.config.polyak)

    def latent_direction(self, obs: Tensor, goal: Tensor) -> Tensor:
        """``z = (phi(g) - phi(s)) / ||phi(g) - phi(s)||`` ``(B, d)`` of states and goals ``(B, D)``."""
        return F.normalize(self.phi(goal.float()) - self.phi(obs.float()), dim=1, eps=1e-6)

    def act(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, Any]:
        if "goal" not in obs:
            raise ConfigError("hilp: the policy reads a 'goal' input, which the env did not give; use avoiding-reach")
        states = obs["obs"].float()
        if obs["goal"].shape != states.shape:
            raise ConfigError(
                f"hilp: goal: expected a state of shape {tuple(states.shape)}, got {tuple(obs['goal'].shape)}"
            )
        z = self.latent_direction(states, obs["goal"])
        unit = self.actor(torch.cat([self.normalizer(states), z], 1))
        return actions_from_unit(unit, self.action_low, self.action_high), None
