"""The maze-recovery claim at the step level over several seeds: the figures behind the claim test's threshold.

For each seed, :func:`clonekit.experiments.maze_recovery.way_back_accuracy` at the test's size (6 training mazes
of 11x11, 16 splices a maze, BC 300 steps): how often BC on the demonstrations alone and BC on demonstrations +
recovery splices pick the expert's move at the states on its way back after a held-out push that no
demonstration visited, and BC with as many more labels spent on ordinary demonstrations (``bc_more``).
``--resume-after none`` is the control: splices cut at the first mistake instead of after
the whole push. Prints one line a seed and the margin's minimum and mean.

Run: ``OMP_NUM_THREADS=1 python benchmarks/maze_recovery_way_back.py --seeds 0-9 [--resume-after none]``.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from clonekit.experiments import maze_recovery
from clonekit.experiments.common import torch_threads

SIZE = replace(
    maze_recovery.QUICK, maze_size=11, train_mazes=6, spare_mazes=530, recovery_per_maze=16, test_mazes=1,
    train_steps=300, batch_size=32,
)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-9", help="first-last, inclusive")
    parser.add_argument("--resume-after", choices=("perturbed", "none"), default="perturbed")
    args = parser.parse_args()
    first, last = (int(x) for x in args.seeds.split("-"))
    if args.resume_after == "none":
        splice = maze_recovery.recovery_episodes

        def at_first_mistake(*a: Any, **kw: Any) -> Any:
            return splice(*a, **{**kw, "resume_after": None})

        maze_recovery.recovery_episodes = at_first_mistake  # type: ignore[assignment]
    margins, more = [], []
    with torch_threads(1):
        for seed in range(first, last + 1):
            with tempfile.TemporaryDirectory() as out:
                acc = maze_recovery.way_back_accuracy(Path(out), SIZE, seed, keys=maze_recovery.POLICIES)
            margins.append(acc["bc_recovery"] - acc["bc_clean"])
            more.append(acc["bc_recovery"] - acc["bc_more"])
            print(
                f"seed {seed}: {acc['states']} states, clean {acc['bc_clean']:.3f}, recovery "
                f"{acc['bc_recovery']:.3f}, more {acc['bc_more']:.3f}, margin {margins[-1]:+.3f} over clean, "
                f"{more[-1]:+.3f} over more",
                flush=True,
            )
    print(f"margin over clean: min {min(margins):+.3f}, mean {np.mean(margins):+.3f}")
    print(f"margin over more: min {min(more):+.3f}, mean {np.mean(more):+.3f}")


if __name__ == "__main__":
    main()
