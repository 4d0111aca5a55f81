"""The run directory of an online RL run (PPO, SAC, in-context PPO, residual PPO): its ``config.json`` and
opening it to start or resume, as :func:`clonekit.train.train` does for offline training."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from clonekit import __version__
from clonekit.checkpoint import CONFIG_FILE, RUN_FORMAT, checkpoint_dirs, remove_stale_temporaries
from clonekit.config import config_to_json
from clonekit.io import atomic_write_json


def rl_run_config(
    policy: Any, algorithm: str, seed: int, dataset: dict[str, Any], **settings: dict[str, Any]
) -> dict[str, Any]:
    """``config.json`` of an RL run whose actor is ``policy`` (so ``load_policy`` and ``clonekit eval`` read it
    like any run): the algorithm, its settings blocks (e.g. ``ppo_config=...``), the seed and the env block."""
    return {
        "format": RUN_FORMAT,
        "policy": policy.name,
        "policy_config": config_to_json(policy.config),
        "algorithm": algorithm,
        **settings,
        "seed": seed,
        "dataset": dataset,
        "clonekit_version": __version__,
        "torch_version": torch.__version__,
    }


def open_rl_run(run_dir: Path, run_config: dict[str, Any], restore: Callable[[Path], int]) -> int:
    """Start or resume the run at ``run_dir``: ``restore`` loads the newest checkpoint (if any) and returns its
    iteration; stale temporaries are removed and ``config.json`` written. Returns the iteration to start from."""
    start = 0
    checkpoints = checkpoint_dirs(run_dir)
    if checkpoints:
        start = restore(checkpoints[-1])
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(run_dir)
    atomic_write_json(run_dir / CONFIG_FILE, run_config)
    return start
