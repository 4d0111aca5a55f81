"""Demonstration-regularized RL: a frozen BC prior that PPO's policy is pulled towards, with a decaying weight.

Discrete actions: the term is ``KL(pi(.|s) || pi_BC(.|s))``, exact over the actions. Continuous actions: the
squared distance (summed over action dimensions, both in the actor's [-1, 1] units) between the Gaussian's
mean and the prior's most likely action (the ``mse`` head's output, or the ``gaussian`` head's mean). The
weight is ``prior_coef * max(0, 1 - env_steps / prior_decay_steps)`` (constant when ``prior_decay_steps`` is 0).
"""

from __future__ import annotations

import gymnasium
import torch
from torch import Tensor

from clonekit.checkpoint import load_policy
from clonekit.nn.gaussian import GaussianHead
from clonekit.policies.continuous_bc import ContinuousBCPolicy
from clonekit.rl.agent import Actor, ActorCritic, check_actor
from clonekit.rl.config import PPOConfig
from clonekit.rl.sac_config import SACConfig


class DemoPrior:
    """The frozen prior of ``config.prior`` and its schedule (see the module docstring)."""

    def __init__(
        self, config: PPOConfig | SACConfig, obs_space: gymnasium.spaces.Box, action_space: gymnasium.Space
    ) -> None:
        assert config.prior is not None
        self.policy: Actor = check_actor(load_policy(config.prior), obs_space, action_space, f"prior {config.prior}")
        self.policy.requires_grad_(False)
        self.coef = config.prior_coef
        self.decay_steps = config.prior_decay_steps

    def weight(self, env_steps: int) -> float:
        """The term's weight after ``env_steps`` env steps."""
        if self.decay_steps == 0:
            return self.coef
        return self.coef * max(0.0, 1.0 - env_steps / self.decay_steps)

    @torch.no_grad()
    def targets(self, obs: Tensor) -> Tensor:
        """What the term compares the policy with for ``obs`` ``(B, *obs_shape)``: the prior's log-probabilities
        ``(B, num_actions)``, or its action ``(B, A)`` in [-1, 1] units of the env's bounds."""
        if isinstance(self.policy, ContinuousBCPolicy):
            head = self.policy.head
            assert isinstance(head, GaussianHead)  # check_actor allows the mse and gaussian heads only
            return self.policy.unnormalize_action(head.mode(self.policy.features({"obs": obs})))
        return torch.log_softmax(self.policy.head(self.policy.features(obs)), -1)

    def loss(self, agent: ActorCritic, params: Tensor, targets: Tensor) -> Tensor:
        """The mean term over a minibatch, given the policy's :meth:`ActorCritic.distribution` ``params`` and
        :meth:`targets` of the same observations."""
        if isinstance(agent.actor, ContinuousBCPolicy):
            return (params - agent.actor.normalize_action(targets)).square().sum(-1).mean()
        log_p = torch.log_softmax(params, -1)
        return (log_p.exp() * (log_p - targets)).sum(-1).mean()
