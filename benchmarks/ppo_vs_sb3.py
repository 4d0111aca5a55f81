"""clonekit's PPO vs Stable-Baselines3's PPO: same env, hyperparameters, step budget and seeds, same run.

For CartPole-v1 (discrete) and Pendulum-v1 (continuous), each library trains ``SEEDS`` seeds for the same
env-step budget with the same PPO settings (rl-zoo's for these envs, without its schedules and gSDE: constant
learning rate, no value clipping, advantage normalization, the same minibatch size and epochs). Then each
trained policy plays ``EVAL_EPISODES`` episodes greedily (argmax / mean action) on the same reset seeds.

Printed per env and library: the final mean return over seeds (with its min and max over seeds) and the
training throughput ``env_steps_per_s`` (budget / wall time of the whole training, updates included), then
the ratios clonekit / SB3 measured in this run. Differences that remain: SB3's MLPs use tanh, clonekit's
actor is a ``bc`` / ``continuous_bc`` network (ReLU); clonekit draws continuous actions in [-1, 1]-scaled
units (``init_log_std`` is set so the initial std is SB3's 1.0 in env units).

Run: ``OMP_NUM_THREADS=1 python benchmarks/ppo_vs_sb3.py`` (needs ``clonekit[sb3]``; ~10 min on 2 cores).
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from typing import Any

import gymnasium
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from clonekit.rl import PPOConfig, train_ppo

SEEDS = (0, 1, 2)
EVAL_EPISODES = 20
EVAL_SEED = 10_000
# env -> (budget, settings shared by both libraries)
SETTINGS: dict[str, tuple[int, dict[str, Any]]] = {
    "CartPole-v1": (
        30_000,
        {"n_envs": 8, "n_steps": 32, "batch_size": 64, "n_epochs": 20, "gamma": 0.98, "gae_lambda": 0.8, "lr": 1e-3},
    ),
    "Pendulum-v1": (
        60_000,
        {"n_envs": 4, "n_steps": 1024, "batch_size": 64, "n_epochs": 10, "gamma": 0.9, "gae_lambda": 0.95, "lr": 1e-3},
    ),
}


def evaluate(act: Any, env_id: str) -> float:
    """Mean return of ``act(obs (1, D)) -> action`` over ``EVAL_EPISODES`` episodes with fixed reset seeds."""
    env = gymnasium.make(env_id)
    returns = []
    for episode in range(EVAL_EPISODES):
        obs, _ = env.reset(seed=EVAL_SEED + episode)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(np.asarray(obs, np.float32)[None])[0])
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def run_clonekit(env_id: str, budget: int, s: dict[str, Any], seed: int) -> tuple[float, float]:
    continuous = env_id == "Pendulum-v1"
    config = PPOConfig(
        env=env_id,
        total_steps=budget,
        num_envs=s["n_envs"],
        num_steps=s["n_steps"],
        num_minibatches=s["n_envs"] * s["n_steps"] // s["batch_size"],
        update_epochs=s["n_epochs"],
        gamma=s["gamma"],
        gae_lambda=s["gae_lambda"],
        lr=s["lr"],
        anneal_lr=False,
        clip_vloss=False,
        init_log_std=math.log(0.5) if continuous else 0.0,  # Pendulum's bounds are +-2: std 1 in env units
        seed=seed,
        checkpoint_every=10**9,
    )
    with tempfile.TemporaryDirectory() as out:
        began = time.perf_counter()
        actor = train_ppo(config, f"{out}/run", show_progress=False)
        seconds = time.perf_counter() - began

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return actor.act({"obs": torch.from_numpy(obs)})[0].numpy()

    return evaluate(act, env_id), config.num_iterations * config.batch_size / seconds


def run_sb3(env_id: str, budget: int, s: dict[str, Any], seed: int) -> tuple[float, float]:
    envs = make_vec_env(env_id, n_envs=s["n_envs"], seed=seed)
    model = PPO(
        "MlpPolicy",
        envs,
        n_steps=s["n_steps"],
        batch_size=s["batch_size"],
        n_epochs=s["n_epochs"],
        gamma=s["gamma"],
        gae_lambda=s["gae_lambda"],
        learning_rate=s["lr"],
        ent_coef=0.0,
        clip_range=0.2,
        seed=seed,
        device="cpu",
    )
    began = time.perf_counter()
    model.learn(total_timesteps=budget)
    seconds = time.perf_counter() - began
    steps = model.num_timesteps

    def act(obs: np.ndarray) -> np.ndarray:
        return model.predict(obs, deterministic=True)[0]

    return evaluate(act, env_id), steps / seconds


def main() -> None:
    torch.set_num_threads(1)
    rows = {}
    for env_id, (budget, settings) in SETTINGS.items():
        for name, fn in (("clonekit", run_clonekit), ("sb3", run_sb3)):
            results = [fn(env_id, budget, settings, seed) for seed in SEEDS]
            returns = [r for r, _ in results]
            speed = float(np.mean([v for _, v in results]))
            rows[(env_id, name)] = {"returns": returns, "steps_per_s": speed}
            print(
                f"{env_id:12s} {name:8s} budget {budget}: return {np.mean(returns):8.1f} "
                f"[min {min(returns):.1f}, max {max(returns):.1f}] over seeds {list(SEEDS)}, "
                f"{speed:7.0f} env steps/s",
                flush=True,
            )
    summary = {}
    for env_id in SETTINGS:
        ours, theirs = rows[(env_id, "clonekit")], rows[(env_id, "sb3")]
        summary[env_id] = {
            "clonekit_return": ours["returns"],
            "sb3_return": theirs["returns"],
            "return_diff": float(np.mean(ours["returns"]) - np.mean(theirs["returns"])),
            "steps_per_s_ratio": ours["steps_per_s"] / theirs["steps_per_s"],
        }
        print(
            f"{env_id}: mean return clonekit - sb3 = {summary[env_id]['return_diff']:+.1f}; "
            f"env-steps/s clonekit / sb3 = {summary[env_id]['steps_per_s_ratio']:.2f}x"
        )
    json.dump(summary, sys.stdout)
    print()


if __name__ == "__main__":
    main()
