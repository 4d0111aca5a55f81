"""Episode slots in this process vs in worker processes, on a CPU-heavy gymnasium env (Meta-World), same run.

The ``gym`` family steps its slots in this process (``vector: "sync"``) or in worker processes, one per core,
each stepping a block of slots per message (``vector: "async"``, :class:`clonekit.envs.slots.ProcessSlots`).
For reference, gymnasium's own ``AsyncVectorEnv`` (one process per env, one message per env per step) steps
the same envs with the same actions. Each plays ``NUM_ENVS`` slots of ``Meta-World/MT1`` (``assembly-v3``)
for ``STEPS`` steps with random actions; building the envs and the first reset are not timed; each variant's
figure is its best of ``TRIALS`` (taking turns, so a busy spell on a shared machine hits all of them).
Prints env steps/s of each, ``ratio`` = async / sync and ``gymnasium_ratio`` = gymnasium's async / sync.
Run: ``python benchmarks/async_vec.py`` (needs ``clonekit[metaworld]``); run it on an otherwise idle machine.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from functools import partial

import gymnasium
import numpy as np

from clonekit.envs import resolve_env

NUM_ENVS = 8
STEPS = 200
TRIALS = 3
TASK = "assembly-v3"
ENV = "gym:metaworld:Meta-World/MT1"


def _actions() -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, size=(STEPS, NUM_ENVS, 4)).astype(np.float32)


def clonekit_steps_per_s(vector: str) -> float:
    family, kwargs = resolve_env(ENV, {"env_name": TASK, "vector": vector})
    tasks = family.sample_tasks(0, "test", NUM_ENVS, set(), **kwargs)
    vec = family.make_vec(tasks, **kwargs)
    vec.reset()
    actions = _actions()
    start = time.perf_counter()
    for t in range(STEPS):
        vec.step(actions[t])
        if vec.done.all():
            raise RuntimeError(f"every episode ended after {t + 1} steps; STEPS must fit in an episode")
    elapsed = time.perf_counter() - start
    vec.close()
    return NUM_ENVS * STEPS / elapsed


def gymnasium_async_steps_per_s() -> float:
    import metaworld  # noqa: F401  (registers Meta-World/MT1)

    make: Callable[[], gymnasium.Env] = partial(gymnasium.make, "Meta-World/MT1", env_name=TASK)
    vec = gymnasium.vector.AsyncVectorEnv([make] * NUM_ENVS)
    vec.reset(seed=list(range(NUM_ENVS)))
    actions = _actions()
    start = time.perf_counter()
    for t in range(STEPS):
        vec.step(actions[t])
    elapsed = time.perf_counter() - start
    vec.close()
    return NUM_ENVS * STEPS / elapsed


def main() -> None:
    warnings.filterwarnings("ignore", module="gymnasium")  # Meta-World's spaces trip the passive checker
    variants = {
        "sync": partial(clonekit_steps_per_s, "sync"),
        "async": partial(clonekit_steps_per_s, "async"),
        "gymnasium_async": gymnasium_async_steps_per_s,
    }
    best = dict.fromkeys(variants, 0.0)
    for _ in range(TRIALS):
        for name, run in variants.items():
            best[name] = max(best[name], run())
    print(
        json.dumps(
            {
                "benchmark": "async_vec",
                "env": f"Meta-World/MT1 {TASK}",
                "num_envs": NUM_ENVS,
                "cores": os.cpu_count(),
                "sync_steps_per_s": round(best["sync"], 1),
                "async_steps_per_s": round(best["async"], 1),
                "gymnasium_async_steps_per_s": round(best["gymnasium_async"], 1),
                "ratio": round(best["async"] / best["sync"], 3),
                "gymnasium_ratio": round(best["gymnasium_async"] / best["sync"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
