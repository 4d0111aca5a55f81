"""Inference cost of each continuous action head (prints a table, then one JSON line).

For the ``continuous_bc`` policies of ``clonekit run avoiding-modes`` (same widths, untrained weights: cost
does not depend on the values), on one CPU thread:

* ``actions_per_s``: actions per second of ``act`` on a batch of ``BATCH`` observations (one env step for
  ``BATCH`` envs per call);
* ``latency_ms_b1``: median milliseconds of one ``act`` call at batch 1, and ``mean_ms_b1`` the mean (for a
  chunked policy the median is a queue pop and the mean amortizes the steps that predict a new chunk);
* ``denoiser_calls``: network evaluations per predicted action chunk (the denoising steps; 1 otherwise);
* ``flops_per_action`` (diffusion and mode heads): FLOPs per executed action counted from the layer shapes
  (:func:`clonekit.nn.flops.inference_macs_per_action`, 2 per multiply-add), and ``us_per_action`` the
  microseconds per action at batch 256 measured in the same run, both with the ratio to ``diffusion``.

``mode`` is the MoDE head of ``clonekit run avoiding-mode`` (same encoder and denoising steps as
``diffusion``; mixture-of-experts denoiser with its routing cached per step).
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import torch

from clonekit.experiments import avoiding_mode
from clonekit.experiments.avoiding_modes import FULL
from clonekit.nn.diffusion import DiffusionHead
from clonekit.nn.flops import inference_macs_per_action
from clonekit.policies import build_policy

BATCH = 256
CALLS = 200


def _variants() -> dict[str, dict[str, Any]]:
    variants = {name: overrides for name, (_, overrides) in FULL.policies().items()}
    variants["gaussian"] = {**variants["mlp"], "head": "gaussian"}
    variants["binned"] = {**variants["mlp"], "head": "binned"}
    for steps in (1, 3, 10):
        variants[f"diffusion_{steps}steps"] = {**variants["diffusion"], "diffusion_steps": steps}
    variants["mode"] = avoiding_mode.FULL.policies()["mode"]
    return variants


def _time_calls(policy: torch.nn.Module, obs: torch.Tensor, calls: int) -> np.ndarray:
    state = policy.initial_state(len(obs))
    seconds = []
    with torch.inference_mode():
        for _ in range(calls):
            start = time.perf_counter()
            _, state = policy.act({"obs": obs}, state)
            seconds.append(time.perf_counter() - start)
    return np.array(seconds)


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = []
    for name, overrides in _variants().items():
        config = {"obs_shape": [2], "action_shape": [2], **overrides}
        policy = build_policy("continuous_bc", config).eval()
        _time_calls(policy, torch.rand(BATCH, 2), 10)  # warm up
        batched = _time_calls(policy, torch.rand(BATCH, 2), CALLS)
        single = _time_calls(policy, torch.rand(1, 2), CALLS)
        denoising = isinstance(policy.head, DiffusionHead)
        rows.append(
            {
                "policy": name,
                "head": overrides["head"],
                "chunk": overrides.get("chunk", 1),
                "denoiser_calls": overrides.get("diffusion_steps", 5) if denoising else 1,
                "actions_per_s": round(BATCH * CALLS / batched.sum()),
                "latency_ms_b1": round(float(np.median(single)) * 1000, 3),
                "mean_ms_b1": round(float(single.mean()) * 1000, 3),
                "us_per_action": round(float(batched.sum()) / (BATCH * CALLS) * 1e6, 3),
                "flops_per_action": round(2 * inference_macs_per_action(policy)) if denoising else None,
            }
        )
    dense = next(r for r in rows if r["policy"] == "diffusion")
    for r in rows:
        if r["flops_per_action"] is not None:
            r["flops_ratio"] = round(r["flops_per_action"] / dense["flops_per_action"], 3)
            r["time_ratio"] = round(r["us_per_action"] / dense["us_per_action"], 3)
    print(f"{'policy':22s} {'denoiser calls':>14s} {'actions/s (B=256)':>18s} {'median ms (B=1)':>16s} {'mean ms':>9s}")
    for r in rows:
        print(
            f"{r['policy']:22s} {r['denoiser_calls']:>14d} {r['actions_per_s']:>18,d} "
            f"{r['latency_ms_b1']:>16.3f} {r['mean_ms_b1']:>9.3f}"
        )
    header = f"{'FLOPs/action':>13s} {'vs diffusion':>13s} {'us/action (B=256)':>18s} {'vs diffusion':>13s}"
    print(f"\n{'policy':22s} {header}")
    for r in rows:
        if r["flops_per_action"] is not None:
            print(
                f"{r['policy']:22s} {r['flops_per_action']:>13,d} {r['flops_ratio']:>13.3f} "
                f"{r['us_per_action']:>18.3f} {r['time_ratio']:>13.3f}"
            )
    print(json.dumps({"batch": BATCH, "threads": 1, "heads": rows}))


if __name__ == "__main__":
    main()
