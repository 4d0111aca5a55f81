"""Demonstrations that explore and backtrack against shortest paths alone, on unseen perfect mazes, at small size.

The claim of ``maze-strategies`` with ``teacher_choice="random"`` (README, "A teacher whose procedures act
differently"): thought cloning on the random teacher's episodes (a uniformly drawn procedure among those that
reach the goal: BFS, depth-first search, wall following, greedy descent; dead ends and returns included)
generalizes to perfect mazes far better than on BFS's shortest paths. Per seed: 100 training mazes of 9x9 with
loop fraction 0.2, 400 episodes of each teacher in the shared vocabulary, thought cloning (hidden 64, window 32,
600 steps of 16 episodes, lr 1e-3) on each, greedy evaluation on 40 unseen perfect mazes (loop fraction 0), 3
episodes each from random start cells.
Prints one line a seed: both successes and the gap.

Not a test: the smallest setting that separates the two takes ~40 s of CPU a seed (400 gradient steps learn
nothing on either data), more than the suite's time allows. Run from the repository root:
``OMP_NUM_THREADS=1 python benchmarks/backtracking_generalization.py --seeds 0-4``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from clonekit.envs import get_env_family
from clonekit.envs.maze import sample_tasks
from clonekit.evaluation.thoughts import thought_rollout
from clonekit.experiments.common import torch_threads
from clonekit.experts.collect import collect
from clonekit.train import TrainConfig, train

TRAIN: dict[str, Any] = {"size": 9, "loop_fraction": 0.2}
PERFECT: dict[str, Any] = {"size": 9, "loop_fraction": 0.0}
TEACHERS: dict[str, tuple[str, dict[str, Any]]] = {  # arm -> (expert, options), both narrating in the shared vocabulary
    "backtracking": ("choose-thoughts", {"choice": "random", "shared_vocabulary": True}),
    "shortest": ("bfs-thoughts", {"shared_vocabulary": True}),
}


def compare(out: Path, seed: int, mazes: int = 100, episodes: int = 400, steps: int = 600) -> dict[str, float]:
    """Unseen-perfect-maze success of thought cloning on each teacher's episodes (same mazes, seed, budget)."""
    family = get_env_family("maze")
    tasks = sample_tasks(seed, "test", 40, **PERFECT)
    success = {}
    for arm, (expert, options) in TEACHERS.items():
        data = collect(
            "maze", expert, episodes=episodes, seed=seed, out=out / arm, num_tasks=mazes, env_kwargs=TRAIN,
            expert_kwargs=options, show_progress=False,
        )  # fmt: skip
        config = TrainConfig(
            steps=steps, batch_size=16, lr=1e-3, seed=seed, tensorboard=False, val_fraction=0.0,
            checkpoint_every=steps, keep_checkpoints=1,
        )  # fmt: skip
        policy = train("thought_cloning", data, out / f"run_{arm}", config, {"hidden_size": 64, "window": 32},
                       show_progress=False)  # fmt: skip
        played = thought_rollout(policy, family, tasks, 3 * len(tasks), seed, PERFECT).results
        success[arm] = float(np.mean(played.success))
    return success


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-4", help="first-last, inclusive")
    args = parser.parse_args()
    first, last = (int(x) for x in args.seeds.split("-"))
    with torch_threads(1):
        for seed in range(first, last + 1):
            began = time.perf_counter()
            with tempfile.TemporaryDirectory() as out:
                success = compare(Path(out), seed)
            gap = success["backtracking"] - success["shortest"]
            print(
                f"seed {seed}: backtracking {success['backtracking']:.3f}, shortest {success['shortest']:.3f}, "
                f"gap {gap:+.3f} ({time.perf_counter() - began:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
