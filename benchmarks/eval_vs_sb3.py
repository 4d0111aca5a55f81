"""Batched evaluation on a gymnasium env: clonekit vs Stable-Baselines3's ``evaluate_policy``, same run.

64 copies of ``CartPole-v1`` play one episode each, reset with the seeds ``base + i``, under the same small
MLP (clonekit's BC network, hidden layers 64 and 64) acting greedily, so all three loops below play exactly the
same episodes (checked) and count the same steps (the sum of the episode lengths). Its weights are set by hand
to a balancing controller (push towards where the pole falls), so episodes last up to 500 steps and the time
goes into stepping rather than into building and resetting envs. The envs are built once: SB3's and the hand
loop's before timing, clonekit's in its first trial (a finished rollout leaves its idle slots to the next);
each loop's time is its best of ``TRIALS``.

``clonekit_steps_per_s``: :func:`clonekit.evaluation.rollout` on the ``gym`` family (its in-process episode
slots, :class:`clonekit.envs.slots.SlotGroup`).
``sb3_steps_per_s``: ``stable_baselines3.common.evaluation.evaluate_policy`` with 64 episodes on SB3's
``DummyVecEnv`` of 64 envs (no ``Monitor``: its leanest path), the network behind a ``predict`` that
does what SB3's ``BasePolicy.predict`` does (tensor in, ``no_grad`` forward, numpy out).
``hand_steps_per_s``: the same slots (as clonekit builds them) stepped by hand with the same forward,
summing returns and lengths of the live slots (what any evaluation must do). ``ratio`` = clonekit /
SB3; ``loop_ratio`` = clonekit / hand (clonekit's own overhead).
Run: ``python benchmarks/eval_vs_sb3.py`` (needs ``clonekit[sb3]``).
"""

from __future__ import annotations

import json
import time
import warnings
from typing import Any

import gymnasium
import numpy as np
import torch
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv

from clonekit.envs import resolve_env
from clonekit.envs.gym import GymTask, make_slots
from clonekit.evaluation import rollout
from clonekit.policies import build_policy

ENV_ID = "CartPole-v1"
NUM_ENVS = 64
REPEATS = 2
TRIALS = 4  # each loop's best timing; the loops take turns, so a busy spell on a shared machine hits all three


def _controller_weights(policy: Any) -> None:
    """Set the MLP to ``action = 1 if angle + 0.5 * angular velocity > 0 else 0`` (ReLU features +s, -s)."""
    linear = [m for m in policy.encoder.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for layer in [*linear, policy.head.linear]:
            layer.weight.zero_()
            layer.bias.zero_()
        linear[0].weight[0, 2:] = torch.tensor([1.0, 0.5])
        linear[0].weight[1, 2:] = torch.tensor([-1.0, -0.5])
        linear[1].weight[0, 0] = linear[1].weight[1, 1] = 1.0
        policy.head.linear.weight[1, 0] = policy.head.linear.weight[0, 1] = 1.0


def _forward(policy: Any) -> Any:
    """The network, greedy: BC's ``act`` is exactly that (its layers called in one flat sequence)."""
    return lambda obs: policy.act({"obs": obs})[0]


class _SB3Predictor:
    """The network behind SB3's ``predict`` convention."""

    def __init__(self, forward: Any) -> None:
        self.forward = forward

    def predict(self, observation: np.ndarray, **_: Any) -> tuple[np.ndarray, None]:
        with torch.no_grad():
            actions = self.forward(torch.as_tensor(observation))
        return actions.cpu().numpy(), None


def _best(*loops: Any) -> list[tuple[float, Any]]:
    """Per loop: the shortest wall time of ``TRIALS`` calls (taking turns), and its result."""
    best: list[tuple[float, Any]] = [(float("inf"), None)] * len(loops)
    for _ in range(TRIALS):
        for i, run in enumerate(loops):
            start = time.perf_counter()
            result = run()
            best[i] = min(best[i], (time.perf_counter() - start, result), key=lambda pair: pair[0])
    return best


def main() -> None:
    torch.manual_seed(0)
    family, kwargs = resolve_env(f"gym:{ENV_ID}")
    obs_space, act_space = family.spaces(**kwargs)
    policy = build_policy(
        "bc",
        {
            "obs_shape": list(obs_space.shape),
            "num_actions": int(act_space.n),
            "encoder": "mlp",
            "hidden_sizes": [64, 64],
            "normalize_obs": "none",
        },
    ).eval()
    _controller_weights(policy)
    forward = _forward(policy)
    bases = [1000 * (r + 1) for r in range(REPEATS)]

    def clonekit_loop() -> list[np.ndarray]:
        return [
            rollout(policy, family, [GymTask(b + i) for i in range(NUM_ENVS)], NUM_ENVS, 0, kwargs).lengths
            for b in bases
        ]

    sb3_env = DummyVecEnv([lambda: gymnasium.make(ENV_ID)] * NUM_ENVS)
    hand_env = make_slots(family.options(kwargs), NUM_ENVS, obs_space)  # the slots clonekit builds

    def sb3_loop() -> list[np.ndarray]:
        lengths = []
        predictor = _SB3Predictor(forward)
        env = sb3_env
        for base in bases:
            env.seed(base)  # env i is reset with base + i
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, episode_lengths = evaluate_policy(
                    predictor, env, n_eval_episodes=NUM_ENVS, return_episode_rewards=True, warn=False
                )
            lengths.append(np.sort(np.asarray(episode_lengths)))
        return lengths

    def hand_loop() -> list[np.ndarray]:
        lengths = []
        env = hand_env
        for base in bases:
            env.reset([base + i for i in range(NUM_ENVS)])
            obs = env.obs
            active = np.ones(NUM_ENVS, dtype=bool)
            length = np.zeros(NUM_ENVS, dtype=np.int64)
            returns = np.zeros(NUM_ENVS)
            with torch.inference_mode():
                while active.any():
                    actions = forward(torch.from_numpy(obs)).numpy()
                    reward, terminated, truncated, _, _ = env.step(actions, active)
                    returns += reward * active
                    length += active
                    active &= ~(terminated | truncated)
            lengths.append(length)
        return lengths

    (ours_s, ours), (sb3_s, sb3), (hand_s, hand) = _best(clonekit_loop, sb3_loop, hand_loop)
    for a, b, c in zip(ours, sb3, hand, strict=True):  # the same episodes in all three
        assert np.array_equal(np.sort(a), b) and np.array_equal(a, c), (a, b, c)
    steps = int(sum(int(x.sum()) for x in ours))
    result = {
        "env": ENV_ID,
        "num_envs": NUM_ENVS,
        "steps": steps,
        "clonekit_steps_per_s": round(steps / ours_s),
        "sb3_steps_per_s": round(steps / sb3_s),
        "hand_steps_per_s": round(steps / hand_s),
        "ratio": round(sb3_s / ours_s, 3),
        "loop_ratio": round(hand_s / ours_s, 3),
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
