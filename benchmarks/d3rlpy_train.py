"""Train d3rlpy's IQL or TD3+BC on exported arrays and save its greedy policy as TorchScript.

Runs in the separate d3rlpy venv (``/work/main/.d3rlpy-venv``; d3rlpy 2.8.1 pins gymnasium 1.0.0, which clashes
with clonekit's), not in clonekit's: it imports neither clonekit nor gymnasium directly. Called by
:mod:`benchmarks.offline_rl_peer` (see its docstring for how the venv is made)::

    .d3rlpy-venv/bin/python benchmarks/d3rlpy_train.py --data arrays.npz --algo iql --seed 0 --steps 3000 \\
        --batch-size 256 --hidden 256,256 --params '{"expectile": 0.7, ...}' --out DIR

``arrays.npz`` holds ``obs`` ``(N, F)``, ``action`` ``(N, A)``, ``reward`` ``(N,)``, ``terminated`` ``(N,)``
and ``truncated`` ``(N,)`` (``timeouts`` for d3rlpy), episodes back to back. Observations are standardized
(``StandardObservationScaler``) and actions min-max scaled to [-1, 1] (``MinMaxActionScaler``), as clonekit's
policies do; both scalers are fitted on the data and are inside the exported ``policy.pt``, so it maps raw
observations to raw actions. d3rlpy logs nowhere (``NoopAdapterFactory``) and evaluates nothing.

Writes ``OUT/policy.pt`` and ``OUT/result.json`` (``seconds`` of ``fit``, ``samples_per_s`` = steps * batch
size / seconds, the versions).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import d3rlpy
import numpy as np
import torch
from d3rlpy.logging import NoopAdapterFactory
from d3rlpy.models.encoders import VectorEncoderFactory
from d3rlpy.preprocessing import MinMaxActionScaler, StandardObservationScaler


def main() -> None:
    """Parse the arguments, train, export, and write ``result.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--algo", choices=("iql", "td3bc"), required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--hidden", required=True, help="comma-separated MLP widths")
    parser.add_argument("--params", required=True, help="JSON of the algorithm's hyperparameters")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    torch.set_num_threads(1)
    d3rlpy.seed(args.seed)
    arrays = np.load(args.data)
    dataset = d3rlpy.dataset.MDPDataset(
        observations=arrays["obs"].astype(np.float32),
        actions=arrays["action"].astype(np.float32),
        rewards=arrays["reward"].astype(np.float32),
        terminals=arrays["terminated"].astype(np.float32),
        timeouts=arrays["truncated"].astype(np.float32),
        action_space=d3rlpy.ActionSpace.CONTINUOUS,
    )
    encoder = VectorEncoderFactory(hidden_units=[int(w) for w in args.hidden.split(",")])
    params = json.loads(args.params)
    common = {
        "batch_size": args.batch_size,
        "observation_scaler": StandardObservationScaler(),
        "action_scaler": MinMaxActionScaler(),
        "actor_encoder_factory": encoder,
        "critic_encoder_factory": encoder,
    }
    if args.algo == "iql":
        config: d3rlpy.base.LearnableConfig = d3rlpy.algos.IQLConfig(**common, value_encoder_factory=encoder, **params)
    else:
        config = d3rlpy.algos.TD3PlusBCConfig(**common, **params)
    algo = config.create(device="cpu:0")

    start = time.perf_counter()
    algo.fit(
        dataset,
        n_steps=args.steps,
        n_steps_per_epoch=args.steps,
        logger_adapter=NoopAdapterFactory(),
        show_progress=False,
        save_interval=args.steps + 1,
    )
    seconds = time.perf_counter() - start

    args.out.mkdir(parents=True, exist_ok=True)
    algo.save_policy(str(args.out / "policy.pt"))
    result = {
        "algo": args.algo,
        "seed": args.seed,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "seconds": seconds,
        "samples_per_s": args.steps * args.batch_size / seconds,
        "config": json.loads(config.serialize()),
        "d3rlpy": d3rlpy.__version__,
        "torch": torch.__version__,
    }
    (args.out / "result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
