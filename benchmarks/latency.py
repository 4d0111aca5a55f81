"""Per-action latency at batch 1 of an MLP BC policy, three ways, measured in the same run (one JSON line).

Policy: BC with the MLP encoder on 64 float32 features, hidden 256x256, 4 discrete actions, per-feature
observation normalization (fitted on random data), untrained.

* ``act_us``: ``policy.act({"obs": x})`` under ``torch.inference_mode``.
* ``forward_us``: the same layers called by hand under ``torch.inference_mode``:
  ``Sequential(linear, relu, linear, relu, linear)((x - mean) / std).argmax(-1)`` (the baseline).
* ``onnx_us``: the model written by :func:`clonekit.export.export_policy_onnx`, run by onnxruntime (CPU,
  ``intra_op_num_threads=1``, ``inter_op_num_threads=1``, sequential execution), outputs ``action`` and
  ``logits``.

torch runs with ``torch.set_num_threads(1)`` too, so all three compute in the calling thread. Each number is
the median over rounds of the mean time of a block of calls; the three ways are interleaved round by round
so that machine noise hits them alike. Times are the calling thread's CPU time by default
(``time.thread_time_ns``): on a shared machine, wall time mostly measures when the scheduler ran us;
``--clock wall`` uses ``time.perf_counter_ns`` (the right choice on an idle machine). The JSON line also
names the clock. ``act_over_forward`` = act / forward (target <= 1.3), ``onnx_over_forward`` = onnx /
forward.

    python benchmarks/latency.py [--clock cpu|wall]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from clonekit.export import export_policy_onnx
from clonekit.nn import MLPEncoder
from clonekit.policies.bc import BCConfig, BCPolicy

OBS_DIM = 64
NUM_ACTIONS = 4
HIDDEN = (256, 256)
ROUNDS = 300
CALLS_PER_BLOCK = 50
WARMUP_CALLS = 500


CLOCKS = {"cpu": time.thread_time_ns, "wall": time.perf_counter_ns}


def _block_us(fn: Callable[[], object], calls: int, clock: Callable[[], int]) -> float:
    start = clock()
    for _ in range(calls):
        fn()
    return (clock() - start) / calls / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu", help="thread CPU time or wall time")
    clock = CLOCKS[parser.parse_args().clock]
    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = BCConfig(
        obs_shape=(OBS_DIM,), num_actions=NUM_ACTIONS, encoder="mlp", hidden_sizes=HIDDEN, normalize_obs="per_feature"
    )
    policy = BCPolicy(config)
    rng = np.random.default_rng(0)
    policy.normalizer.fit(rng.normal(0.5, 2.0, size=(1000, OBS_DIM)).astype(np.float32))
    policy.eval()
    obs = torch.from_numpy(rng.normal(0.5, 2.0, size=(1, OBS_DIM)).astype(np.float32))
    obs_np = obs.numpy()
    batch = {"obs": obs}

    # The baseline: the policy's own layers, called directly.
    assert isinstance(policy.encoder, MLPEncoder)
    net = nn.Sequential(*policy.encoder.net, policy.head.linear).eval()
    mean, std = policy.normalizer.mean, policy.normalizer.std

    def act() -> torch.Tensor:
        with torch.inference_mode():
            return policy.act(batch)[0]

    def forward() -> torch.Tensor:
        with torch.inference_mode():
            return net((obs - mean) / std).argmax(-1)

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        path = export_policy_onnx(policy, Path(tmp) / "bc_mlp.onnx", torch.float32)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def onnx() -> object:
        return session.run(None, {"obs": obs_np})

    expected = int(forward())
    assert int(act()) == expected and int(onnx()[0][0]) == expected  # type: ignore[index]

    ways = {"act": act, "forward": forward, "onnx": onnx}
    for fn in ways.values():
        _block_us(fn, WARMUP_CALLS, clock)
    samples: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(ROUNDS):
        for name, fn in ways.items():
            samples[name].append(_block_us(fn, CALLS_PER_BLOCK, clock))
    us = {name: statistics.median(values) for name, values in samples.items()}
    print(
        json.dumps(
            {
                "act_us": round(us["act"], 2),
                "forward_us": round(us["forward"], 2),
                "onnx_us": round(us["onnx"], 2),
                "act_over_forward": round(us["act"] / us["forward"], 3),
                "onnx_over_forward": round(us["onnx"] / us["forward"], 3),
                "clock": "thread_cpu" if clock is time.thread_time_ns else "wall",
            }
        )
    )


if __name__ == "__main__":
    main()
