"""Memory of a memory-mapped dataset: peak RSS increase vs the raw bytes read (one JSON line).

A 1M-transition dataset (obs: 64 float32 features, plus action/reward/terminated/truncated: about 270 MB of
arrays) is written to disk. A fresh process then opens it, reads every stream of every episode through
``Dataset.episode`` (zero-copy views of the mapped files) and sums them, and samples 200 random batches of 256
(``Dataset.sample``, as the training loop does). ``rss_over_bytes`` = (peak RSS during that work − RSS before
``Dataset.open``) / bytes of the arrays read. Mapped pages count in RSS once; a reader that copied the data
would show about 2. Linux only (``/proc/self/status``). Run: ``python benchmarks/dataset_memory.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

NUM_STEPS = 1_000_000
EPISODE_LENGTH = 1000
OBS_DIM = 64

CHILD = r"""
import json, sys
import numpy as np, torch
from clonekit.data import Dataset

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)

with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS
    f.write("5")
before = status("VmRSS")
dataset = Dataset.open(sys.argv[1])
read = 0
total = 0.0
for i in range(dataset.num_episodes):
    for name, values in dataset.episode(i).items():
        total += float(values.sum(dtype=np.float64))
        read += values.nbytes
generator = torch.Generator().manual_seed(0)
for _ in range(200):
    dataset.sample(256, generator, ["obs", "action"])
print(json.dumps({"before": before, "peak": status("VmHWM"), "bytes_read": read, "checksum": total}))
"""


def main() -> None:
    from _synthetic import write_synthetic

    rng = np.random.default_rng(0)
    episodes = (
        (rng.standard_normal((EPISODE_LENGTH, OBS_DIM), dtype=np.float32), rng.integers(0, 4, EPISODE_LENGTH))
        for _ in range(NUM_STEPS // EPISODE_LENGTH)
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data"
        write_synthetic(path, episodes, OBS_DIM, 4)
        done = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True)
    child = json.loads(done.stdout.strip().splitlines()[-1])
    increase = child["peak"] - child["before"]
    print(
        json.dumps(
            {
                "num_steps": NUM_STEPS,
                "bytes_read": child["bytes_read"],
                "rss_increase_bytes": increase,
                "rss_over_bytes": round(increase / child["bytes_read"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
