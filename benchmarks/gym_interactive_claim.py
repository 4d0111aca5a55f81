"""gym-interactive's claim at the claim test's size over several seeds: the figures behind its thresholds.

For each seed, ``tests.test_gym_interactive.hg_dagger_against_bc``: BC on 3 swing-up demonstrations (600 labels)
against HG-DAgger from 1 demonstration with at most 400 labels of take-overs (2 rounds of 8 episodes), both MLPs of
128x128 trained 1,000 steps; test success on 16 unseen start states and each policy's mean L1 torque error against
the expert on the states it visits itself. Prints one line a seed.

Run from the repository root: ``OMP_NUM_THREADS=1 python benchmarks/gym_interactive_claim.py --seeds 0-11``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from clonekit.experiments.common import torch_threads

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.test_gym_interactive import hg_dagger_against_bc  # the test's own comparison


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-11", help="first-last, inclusive")
    first, last = (int(x) for x in parser.parse_args().seeds.split("-"))
    with torch_threads(1):
        for seed in range(first, last + 1):
            with tempfile.TemporaryDirectory() as out:
                success, error, labels = hg_dagger_against_bc(Path(out), seed)
            print(
                f"seed {seed}: hg_dagger labels {labels}; success bc {success['bc']:.2f}, hg_dagger "
                f"{success['hg_dagger']:.2f}; own-state error bc {error['bc']:.3f}, hg_dagger {error['hg_dagger']:.3f} "
                f"(ratio {error['hg_dagger'] / error['bc']:.2f})",
                flush=True,
            )


if __name__ == "__main__":
    main()
