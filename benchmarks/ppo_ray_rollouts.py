"""PPO's rollout collection with the envs in this process vs in Ray actors, on a cheap env and a CPU-heavy one.

A PPO rollout step is: the actor-critic acts on every env's observation (one batched forward pass in this
process), then every env steps. ``local`` is what :func:`clonekit.rl.ppo.train_ppo` does: the envs step in this
process (:class:`clonekit.rl.vector.VectorEnv`, gymnasium's ``SyncVectorEnv``). ``ray`` splits the same envs
over ``--workers`` Ray actors (each holding a ``VectorEnv`` over its block of envs), sends each actor its
block of actions and waits for all of them: one Ray call per actor per step, the envs of different actors
stepping at the same time. Both play the same actor (freshly initialized, sampling actions) for ``--steps``
steps per env; building the envs, starting Ray and the first reset are not timed. Each variant's figure is
its best of ``--trials`` (taking turns, so a busy spell on a shared machine hits both).

Envs: ``Pendulum-v1`` (microseconds per step) and Meta-World MT1 ``assembly-v3`` (MuJoCo, about a
millisecond per step). Prints env steps/s of each and ``ratio`` = ray / local per env, then a JSON line.

Run: ``OMP_NUM_THREADS=1 python benchmarks/ppo_ray_rollouts.py [--steps 200] [--workers 2]`` (needs
``clonekit[ray,metaworld]``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from typing import Any

import numpy as np
import torch

from clonekit.distributed import init_ray
from clonekit.rl.agent import ActorCritic, new_actor
from clonekit.rl.vector import VectorEnv, gym_env_factories

# name -> (env, env_kwargs, num_envs)
ENVS: dict[str, tuple[str, dict[str, Any], int]] = {
    "Pendulum-v1": ("Pendulum-v1", {}, 4),
    "metaworld-assembly": ("gym:metaworld:Meta-World/MT1", {"env_name": "assembly-v3"}, 8),
}


def make_vector(env: str, env_kwargs: dict[str, Any], num_envs: int) -> VectorEnv:
    """A ``VectorEnv`` of ``num_envs`` copies of ``env``, as ``train_ppo`` builds it."""
    warnings.filterwarnings("ignore", module="gymnasium")  # Meta-World's spaces trip the passive checker
    factories, block = gym_env_factories(env, env_kwargs, num_envs)
    return VectorEnv(factories, block["kwargs"]["obs_keys"])


class EnvBlock:
    """A block of envs stepped in a Ray actor: the same ``VectorEnv`` as the local variant's."""

    def __init__(self, env: str, env_kwargs: dict[str, Any], num_envs: int) -> None:
        torch.set_num_threads(1)
        self.envs = make_vector(env, env_kwargs, num_envs)

    def reset(self, seed: int) -> np.ndarray:
        return self.envs.reset(seed)

    def step(self, actions: np.ndarray) -> tuple[Any, ...]:
        return self.envs.step(actions)


def rollout_steps_per_s(agent: ActorCritic, reset: Any, step: Any, num_envs: int, steps: int) -> float:
    """Env steps/s of ``steps`` PPO rollout steps: act on the observations, then ``step(actions)``."""
    generator = torch.Generator().manual_seed(0)
    obs = reset(0)
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(steps):
            actions, _, _ = agent.sample(torch.from_numpy(obs), generator)
            obs = step(agent.env_action(actions))[0]
    return num_envs * steps / (time.perf_counter() - start)


def measure(name: str, steps: int, workers: int, trials: int) -> dict[str, Any]:
    """Best-of-``trials`` env steps/s of the local and the Ray variant on env ``name``."""
    env, env_kwargs, num_envs = ENVS[name]
    ray = init_ray(workers=workers)
    local = make_vector(env, env_kwargs, num_envs)
    torch.manual_seed(0)
    agent = ActorCritic(new_actor(local.observation_space, local.action_space, "auto", (64, 64)), (64, 64), 0.0)
    agent.eval()
    sizes = [len(block) for block in np.array_split(np.arange(num_envs), workers)]
    actor_cls = ray.remote(num_cpus=1)(EnvBlock)
    actors = [actor_cls.remote(env, env_kwargs, size) for size in sizes]
    cuts = np.cumsum(sizes)[:-1]

    def ray_reset(seed: int) -> np.ndarray:
        return np.concatenate(ray.get([a.reset.remote(seed + int(i)) for a, i in zip(actors, [0, *cuts], strict=True)]))

    def ray_step(actions: np.ndarray) -> tuple[np.ndarray]:
        results = ray.get([a.step.remote(block) for a, block in zip(actors, np.split(actions, cuts), strict=True)])
        return (np.concatenate([r[0] for r in results]),)

    ray_reset(0)  # the actors are built (and the envs made) before any timing
    best = {"local": 0.0, "ray": 0.0}
    for _ in range(trials):
        best["local"] = max(best["local"], rollout_steps_per_s(agent, local.reset, local.step, num_envs, steps))
        best["ray"] = max(best["ray"], rollout_steps_per_s(agent, ray_reset, ray_step, num_envs, steps))
    local.close()
    for actor in actors:
        ray.kill(actor)
    result = {"env": name, "num_envs": num_envs, "workers": workers, "steps_per_env": steps}
    result.update({f"{k}_steps_per_s": round(v, 1) for k, v in best.items()})
    result["ratio"] = round(best["ray"] / best["local"], 3)
    print(
        f"{name:20s} {num_envs} envs, {steps} steps each: local {best['local']:7.0f} env steps/s, "
        f"ray ({workers} actors) {best['ray']:7.0f} env steps/s, ray / local = {result['ratio']:.2f}x",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--steps", type=int, default=200, help="rollout steps per env in each trial")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="Ray actors (default: cores)")
    parser.add_argument("--trials", type=int, default=3, help="trials per variant; the best counts")
    parser.add_argument("--envs", default=",".join(ENVS), help=f"comma-separated, of {', '.join(ENVS)}")
    args = parser.parse_args()
    names = [e for e in args.envs.split(",") if e]
    if not names or any(e not in ENVS for e in names):
        parser.error(f"--envs: expected some of {', '.join(ENVS)}, found {args.envs!r}")
    if args.steps < 1 or args.workers < 1 or args.trials < 1:
        parser.error("--steps, --workers, --trials: expected integers >= 1")
    torch.set_num_threads(1)
    results = [measure(name, args.steps, args.workers, args.trials) for name in names]
    print(json.dumps({"benchmark": "ppo_ray_rollouts", "cores": os.cpu_count(), "results": results}))


if __name__ == "__main__":
    main()
