"""Batched evaluation speed vs raw env stepping, measured in the same run (prints one JSON line).

``clonekit_steps_per_s``: env steps per second of :func:`clonekit.evaluation.rollout` with a small
(untrained, so episodes run to the step limit) BC policy on 64 mazes at once. ``raw_steps_per_s``: the same
batched env stepped with random actions and no policy. ``ratio`` = clonekit / raw.
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch

from clonekit.envs import get_env_family
from clonekit.evaluation import rollout
from clonekit.policies import build_policy

NUM_ENVS = 64


def main() -> None:
    torch.manual_seed(0)
    family = get_env_family("maze")
    tasks = family.sample_tasks(0, "test", NUM_ENVS, set())
    policy = build_policy("bc", {"obs_shape": [3, 16, 16], "num_actions": 4, "encoder": "mlp", "hidden_sizes": [64]})
    policy.eval()

    env = family.make_vec(tasks)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    raw_steps = 0
    for _ in range(5):
        env.reset(seed=0)
        while not env.done.all():
            raw_steps += int((~env.done).sum())
            env.step(rng.integers(0, 4, NUM_ENVS))
    raw = raw_steps / (time.perf_counter() - start)

    start = time.perf_counter()
    steps = 0
    for i in range(5):
        results = rollout(policy, family, tasks, NUM_ENVS, seed=i)
        steps += int(results.lengths.sum())
    ours = steps / (time.perf_counter() - start)
    print(
        json.dumps({"clonekit_steps_per_s": round(ours), "raw_steps_per_s": round(raw), "ratio": round(ours / raw, 3)})
    )


if __name__ == "__main__":
    main()
