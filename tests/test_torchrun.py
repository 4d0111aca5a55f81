"""Multi-process training through torchrun (DDP, gloo on CPU): it learns, and resumes exactly."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from clonekit.checkpoint import MODEL_FILE, load_policy
from clonekit.data import Dataset


def _torchrun(data: Path, out: Path, steps: int, *extra: str) -> None:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "clonekit.train", "bc", "--data", str(data), "--out", str(out), "--steps", str(steps),
        "--batch-size", "64", "--checkpoint-every", "60", "--quiet", *extra,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # Workers end without interpreter shutdown (clonekit.train.end_worker_process): nothing printed is lost.
    assert f"trained bc for {steps} steps" in done.stdout, done.stdout


def test_two_processes_learn_and_resume_exactly(maze_data: Dataset, tmp_path: Path) -> None:
    _torchrun(maze_data.path, tmp_path / "whole", 120)
    trainer = json.loads((tmp_path / "whole" / "checkpoints" / "step_00000120" / "trainer.json").read_text())
    assert len(trainer["rng"]) == 2, "each process's random state is checkpointed"
    policy = load_policy(tmp_path / "whole")
    everything = maze_data.gather(np.arange(maze_data.num_steps), ["obs", "action"])
    with torch.inference_mode():
        actions, _ = policy.act({"obs": torch.from_numpy(everything["obs"])})
    assert (actions.numpy() == everything["action"]).mean() >= 0.9

    # The run as it stood at its step-60 checkpoint (what a kill after step 60 leaves), resumed to 120.
    shutil.copytree(tmp_path / "whole", tmp_path / "cut")
    shutil.rmtree(tmp_path / "cut" / "checkpoints" / "step_00000120")
    (tmp_path / "cut" / MODEL_FILE).unlink()
    _torchrun(maze_data.path, tmp_path / "cut", 120, "--resume")
    whole = load_file(str(tmp_path / "whole" / MODEL_FILE))
    cut = load_file(str(tmp_path / "cut" / MODEL_FILE))
    for key in whole:
        assert torch.equal(whole[key], cut[key]), key
