"""Synchronous vs asynchronous vector envs on a CPU-heavy gymnasium env (Meta-World), same run.

The ``gym`` family steps its slots in one process (``vector: "sync"``, gymnasium's ``SyncVectorEnv``) or in
one subprocess per slot (``vector: "async"``, ``AsyncVectorEnv``). For an env whose step is expensive
(MuJoCo physics), the subprocesses run on all cores. This plays ``NUM_ENVS`` slots of
``Meta-World/MT1`` (``assembly-v3``) for ``STEPS`` steps with random actions (the same actions for both) and
prints env steps/s of each and ``ratio`` = async / sync. Building the envs and the first reset are not
timed. Run: ``python benchmarks/async_vec.py`` (needs ``clonekit[metaworld]``).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from clonekit.envs import resolve_env

NUM_ENVS = 8
STEPS = 300
TASK = "assembly-v3"


def steps_per_s(vector: str) -> float:
    family, kwargs = resolve_env("gym:metaworld:Meta-World/MT1", {"env_name": TASK, "vector": vector})
    tasks = family.sample_tasks(0, "test", NUM_ENVS, set(), **kwargs)
    vec = family.make_vec(tasks, **kwargs)
    vec.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, size=(STEPS, NUM_ENVS, 4)).astype(np.float32)
    start = time.perf_counter()
    stepped = 0
    for t in range(STEPS):
        _, _, terminated, truncated = vec.step(actions[t])
        stepped += NUM_ENVS
        if np.all(terminated | truncated):
            break
    elapsed = time.perf_counter() - start
    close = getattr(vec, "close", None)
    if close is not None:
        close()
    return stepped / elapsed


def main() -> None:
    sync = steps_per_s("sync")
    asynchronous = steps_per_s("async")
    print(
        json.dumps(
            {
                "benchmark": "async_vec",
                "env": f"Meta-World/MT1 {TASK}",
                "num_envs": NUM_ENVS,
                "cores": os.cpu_count(),
                "sync_steps_per_s": round(sync, 1),
                "async_steps_per_s": round(asynchronous, 1),
                "ratio": round(asynchronous / sync, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
