"""Episode slots in this process vs in worker processes, on a CPU-heavy gymnasium env (Meta-World), same run.

The ``gym`` family steps its slots in this process (``vector: "sync"``) or in worker processes, one per core,
each stepping a block of slots per message (``vector: "async"``, :class:`clonekit.envs.slots.ProcessSlots`).
For reference, gymnasium's own ``AsyncVectorEnv`` (one process per env, one message per env per step) steps
the same envs with the same actions. Each plays ``NUM_ENVS`` slots of ``Meta-World/MT1`` (``assembly-v3``)
for ``STEPS`` steps with random actions; building the envs and the first reset are not timed; each variant's
figure is its best of ``TRIALS`` (taking turns, so a busy spell on a shared machine hits all of them).
Prints env steps/s of each, ``ratio`` = async / sync and ``gymnasium_ratio`` = gymnasium's async / sync.

``ceiling``: what the machine allows at best. One env is stepped alone in a subprocess, then one in each of
``os.cpu_count()`` subprocesses at once; ``ceiling`` = processes x (time per step alone / time per step when
all run together). On a machine whose cores share execution resources (hyper-threads, a busy host) it is well
below the core count, and no way of spreading the envs over processes can beat it.
Run: ``python benchmarks/async_vec.py`` (needs ``clonekit[metaworld]``); run it on an otherwise idle machine.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
import warnings
from collections.abc import Callable
from functools import partial

import gymnasium
import numpy as np

from clonekit.envs import resolve_env

NUM_ENVS = 16
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


def _step_alone(steps: int, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    import metaworld  # noqa: F401  (registers Meta-World/MT1)

    env = gymnasium.make("Meta-World/MT1", env_name=TASK)
    env.reset(seed=0)
    action = np.zeros(4, dtype=np.float32)
    start = time.perf_counter()
    for i in range(steps):
        if i % 400 == 399:  # Meta-World truncates at 500 steps
            env.reset(seed=i)
        env.step(action)
    queue.put((time.perf_counter() - start) / steps)


def parallel_ceiling(steps: int = 600) -> float:
    """processes x (seconds per step alone / seconds per step with every process stepping at once)."""
    context = multiprocessing.get_context()
    queue = context.Queue()
    times = []
    for count in (1, os.cpu_count() or 1):
        processes = [context.Process(target=_step_alone, args=(steps, queue)) for _ in range(count)]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        times.append(float(np.mean([queue.get() for _ in range(count)])))
    return (os.cpu_count() or 1) * times[0] / times[1]


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
                "ceiling": round(parallel_ceiling(), 3),
                "gymnasium_ratio": round(best["gymnasium_async"] / best["sync"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
