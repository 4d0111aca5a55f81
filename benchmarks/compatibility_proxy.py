"""Is ``agreement_with_others`` (free) a fair proxy for leave-one-demonstrator-out compatibility (one training run
per demonstrator)? Both on polluted maze demonstrations (3 BFS experts, 2 greedy-style, 2 with 30% action
noise; :mod:`clonekit.experiments.maze_pollution`), printed side by side per demonstrator with the rank
correlation between them.

Run: ``python benchmarks/compatibility_proxy.py SIZE TASKS STEPS SEED`` (e.g. ``7 6 300 0``; one torch thread).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr

from clonekit.envs.maze import sample_tasks
from clonekit.experiments.maze_pollution import PollutionConfig, polluted_demonstrations
from clonekit.quality.policy_metrics import compatibility
from clonekit.quality.report import quality_report
from clonekit.train import TrainConfig


def main(size: int, num_tasks: int, steps: int, seed: int) -> None:
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp())
    tasks = sample_tasks(seed, "train", num_tasks, size=size)
    config = PollutionConfig(experts=3, noisy=2, wanderers=0, greedy=2, starts=4, noise_rate=0.3)
    data = polluted_demonstrations(root / "data", tasks, config, seed, {"size": size})
    start = time.perf_counter()
    train_config = TrainConfig(
        steps=steps, batch_size=128, log_every=10**6, checkpoint_every=10**6, tensorboard=False, seed=seed
    )
    result = compatibility(data, "bc", root / "compat", train_config)
    report = quality_report(data)
    names = list(result["demonstrators"])
    compat = [result["demonstrators"][n]["compatibility"] for n in names]
    agree = [report["demonstrators"][n]["agreement_with_others"] for n in names]
    print("demonstrator  divergence_own  others_held_out  compatibility  agreement_with_others")
    for name, value, proxy in zip(names, compat, agree, strict=True):
        row = result["demonstrators"][name]
        print(
            f"{name:12s}  {row['divergence_own']:14.3f}  {row['divergence_others_held_out']:15.3f}  "
            f"{value:+13.3f}  {proxy:21.3f}"
        )
    print(f"spearman(compatibility, agreement) = {spearmanr(compat, agree).statistic:.3f}")
    print(f"compatibility took {time.perf_counter() - start:.1f} s ({len(names)} runs)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:5]))
