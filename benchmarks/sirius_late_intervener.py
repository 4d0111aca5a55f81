"""Sirius's weights against uniform weights at the claim test's size, with a late and a prompt intervener.

For each seed, ``tests.test_interactive_claims.sirius_against_uniform``: 4 BFS demonstrations on 4 mazes of 7x7,
then 3 Sirius rounds of 24 episodes (MLP 64, 150 gradient steps a training) with segment weights (intervention 2,
the 4 steps before a take-over 0) and the same with every weight 1; success on the training mazes (200 episodes).
The intervener reacts ``--delay`` steps late. Prints one line a seed.

Run from the repository root: ``OMP_NUM_THREADS=1 python benchmarks/sirius_late_intervener.py --seeds 0-9
--delay 2`` (and ``--delay 0`` for the prompt intervener).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from clonekit.experiments.common import torch_threads

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.test_interactive_claims import sirius_against_uniform  # the test's own comparison


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-9", help="first-last, inclusive")
    parser.add_argument("--delay", type=int, default=2, help="the intervener's reaction delay, in steps")
    args = parser.parse_args()
    first, last = (int(x) for x in args.seeds.split("-"))
    with torch_threads(1):
        for seed in range(first, last + 1):
            with tempfile.TemporaryDirectory() as out:
                sirius, uniform = sirius_against_uniform(Path(out), seed, args.delay)
            print(
                f"seed {seed}, delay {args.delay}: sirius {sirius:.3f}, uniform {uniform:.3f}, "
                f"gap {sirius - uniform:+.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
