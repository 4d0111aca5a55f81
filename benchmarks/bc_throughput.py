"""BC training throughput: clonekit's own path vs a bare PyTorch loop, measured in the same run (one JSON line).

Work: 100k synthetic transitions (obs: 64 float32 features, 4 discrete actions), an MLP 64-256-256-4, batch 256,
Adam (lr 1e-3), ``STEPS`` gradient steps each, no gradient clipping on either side (clonekit's default clips
at norm 1, which the bare loop does not do; ``clip_ratio`` reports that configuration too).

``clonekit_samples_per_s``: the dataset is written to disk with ``DatasetWriter``, opened (memory-mapped) and
trained with ``clonekit.train.train("bc", ...)``: the whole call, including opening the run directory, fitting
the observation normalizer, the final checkpoint and the weights file. ``torch_samples_per_s``: the same network
and optimizer over tensors already in memory, indices from ``torch.randint``, nothing else.
``steady_samples_per_s``: clonekit's own in-loop figure from ``metrics.jsonl`` (median over logging windows),
without the fixed start/finish costs. ``ratio`` = clonekit / torch; ``steady_ratio`` = steady / torch.
Both loops use the same number of torch threads (``torch_threads``). Run: ``python benchmarks/bc_throughput.py``.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _synthetic import write_synthetic

from clonekit.data import Dataset
from clonekit.train import TrainConfig, train

NUM_STEPS = 100_000
EPISODE_LENGTH = 100
OBS_DIM = 64
NUM_ACTIONS = 4
BATCH = 256
STEPS = 1500


def _write(path: Path, obs: np.ndarray, actions: np.ndarray) -> Dataset:
    starts = range(0, NUM_STEPS, EPISODE_LENGTH)
    episodes = ((obs[i : i + EPISODE_LENGTH], actions[i : i + EPISODE_LENGTH]) for i in starts)
    return write_synthetic(path, episodes, OBS_DIM, NUM_ACTIONS)


def _bare_loop(obs: torch.Tensor, actions: torch.Tensor) -> float:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(OBS_DIM, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, NUM_ACTIONS),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    start = time.perf_counter()
    for _ in range(STEPS):
        index = torch.randint(len(obs), (BATCH,), generator=generator)
        loss = torch.nn.functional.cross_entropy(model(obs[index]), actions[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return STEPS * BATCH / (time.perf_counter() - start)


def _clonekit(dataset: Dataset, out: Path, steps: int = STEPS, grad_clip: float = 0.0) -> tuple[float, float]:
    config = TrainConfig(
        steps=steps, batch_size=BATCH, lr=1e-3, seed=0, checkpoint_every=steps, tensorboard=False, grad_clip=grad_clip
    )
    overrides = {"encoder": "mlp", "hidden_sizes": [256, 256], "normalize_obs": "per_feature"}
    start = time.perf_counter()
    train("bc", dataset, out, config, policy_overrides=overrides, show_progress=False)
    whole = steps * BATCH / (time.perf_counter() - start)
    windows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steady = statistics.median(w["samples_per_s"] for w in windows[1:-1] or windows)
    return whole, steady


def main() -> None:
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((NUM_STEPS, OBS_DIM), dtype=np.float32)
    actions = (obs[:, :NUM_ACTIONS].argmax(axis=1)).astype(np.int64)
    obs_t, actions_t = torch.from_numpy(obs), torch.from_numpy(actions)
    with tempfile.TemporaryDirectory() as tmp:
        dataset = _write(Path(tmp) / "data", obs, actions)
        _bare_loop(obs_t, actions_t)  # warm-ups (lazy imports, allocator), not reported
        _clonekit(dataset, Path(tmp) / "warmup", steps=100)
        results = []
        for attempt in range(3):  # interleaved, so drift in machine load hits every side alike
            ours, steady = _clonekit(dataset, Path(tmp) / f"run{attempt}")
            clipped, _ = _clonekit(dataset, Path(tmp) / f"clip{attempt}", grad_clip=1.0)
            torch_sps = _bare_loop(obs_t, actions_t)
            results.append((ours, steady, clipped, torch_sps))
    ours, steady, clipped, torch_sps = (statistics.median(r[i] for r in results) for i in range(4))
    print(
        json.dumps(
            {
                "clonekit_samples_per_s": round(ours),
                "steady_samples_per_s": round(steady),
                "torch_samples_per_s": round(torch_sps),
                "ratio": round(ours / torch_sps, 3),
                "steady_ratio": round(steady / torch_sps, 3),
                "clip_ratio": round(clipped / torch_sps, 3),
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
