"""Time limits in online RL: same-step autoreset, the truncation bootstrap, and no bootstrap after a real end.

The README claims that PPO (``clonekit.rl.ppo``) and SAC (``clonekit.rl.sac``) step their envs with gymnasium's
``SAME_STEP`` autoreset, so every step is a real transition, and that an episode cut by a time limit
(``truncated``) is bootstrapped from the value of its *own* last observation (not the next episode's first,
not 0), while a ``terminated`` step is not bootstrapped. Tested here on a counter env whose observation is the
number of steps its episode has taken, so every observation tells where it comes from:

* :class:`clonekit.rl.vector.VectorEnv`: an ended env's ``next_obs`` is the next episode's first observation and
  ``final_obs`` the ended one's last;
* PPO: the rewards GAE receives hold ``gamma * V(final observation)`` at a truncated step only (with a critic
  whose weights are set so that ``V(x) = 2x + 1``), GAE does not look past an ended step, and with a reward
  model the bootstrap (of the iteration's discount) stays on top of the learned rewards;
* SAC: the replay buffer stores a truncated step's ``next_obs`` as the cut episode's last observation, marked
  not terminated, a terminated one marked terminated; the critic's target bootstraps only from the former.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.wrappers import TimeLimit

from clonekit.checkpoint import OPTIMIZER_FILE, checkpoint_dirs, load_tensors
from clonekit.policies.td3bc import TD3BCConfig, TD3BCPolicy
from clonekit.rl import PPOConfig, SACConfig, train_ppo, train_sac
from clonekit.rl import ppo as ppo_module
from clonekit.rl.agent import ActorCritic
from clonekit.rl.ppo import Rollout, _gae
from clonekit.rl.sac import ReplayBuffer, SACAgent
from clonekit.rl.sac import _update as sac_update
from clonekit.rl.vector import EnvFactory, VectorEnv


class Counter(gymnasium.Env[np.ndarray, Any]):
    """Observes the number of steps its episode has taken (0 after a reset); reward 1 a step; terminates after
    ``terminate_at`` steps when given (otherwise only a time limit ends it). Actions are ignored."""

    observation_space = gymnasium.spaces.Box(0.0, 1000.0, (1,), dtype=np.float32)

    def __init__(self, terminate_at: int | None, continuous: bool) -> None:
        self.terminate_at = terminate_at
        self.action_space: gymnasium.Space[Any] = (
            gymnasium.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32) if continuous else gymnasium.spaces.Discrete(2)
        )
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], dtype=np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        terminated = self.terminate_at is not None and self.t >= self.terminate_at
        return np.array([float(self.t)], dtype=np.float32), 1.0, terminated, False, {}


def counter(limit: int, terminate_at: int | None = None, continuous: bool = False) -> EnvFactory:
    """A :class:`Counter` under a ``TimeLimit`` of ``limit`` steps."""
    return lambda: TimeLimit(Counter(terminate_at, continuous), max_episode_steps=limit)


# Three envs stepped together for T = 7 steps:
#   0: cut by its time limit after 3 steps (truncated only): obs 0 1 2 | 0 1 2 | 0, ends at t = 2, 5, last obs 3;
#   1: terminates after 2 steps (limit 100):                 obs 0 1 | 0 1 | 0 1 | 0, ends at t = 1, 3, 5, last obs 2;
#   2: terminates after 3 steps, the step its limit hits too (terminated and truncated): as env 0, not bootstrapped.
T = 7


def _factories(continuous: bool) -> list[EnvFactory]:
    return [counter(3, None, continuous), counter(100, 2, continuous), counter(3, 3, continuous)]


OBS = torch.tensor([[0, 1, 2, 0, 1, 2, 0], [0, 1, 0, 1, 0, 1, 0], [0, 1, 2, 0, 1, 2, 0]], dtype=torch.float32).T
ENDED = torch.zeros((T, 3), dtype=torch.bool)
ENDED[[2, 5], 0] = ENDED[[1, 3, 5], 1] = ENDED[[2, 5], 2] = True
TERMINATED = ENDED.clone()
TERMINATED[:, 0] = False
CUT = ENDED & ~TERMINATED  # env 0 at t = 2 and 5
NEXT_OBS = OBS + 1  # every step is a real transition: the observation it led to, an ended episode's own last one


def test_vector_env_returns_the_next_episodes_first_obs_and_the_ended_episodes_last_obs_on_the_same_step() -> None:
    envs = VectorEnv(_factories(continuous=False))
    try:
        np.testing.assert_array_equal(envs.reset(seed=0), [[0.0], [0.0], [0.0]])
        next_obs, reward, terminated, truncated, final = envs.step(np.zeros(3, dtype=np.int64))
        np.testing.assert_array_equal(next_obs, [[1.0], [1.0], [1.0]])
        assert final == {}
        next_obs, reward, terminated, truncated, final = envs.step(np.zeros(3, dtype=np.int64))
        np.testing.assert_array_equal(next_obs, [[2.0], [0.0], [2.0]])  # env 1 ended: already its next episode
        assert terminated.tolist() == [False, True, False] and truncated.tolist() == [False, False, False]
        assert set(final) == {1}
        np.testing.assert_array_equal(final[1], [2.0])
        next_obs, reward, terminated, truncated, final = envs.step(np.zeros(3, dtype=np.int64))
        np.testing.assert_array_equal(next_obs, [[0.0], [1.0], [0.0]])
        assert terminated.tolist() == [False, False, True] and truncated.tolist() == [True, False, True]
        assert set(final) == {0, 2}
        np.testing.assert_array_equal(final[0], [3.0])
        np.testing.assert_array_equal(final[2], [3.0])
        np.testing.assert_array_equal(reward, [1.0, 1.0, 1.0])
    finally:
        envs.close()


# ------------------------------------------------------------------------------------------------------------ PPO


def _value(obs: torch.Tensor) -> torch.Tensor:
    """The critic :class:`_KnownCritic` sets: ``V(x) = 2x + 1`` (for ``x >= 0``)."""
    return 2 * obs + 1


class _KnownCritic(ActorCritic):
    """PPO's actor-critic with the critic's weights set to compute :func:`_value` (hidden width 4, one layer)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        (first,) = [m for m in self.critic_encoder.modules() if isinstance(m, torch.nn.Linear)]
        with torch.no_grad():
            first.weight.zero_()
            first.weight[0, 0] = 1.0
            first.bias.zero_()
            self.critic_head.weight.zero_()
            self.critic_head.weight[0, 0] = 2.0
            self.critic_head.bias.fill_(1.0)


PPO = PPOConfig(
    env="counter",
    num_envs=3,
    num_steps=T,
    total_steps=3 * T,  # one rollout, one update
    gamma=0.9,
    gae_lambda=0.0,  # one-step TD advantages: each one shows the bootstrap it used
    hidden_sizes=(4,),
    update_epochs=1,
    num_minibatches=1,
)


def _run_ppo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **kwargs: Any
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One PPO iteration on the three counters; returns ``_gae``'s inputs and output, and the update's data."""
    gae_seen: dict[str, torch.Tensor] = {}
    update_seen: dict[str, torch.Tensor] = {}

    def gae_spy(
        rewards: torch.Tensor,
        values: torch.Tensor,
        ended: torch.Tensor,
        next_value: torch.Tensor,
        config: PPOConfig,
        gamma: float,
    ) -> torch.Tensor:
        advantages = _gae(rewards, values, ended, next_value, config, gamma)
        gae_seen.update(
            rewards=rewards.clone(),
            values=values.clone(),
            ended=ended.clone(),
            next_value=next_value.clone(),
            advantages=advantages.clone(),
            gamma=torch.tensor(gamma),
        )
        return advantages

    original_update = ppo_module._update

    def update_spy(*args: Any) -> dict[str, float]:
        update_seen.update({k: v.clone() for k, v in args[-1].items()})
        return original_update(*args)

    monkeypatch.setattr(ppo_module, "ActorCritic", _KnownCritic)
    monkeypatch.setattr(ppo_module, "_gae", gae_spy)
    monkeypatch.setattr(ppo_module, "_update", update_spy)
    train_ppo(PPO, tmp_path / "ppo", show_progress=False, env_factories=_factories(continuous=False), **kwargs)
    return gae_seen, update_seen


def test_ppo_bootstraps_a_truncated_step_from_the_cut_episodes_last_obs_and_a_terminated_step_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gae, update = _run_ppo(tmp_path, monkeypatch)
    # every step is a real transition (same-step autoreset: no extra action-less step after an end)
    torch.testing.assert_close(update["obs"].reshape(T, 3, 1)[..., 0], OBS)
    torch.testing.assert_close(gae["values"], _value(OBS))
    assert torch.equal(gae["ended"] > 0, ENDED)
    torch.testing.assert_close(gae["next_value"], _value(torch.ones(3)))
    # the rewards GAE sees: 1, plus gamma * V(3) = 0.9 * 7 = 6.3 where the time limit cut env 0 only
    # (V of the reset observation would give 0.9, no bootstrap 0; env 2's terminated-and-truncated step gets none)
    expected_rewards = torch.ones(T, 3)
    expected_rewards[CUT] += 0.9 * 7.0
    torch.testing.assert_close(gae["rewards"], expected_rewards)
    # one-step TD advantages: r + gamma * V(s') * (1 - ended) - V(s)
    following = torch.cat([gae["values"][1:], gae["next_value"][None]])
    expected = expected_rewards + 0.9 * following * (~ENDED) - _value(OBS)
    torch.testing.assert_close(gae["advantages"], expected)
    assert gae["advantages"][2, 0].item() == pytest.approx(1.0 + 6.3 - 5.0)  # truncated at obs 2: V(3) = 7
    assert gae["advantages"][1, 1].item() == pytest.approx(1.0 - 3.0)  # terminated at obs 1: no bootstrap
    assert gae["advantages"][2, 2].item() == pytest.approx(1.0 - 5.0)  # terminated and truncated: no bootstrap


def test_gae_does_not_look_past_an_ended_step() -> None:
    config = PPOConfig(gae_lambda=0.95)
    generator = torch.Generator().manual_seed(0)
    rewards, values = torch.randn((6, 2), generator=generator), torch.randn((6, 2), generator=generator)
    ended = torch.zeros(6, 2)
    ended[2, 0] = 1.0
    next_value = torch.randn(2, generator=generator)
    advantages = _gae(rewards, values, ended, next_value, config, 0.9)
    changed_rewards, changed_values = rewards.clone(), values.clone()
    changed_rewards[3:, 0] += 100.0
    changed_values[3:, 0] -= 100.0
    after = _gae(changed_rewards, changed_values, ended, next_value + 100.0, config, 0.9)
    torch.testing.assert_close(after[:3, 0], advantages[:3, 0])  # the episode that ended at t = 2 is unaffected
    assert advantages[2, 0].item() == pytest.approx((rewards[2, 0] - values[2, 0]).item())
    assert not torch.allclose(after[:, 1], advantages[:, 1])  # env 1 did not end: it does see the change


class _ZeroReward:
    """A reward model whose rewards are all 0; keeps the rollouts it saw."""

    def __init__(self) -> None:
        self.seen: list[Rollout] = []

    def rewards(self, rollout: Rollout, agent: ActorCritic) -> tuple[torch.Tensor, dict[str, float]]:
        self.seen.append(rollout)
        return torch.zeros(rollout.obs.shape[:2]), {}

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {}, {}

    def load_state(self, tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> None:
        pass


def test_ppo_with_a_reward_model_sees_true_last_obs_and_keeps_the_bootstrap_of_the_iterations_discount(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _ZeroReward()
    discount: Callable[[], float] = lambda: 0.5  # noqa: E731
    gae, _ = _run_ppo(tmp_path, monkeypatch, reward_model=model, discount=discount)
    (rollout,) = model.seen
    torch.testing.assert_close(rollout.obs[..., 0], OBS)
    torch.testing.assert_close(rollout.next_obs[..., 0], NEXT_OBS)  # env 0 at t = 2: 3, not the reset's 0
    assert torch.equal(rollout.terminated, TERMINATED)
    assert rollout.ended is not None and torch.equal(rollout.ended, ENDED)
    # learned rewards (0) + the bootstrap with this iteration's discount: 0.5 * V(3) = 3.5, at the cut steps only
    expected = torch.zeros(T, 3)
    expected[CUT] = 0.5 * 7.0
    torch.testing.assert_close(gae["rewards"], expected)
    assert gae["gamma"].item() == 0.5


# ------------------------------------------------------------------------------------------------------------ SAC


def test_sac_stores_a_truncated_steps_true_last_obs_as_not_terminated_and_a_terminated_step_as_terminated(
    tmp_path: Path,
) -> None:
    config = SACConfig(
        env="counter",
        num_envs=3,
        total_steps=3 * T,
        learning_starts=1000,  # random actions, no gradient steps: only what is stored
        batch_size=8,
        hidden_sizes=(8,),
        log_every=1000,
        checkpoint_every=1000,  # one checkpoint, at the end: it holds the replay buffer
    )
    train_sac(config, tmp_path / "sac", show_progress=False, env_factories=_factories(continuous=True))
    replay = load_tensors(checkpoint_dirs(tmp_path / "sac")[-1] / OPTIMIZER_FILE)
    # rows in the order stored: one vector step (the 3 envs) after another
    torch.testing.assert_close(replay["replay.obs"].reshape(T, 3), OBS)
    torch.testing.assert_close(replay["replay.next_obs"].reshape(T, 3), NEXT_OBS)  # truncated: 3, not 0
    torch.testing.assert_close(replay["replay.terminated"].reshape(T, 3), TERMINATED.float())
    torch.testing.assert_close(replay["replay.rewards"].reshape(T, 3), torch.ones(T, 3))


@pytest.mark.parametrize(("terminated", "expected_loss"), [(0.0, (1.0 + 0.9 * 30.0) ** 2), (1.0, 1.0**2)])
def test_sac_critic_target_bootstraps_from_next_obs_unless_terminated(terminated: float, expected_loss: float) -> None:
    """One stored transition ``2 -> 3`` with reward 1; online critics 0, target critics ``Q'(s', a') = 10 s'``,
    temperature 0: the critic loss is ``target^2`` with ``target = 1 + 0.9 * (1 - terminated) * 30``."""
    config = SACConfig(env="counter", batch_size=4, hidden_sizes=(4,), gamma=0.9, autotune=False)
    policy = TD3BCPolicy(TD3BCConfig((1,), (1,), hidden_sizes=(4,), normalize_obs="none", gamma=0.9))
    agent = SACAgent(policy, config.hidden_sizes, config.alpha)
    with torch.no_grad():
        agent.log_alpha.fill_(-1e4)  # alpha = exp(-1e4) = 0 in float32: no entropy term in the target
        for parameter in policy.critic.q.parameters():
            parameter.zero_()
        for net in policy.critic.q_target:
            first, last = net[0], net[-1]
            first.weight.zero_()
            first.weight[0, 0] = 1.0  # the observation's column (the action's comes after it)
            first.bias.zero_()
            last.weight.zero_()
            last.weight[0, 0] = 10.0
            last.bias.zero_()
    buffer = ReplayBuffer(8, (1,), np.dtype(np.float32), 1)
    buffer.add(
        obs=np.array([[2.0]], np.float32),
        next_obs=np.array([[3.0]], np.float32),
        actions=np.zeros((1, 1), np.float32),
        rewards=np.array([1.0], np.float32),
        terminated=np.array([terminated], np.float32),
    )
    optimizers: dict[str, torch.optim.Optimizer] = {
        "actor": torch.optim.Adam(agent.actor_parameters(), lr=config.lr),
        "critic": torch.optim.Adam(policy.critic.q.parameters(), lr=config.lr),
        "alpha": torch.optim.Adam([agent.log_alpha], lr=config.lr),
    }
    info = sac_update(config, agent, optimizers, buffer, torch.Generator().manual_seed(0), -1.0, None, 0)
    assert info["alpha"] == 0.0
    assert info["critic_loss"] == pytest.approx(expected_loss, rel=1e-5)
