"""Batched evaluation speed vs raw env stepping, measured in the same run (one JSON line per env).

For each env (``maze``: discrete, uint8 maps; ``avoiding``: continuous 2-D), 64 envs step together:

``raw_steps_per_s``: the batched env stepped with the actions the policy took in a recorded rollout (same
start states, same episodes), no policy. ``clonekit_steps_per_s``:
:func:`clonekit.evaluation.rollout` with a small untrained MLP policy (one hidden layer of 64; BC for the maze,
``continuous_bc`` with the MSE head for avoiding). ``ratio`` = clonekit / raw. ``parts_steps_per_s``: a bare
loop doing only what rollout must do, a raw torch forward of the same network under ``inference_mode`` plus
the env step, so ``loop_ratio`` = clonekit / parts is the cost of clonekit's own loop (state, bookkeeping,
``policy.act``), and ``forward_us`` / ``env_step_us`` show where the time goes per batched step.
``onnxruntime_steps_per_s`` / ``onnxruntime_ratio``: the same rollouts with the policy on the onnxruntime
backend (``clonekit eval --backend onnxruntime``; needs the ``onnx`` extra, else these keys are absent).
Run: ``python benchmarks/eval_throughput.py``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import torch

from clonekit.envs import get_env_family
from clonekit.errors import ExportError
from clonekit.evaluation import rollout
from clonekit.export import OnnxRuntimePolicy
from clonekit.policies import build_policy
from clonekit.seeding import derive_seed

NUM_ENVS = 64
REPEATS = 5
POLICIES: dict[str, tuple[str, dict[str, Any]]] = {
    "maze": ("bc", {"obs_shape": [3, 16, 16], "num_actions": 4, "encoder": "mlp", "hidden_sizes": [64]}),
    "avoiding": ("continuous_bc", {"head": "mse", "hidden_sizes": [64]}),
}


def _bare_forward(policy: Any) -> Any:
    """The network alone: normalizer, encoder and head as plain module calls (argmax for discrete)."""
    if policy.name == "bc":
        return lambda obs: policy.head(policy.encoder(policy.normalizer(obs))).argmax(-1)
    return lambda obs: policy.act({"obs": obs})[0]  # continuous_bc: its act is the bare network already


def _measure(env_name: str) -> dict[str, Any]:
    torch.manual_seed(0)
    family = get_env_family(env_name)
    tasks = family.sample_tasks(0, "test", NUM_ENVS, set())
    obs_space, act_space = family.spaces()
    name, overrides = POLICIES[env_name]
    config: dict[str, Any] = {"obs_shape": list(obs_space.shape), **overrides}
    if hasattr(act_space, "n"):
        config["num_actions"] = int(act_space.n)
    else:
        config["action_shape"] = list(act_space.shape)
    policy = build_policy(name, config).eval()
    forward = _bare_forward(policy)
    # Record the actions the policy takes, then replay them: the raw loop steps the same episodes.
    recorded: list[list[np.ndarray]] = []
    steps = 0
    for i in range(REPEATS):
        recorded.append([])
        results = rollout(policy, family, tasks, NUM_ENVS, seed=i, on_step=lambda *a, r=recorded[-1]: r.append(a[2]))
        steps += int(results.lengths.sum())

    def replay(with_forward: bool) -> float:
        env = family.make_vec(tasks)
        count, start = 0, time.perf_counter()
        for i in range(REPEATS):
            obs = env.reset(seed=derive_seed(i, "eval:0"))
            active = np.ones(NUM_ENVS, dtype=bool)
            for actions in recorded[i]:
                if with_forward:
                    with torch.inference_mode():
                        forward(torch.from_numpy(obs))
                obs, _, terminated, truncated = env.step(actions)
                count += int(active.sum())
                active &= ~(terminated | truncated)
        assert count == steps, "the replay steps the same episodes"
        return count / (time.perf_counter() - start)

    raw = replay(False)
    parts = replay(True)

    def timed(agent: Any) -> float:
        start = time.perf_counter()
        for i in range(REPEATS):
            rollout(agent, family, tasks, NUM_ENVS, seed=i)
        return steps / (time.perf_counter() - start)

    ours = timed(policy)
    backends: dict[str, Any] = {}
    try:
        dtype = torch.from_numpy(np.zeros(0, dtype=obs_space.dtype)).dtype
        onnx = timed(OnnxRuntimePolicy(policy, dtype))
        backends = {"onnxruntime_steps_per_s": round(onnx), "onnxruntime_ratio": round(onnx / raw, 3)}
    except ExportError:  # the onnx extra is not installed
        pass
    obs_batch = torch.from_numpy(family.make_vec(tasks).reset(seed=0))
    with torch.inference_mode():
        forward(obs_batch)
        t = time.perf_counter()
        for _ in range(500):
            forward(obs_batch)
        forward_us = (time.perf_counter() - t) / 500 * 1e6
    return {
        "env": env_name,
        "num_envs": NUM_ENVS,
        "clonekit_steps_per_s": round(ours),
        "raw_steps_per_s": round(raw),
        "parts_steps_per_s": round(parts),
        "ratio": round(ours / raw, 3),
        "loop_ratio": round(ours / parts, 3),
        **backends,
        "forward_us": round(forward_us, 1),
        "env_step_us": round(NUM_ENVS / raw * 1e6, 1),
    }


def main() -> None:
    for env_name in POLICIES:
        print(json.dumps(_measure(env_name)))


if __name__ == "__main__":
    main()
