"""Training on a CUDA device: speed against the CPU, exact resume, and CPU loading of GPU-trained runs.

For each case (a policy on a small dataset its family's expert collects at the start):

* ``cpu_samples_per_s`` / ``cuda_samples_per_s`` and ``speedup`` (cuda / cpu): ``STEPS`` training steps each,
  the same settings, measured in the same process after a short warm-up run on each device.
* ``nondeterministic_speedup``: the same with ``deterministic=False`` (cuDNN autotuning, atomics allowed).
* ``repeat_max_abs_diff``: two identical GPU runs of ``2 * HALF`` steps; the largest difference of any weight.
* ``resume_max_abs_diff``: on the GPU, ``2 * HALF`` steps in one run against ``HALF`` steps, then a resume to
  ``2 * HALF``; the largest difference of any weight (0.0: the resumed run is the same run; the checkpoint
  carries the GPU's random state, which a diffusion head's noise is drawn from).
* ``cpu_load_max_abs_diff``: the GPU-trained run loaded with ``load_policy`` (weights land on the CPU) against
  the trained model on the GPU, acting on the same observations (continuous: the largest action difference;
  discrete: the fraction of differing actions). Diffusion heads draw noise, so both are seeded alike and
  differ by the devices' random streams: reported, not compared.

Prints one JSON line per case. Needs a CUDA device (exits with a one-line message otherwise).
Run: ``python benchmarks/device_check.py [--steps 400]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from clonekit.checkpoint import load_policy
from clonekit.data import Dataset
from clonekit.experts.collect import collect
from clonekit.policies import Policy
from clonekit.train import TrainConfig, train

# name -> (policy, env family, expert, episodes, tasks, policy overrides)
CASES: dict[str, tuple[str, str, str, int, int, dict[str, Any]]] = {
    "bc/maze": ("bc", "maze", "bfs", 200, 20, {}),
    "procedure_cloning/maze": ("procedure_cloning", "maze", "bfs", 200, 20, {}),
    "continuous_bc-mse/avoiding": ("continuous_bc", "avoiding", "paths", 200, 24, {"head": "mse"}),
    "continuous_bc-diffusion-chunk4/avoiding": (
        "continuous_bc",
        "avoiding",
        "paths",
        200,
        24,
        {"head": "diffusion", "chunk": 4},
    ),
    "iql/maze": ("iql", "maze", "bfs", 200, 20, {}),
    "iql/avoiding": ("iql", "avoiding", "paths", 200, 24, {}),
    "td3bc/avoiding": ("td3bc", "avoiding", "paths", 200, 24, {}),
    "dt/avoiding": ("dt", "avoiding", "paths", 200, 24, {"context_length": 10}),
    "transformer_bc/avoiding": ("transformer_bc", "avoiding", "paths", 200, 24, {}),
}


def _config(steps: int, device: str, batch_size: int, deterministic: bool = True) -> TrainConfig:
    return TrainConfig(
        deterministic=deterministic,
        steps=steps,
        batch_size=batch_size,
        device=device,
        seed=0,
        checkpoint_every=max(steps // 2, 1),
        log_every=max(steps // 4, 1),
        tensorboard=False,
    )


def _timed(policy: str, data: Dataset, out: Path, config: TrainConfig, overrides: dict[str, Any]) -> float:
    start = time.perf_counter()
    train(policy, data, out, config, overrides, show_progress=False)
    if config.device == "cuda":
        torch.cuda.synchronize()
    return config.steps * config.batch_size / (time.perf_counter() - start)


def _acts(model: Policy, obs: torch.Tensor) -> torch.Tensor:
    device = next(model.parameters()).device
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.cuda.manual_seed(0)
    with torch.no_grad():
        action, _ = model.act({"obs": obs.to(device)}, model.initial_state(len(obs)))
    return action.detach().cpu()


def _max_diff(first: Policy, second: Policy) -> float:
    return max(
        float((a.float() - b.float()).abs().max()) if a.numel() else 0.0
        for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True)
    )


def check(name: str, root: Path, steps: int, batch_size: int, target: str = "cuda") -> dict[str, Any]:
    policy, family, expert, episodes, tasks, overrides = CASES[name]
    data = collect(family, expert, episodes=episodes, seed=0, out=root / "data", num_tasks=tasks, show_progress=False)
    result: dict[str, Any] = {"case": name, "steps": steps, "batch_size": batch_size}
    for label, device in (("warm_cpu", "cpu"), ("warm_target", target)):  # first kernels, allocator, threads
        _timed(policy, data, root / label, _config(20, device, batch_size), overrides)
    for label, device in (("cpu", "cpu"), ("cuda", target)):
        rate = _timed(policy, data, root / label, _config(steps, device, batch_size), overrides)
        result[f"{label}_samples_per_s"] = round(rate, 1)
    result["speedup"] = round(result["cuda_samples_per_s"] / result["cpu_samples_per_s"], 3)
    fast = _timed(policy, data, root / "fast", _config(steps, target, batch_size, deterministic=False), overrides)
    result["nondeterministic_speedup"] = round(fast / result["cpu_samples_per_s"], 3)

    half = max(steps // 4, 2)
    whole = train(policy, data, root / "whole", _config(2 * half, target, batch_size), overrides, show_progress=False)
    again = train(policy, data, root / "again", _config(2 * half, target, batch_size), overrides, show_progress=False)
    result["repeat_max_abs_diff"] = _max_diff(whole, again)
    split = root / "split"
    train(policy, data, split, _config(half, target, batch_size), overrides, show_progress=False)
    resumed = train(
        policy, data, split, _config(2 * half, target, batch_size), overrides, resume=True, show_progress=False
    )
    result["resume_max_abs_diff"] = _max_diff(whole, resumed)

    obs = torch.as_tensor(data.column("obs")[:512].copy())
    on_gpu = _acts(whole, obs)
    on_cpu = _acts(load_policy(root / "whole"), obs)
    if on_gpu.is_floating_point():
        result["cpu_load_max_abs_diff"] = float((on_gpu - on_cpu).abs().max())
    else:
        result["cpu_load_action_mismatch"] = float((on_gpu != on_cpu).float().mean())
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--device", default="cuda", help="the device compared with the CPU (cpu: a dry run)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("device_check: no CUDA device is available (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    print(json.dumps({"torch": torch.__version__, "device": name}), flush=True)
    for case in args.cases:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(check(case, Path(tmp), args.steps, args.batch_size, args.device)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
