"""clonekit's PPO vs Stable-Baselines3's PPO: same env, hyperparameters, step budget and seeds, same run.

For CartPole-v1 (discrete) and Pendulum-v1 (continuous), each library trains ``SEEDS`` seeds for the same
env-step budget with the same PPO settings (rl-zoo's for these envs, without its schedules and gSDE: constant
learning rate, no value clipping, advantage normalization, the same minibatch size and epochs). Then each
trained policy plays ``EVAL_EPISODES`` episodes greedily (argmax / mean action) on the same reset seeds. The
libraries alternate seed by seed (clonekit seed 0, SB3 seed 0, clonekit seed 1, ...), so a change in the host's
load falls on both.

Printed per env and library: the final mean return over seeds with its 95% bootstrap interval over seeds
(:func:`clonekit.evaluation.stats.summarize`), and the training throughput two ways: ``env-steps/s`` (budget /
wall time of the whole training, updates included: clonekit's ``train_ppo`` from start to end, SB3's ``learn``)
and ``cpu env-steps/s`` (budget / this process's CPU time over the same span; with one torch thread it is the
less noisy of the two on a shared host, since time spent waiting for a core is not counted). Then the ratios
clonekit / SB3 measured in this run. Differences that remain: SB3's MLPs use tanh, clonekit's actor is a ``bc``
/ ``continuous_bc`` network (ReLU); clonekit draws continuous actions in [-1, 1]-scaled units
(``init_log_std`` is set so the initial std is SB3's 1.0 in env units).

Run: ``OMP_NUM_THREADS=1 python benchmarks/ppo_vs_sb3.py [--envs Pendulum-v1] [--seeds 0,1,2] [--budget-scale 0.5]``
(needs ``clonekit[sb3]``; ~10 min on 2 idle cores with the defaults).
"""

from __future__ import annotations

import argparse
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

from clonekit.evaluation.stats import summarize
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


def run_clonekit(env_id: str, budget: int, s: dict[str, Any], seed: int) -> tuple[float, float, float]:
    """Train and evaluate one seed: ``(return, env steps per wall second, env steps per CPU second)``."""
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
        began, began_cpu = time.perf_counter(), time.process_time()
        actor = train_ppo(config, f"{out}/run", show_progress=False)
        seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - began_cpu

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return actor.act({"obs": torch.from_numpy(obs)})[0].numpy()

    steps = config.num_iterations * config.batch_size
    return evaluate(act, env_id), steps / seconds, steps / cpu_seconds


def run_sb3(env_id: str, budget: int, s: dict[str, Any], seed: int) -> tuple[float, float, float]:
    """Train and evaluate one seed: ``(return, env steps per wall second, env steps per CPU second)``."""
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
    began, began_cpu = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=budget)
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - began_cpu
    steps = model.num_timesteps

    def act(obs: np.ndarray) -> np.ndarray:
        return model.predict(obs, deterministic=True)[0]

    return evaluate(act, env_id), steps / seconds, steps / cpu_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--envs", default=",".join(SETTINGS), help=f"comma-separated, of {', '.join(SETTINGS)}")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="comma-separated training seeds")
    parser.add_argument("--budget-scale", type=float, default=1.0, help="fraction of each env's step budget")
    args = parser.parse_args()
    envs = [e for e in args.envs.split(",") if e]
    unknown = [e for e in envs if e not in SETTINGS]
    if unknown or not envs:
        parser.error(f"--envs: expected some of {', '.join(SETTINGS)}, found {args.envs!r}")
    try:
        seeds = [int(x) for x in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds: expected comma-separated integers, found {args.seeds!r}")
    if not 0 < args.budget_scale <= 1:
        parser.error(f"--budget-scale: expected a number in (0, 1], found {args.budget_scale}")
    torch.set_num_threads(1)
    # A process's first optimizer step imports torch._dynamo (seconds of CPU): done here, so that neither
    # library's first timed run pays it.
    warm_up = torch.nn.Parameter(torch.zeros(1))
    warm_up.grad = torch.zeros(1)
    torch.optim.Adam([warm_up]).step()
    summary: dict[str, Any] = {}
    for env_id in envs:
        budget, settings = SETTINGS[env_id]
        budget = max(1, round(budget * args.budget_scale))
        rows: dict[str, list[tuple[float, float, float]]] = {"clonekit": [], "sb3": []}
        for seed in seeds:
            for name, fn in (("clonekit", run_clonekit), ("sb3", run_sb3)):
                rows[name].append(fn(env_id, budget, settings, seed))
                ret, speed, cpu_speed = rows[name][-1]
                print(
                    f"{env_id:12s} {name:8s} seed {seed}: return {ret:8.1f}, {speed:6.0f} env steps/s, "
                    f"{cpu_speed:6.0f} cpu env steps/s",
                    flush=True,
                )
        result: dict[str, Any] = {"budget": budget, "seeds": seeds}
        for name, values in rows.items():
            returns = [r for r, _, _ in values]
            stats = summarize(returns)
            result[name] = {
                "returns": returns,
                "mean": stats["mean"],
                "ci95": stats["ci95"],
                "steps_per_s": float(np.mean([v for _, v, _ in values])),
                "cpu_steps_per_s": float(np.mean([v for _, _, v in values])),
            }
            lo, hi = stats["ci95"]
            print(
                f"{env_id:12s} {name:8s} budget {budget}: return {stats['mean']:8.1f} [95% interval {lo:.1f}, "
                f"{hi:.1f}] over seeds {seeds}, {result[name]['steps_per_s']:6.0f} env steps/s, "
                f"{result[name]['cpu_steps_per_s']:6.0f} cpu env steps/s",
                flush=True,
            )
        ours, theirs = result["clonekit"], result["sb3"]
        result["return_diff"] = ours["mean"] - theirs["mean"]
        result["steps_per_s_ratio"] = ours["steps_per_s"] / theirs["steps_per_s"]
        result["cpu_steps_per_s_ratio"] = ours["cpu_steps_per_s"] / theirs["cpu_steps_per_s"]
        print(
            f"{env_id}: mean return clonekit - sb3 = {result['return_diff']:+.1f}; env-steps/s clonekit / sb3 = "
            f"{result['steps_per_s_ratio']:.2f}x (wall), {result['cpu_steps_per_s_ratio']:.2f}x (cpu)",
            flush=True,
        )
        summary[env_id] = result
    json.dump(summary, sys.stdout)
    print()


if __name__ == "__main__":
    main()
