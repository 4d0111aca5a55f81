"""clonekit's SAC vs Stable-Baselines3's SAC: same env, hyperparameters, step budget and seeds, same run.

On Pendulum-v1 each library trains ``SEEDS`` seeds for the same env-step budget with the same SAC settings
(rl-zoo's for Pendulum: learning rate 1e-3, otherwise SB3's defaults: one env, buffer 1e6, 100 random steps
first, batch 256, tau 0.005, gamma 0.99, one gradient step per env step, automatic entropy tuning from alpha 1
towards -|A|, ReLU MLPs of 256-256 for the actor and each of the two critics). Then each trained policy plays
``EVAL_EPISODES`` episodes with its deterministic action (tanh of the mean) on the same reset seeds. The two
libraries alternate seed by seed, so a change in the machine's load falls on both.

Printed per library: each seed's final mean return, their mean with a 95% bootstrap interval over seeds
(:func:`clonekit.evaluation.stats.summarize`), and the training throughput ``env_steps_per_s`` (budget / wall
time of the whole training, updates included; mean over seeds), then clonekit / SB3 ratios from this run.

Run: ``OMP_NUM_THREADS=1 python benchmarks/sac_vs_sb3.py [BUDGET]`` (needs ``clonekit[sb3]``; BUDGET defaults
to 10000 env steps per seed: ~15 min on one quiet core; the README's figures are from BUDGET 5000).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from typing import Any

import gymnasium
import numpy as np
import torch
from ppo_vs_sb3 import evaluate  # same episodes and reset seeds as the PPO comparison
from stable_baselines3 import SAC

from clonekit.evaluation.stats import summarize
from clonekit.rl import SACConfig, train_sac

ENV = "Pendulum-v1"
SEEDS = (0, 1, 2)
SETTINGS: dict[str, Any] = {
    "lr": 1e-3,
    "buffer_size": 1_000_000,
    "learning_starts": 100,
    "batch_size": 256,
    "tau": 0.005,
    "gamma": 0.99,
    "hidden_sizes": (256, 256),
}


def run_clonekit(budget: int, seed: int) -> tuple[float, float]:
    s = SETTINGS
    config = SACConfig(
        env=ENV,
        total_steps=budget,
        lr=s["lr"],
        buffer_size=s["buffer_size"],
        learning_starts=s["learning_starts"],
        batch_size=s["batch_size"],
        tau=s["tau"],
        gamma=s["gamma"],
        hidden_sizes=s["hidden_sizes"],
        seed=seed,
        checkpoint_every=10**9,
    )
    with tempfile.TemporaryDirectory() as out:
        began = time.perf_counter()
        actor = train_sac(config, f"{out}/run", show_progress=False)
        seconds = time.perf_counter() - began

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return actor.act({"obs": torch.from_numpy(obs)})[0].numpy()

    return evaluate(act, ENV), config.num_iterations * config.num_envs / seconds


def run_sb3(budget: int, seed: int) -> tuple[float, float]:
    s = SETTINGS
    model = SAC(
        "MlpPolicy",
        gymnasium.make(ENV),
        learning_rate=s["lr"],
        buffer_size=s["buffer_size"],
        learning_starts=s["learning_starts"],
        batch_size=s["batch_size"],
        tau=s["tau"],
        gamma=s["gamma"],
        train_freq=1,
        gradient_steps=1,
        ent_coef="auto",
        policy_kwargs={"net_arch": list(s["hidden_sizes"])},
        seed=seed,
        device="cpu",
    )
    began = time.perf_counter()
    model.learn(total_timesteps=budget)
    seconds = time.perf_counter() - began

    def act(obs: np.ndarray) -> np.ndarray:
        return model.predict(obs, deterministic=True)[0]

    return evaluate(act, ENV), model.num_timesteps / seconds


def main() -> None:
    budget = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    torch.set_num_threads(1)
    results: dict[str, list[tuple[float, float]]] = {"clonekit": [], "sb3": []}
    for seed in SEEDS:
        for name, fn in (("clonekit", run_clonekit), ("sb3", run_sb3)):
            final, speed = fn(budget, seed)
            results[name].append((final, speed))
            print(f"{ENV} {name:8s} seed {seed}: return {final:8.1f}, {speed:6.1f} env steps/s", flush=True)
    summary: dict[str, Any] = {"env": ENV, "budget": budget, "seeds": list(SEEDS)}
    for name, rows in results.items():
        returns = [r for r, _ in rows]
        stats = summarize(returns)
        speed = float(np.mean([v for _, v in rows]))
        summary[name] = {"returns": returns, "mean": stats["mean"], "ci95": stats["ci95"], "steps_per_s": speed}
        lo, hi = stats["ci95"]
        print(
            f"{ENV} {name:8s} budget {budget}: return {stats['mean']:8.1f} [95% interval {lo:.1f}, {hi:.1f}] "
            f"over seeds {list(SEEDS)} ({', '.join(f'{r:.1f}' for r in returns)}), {speed:6.1f} env steps/s"
        )
    ours, theirs = summary["clonekit"], summary["sb3"]
    summary["return_diff"] = ours["mean"] - theirs["mean"]
    summary["steps_per_s_ratio"] = ours["steps_per_s"] / theirs["steps_per_s"]
    print(
        f"{ENV}: mean return clonekit - sb3 = {summary['return_diff']:+.1f}; "
        f"env-steps/s clonekit / sb3 = {summary['steps_per_s_ratio']:.2f}x"
    )
    json.dump(summary, sys.stdout)
    print()


if __name__ == "__main__":
    main()
