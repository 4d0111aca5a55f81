"""PPO's faster code paths compute exactly what the plain ones do: the actor-critic's flattened forward passes
(against the policy's own nested modules) and the batched GAE (against the step-by-step recursion)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clonekit.policies.bc import BCConfig, BCPolicy
from clonekit.policies.continuous_bc import ContinuousBCConfig, ContinuousBCPolicy
from clonekit.rl.agent import Actor, ActorCritic
from clonekit.rl.config import PPOConfig
from clonekit.rl.ppo import _gae

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _normalized(actor: Actor) -> Actor:
    """``actor`` with non-trivial observation statistics (so the normalizer's place in the sequence matters)."""
    if actor.normalizer.mode != "none":
        actor.normalizer.mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        actor.normalizer.std.copy_(torch.tensor([2.0, 0.5, 3.0]))
    return actor


ACTORS = {
    "bc": lambda: BCPolicy(BCConfig((3,), 4, hidden_sizes=(16, 16), normalize_obs="per_feature")),
    "continuous_mse": lambda: ContinuousBCPolicy(ContinuousBCConfig((3,), (2,), head="mse", hidden_sizes=(16,))),
    "continuous_gaussian": lambda: ContinuousBCPolicy(
        ContinuousBCConfig((3,), (2,), head="gaussian", hidden_sizes=(16, 16), normalize_obs="per_feature")
    ),
}


@pytest.mark.parametrize("name", sorted(ACTORS))
def test_flat_forward_equals_nested_modules(name: str) -> None:
    torch.manual_seed(0)
    actor = _normalized(ACTORS[name]())
    agent = ActorCritic(actor, (16, 8), math.log(0.5))
    obs = torch.randn(32, 3)
    if isinstance(actor, ContinuousBCPolicy):
        expected = actor.head(actor.features({"obs": obs}))[0]
    else:
        expected = actor.head(actor.features(obs))
    expected_value = agent.critic_head(agent.critic_encoder(actor.normalizer(obs))).squeeze(-1)
    assert torch.equal(agent.distribution(obs), expected)
    assert torch.equal(agent.value(obs), expected_value)
    # The gradients reach the same parameters with the same values.
    (agent.distribution(obs).square().sum() + agent.value(obs).sum()).backward()
    flat_grads = {k: p.grad.clone() for k, p in agent.named_parameters() if p.grad is not None}
    agent.zero_grad()
    (expected.square().sum() + expected_value.sum()).backward()
    assert flat_grads.keys() == {k for k, p in agent.named_parameters() if p.grad is not None}
    assert all(torch.equal(flat_grads[k], p.grad) for k, p in agent.named_parameters() if p.grad is not None)


def test_gae_equals_step_by_step_recursion() -> None:
    rng = np.random.default_rng(0)
    steps, envs, gamma, config = 50, 3, 0.97, PPOConfig(gae_lambda=0.9)
    rewards = torch.from_numpy(rng.normal(size=(steps, envs)).astype(np.float32))
    values = torch.from_numpy(rng.normal(size=(steps, envs)).astype(np.float32))
    ended = torch.from_numpy((rng.random((steps, envs)) < 0.1).astype(np.float32))
    next_value = torch.from_numpy(rng.normal(size=envs).astype(np.float32))
    expected = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    for t in reversed(range(steps)):
        following = next_value if t == steps - 1 else values[t + 1]
        live = 1.0 - ended[t]
        last = rewards[t] + gamma * following * live - values[t] + gamma * config.gae_lambda * live * last
        expected[t] = last
    assert ended.sum() > 5  # some episodes end inside the rollout
    assert torch.equal(_gae(rewards, values, ended, next_value, config, gamma), expected)
