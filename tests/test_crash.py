"""Crash safety: a training process killed with SIGKILL at a random moment resumes to the exact weights of a run
that was never interrupted, and a write cut off midway never leaves something that loads."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from clonekit.checkpoint import MODEL_FILE, checkpoint_dirs, load_policy, write_checkpoint
from clonekit.data import Dataset
from clonekit.errors import CheckpointError


def _command(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "clonekit.train", "bc", "--data", str(data), "--out", str(out), "--steps", "400",
        "--batch-size", "32", "--checkpoint-every", "20", "--quiet", *extra,
    ]  # fmt: skip


def _wait_for(path: Path, process: subprocess.Popen[bytes]) -> None:
    while not path.exists() and process.poll() is None:
        time.sleep(0.01)


@pytest.fixture(scope="module")
def whole(maze_data: Dataset, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """An uninterrupted run, and how long it trains from its first checkpoint to its end."""
    run = tmp_path_factory.mktemp("whole") / "run"
    process = subprocess.Popen(_command(maze_data.path, run), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(run / "checkpoints", process)
    started = time.perf_counter()
    assert process.wait(timeout=300) == 0
    return run, time.perf_counter() - started


def test_sigkill_at_a_random_moment_then_resume_gives_the_uninterrupted_weights(
    maze_data: Dataset, whole: tuple[Path, float], tmp_path: Path
) -> None:
    whole_run, training_time = whole
    rng = random.Random(os.environ.get("CLONEKIT_CRASH_SEED", str(time.time_ns())))
    for attempt in range(5):
        run = tmp_path / f"cut{attempt}"
        delay = rng.uniform(0.0, 0.9) * training_time / (attempt + 1)
        process = subprocess.Popen(_command(maze_data.path, run), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait_for(run / "checkpoints", process)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        if process.returncode == -signal.SIGKILL and not (run / MODEL_FILE).exists():
            break
    else:
        pytest.fail("the training process always finished before it could be killed")
    print(f"killed {delay:.2f}s into {training_time:.2f}s of training; checkpoints: {checkpoint_dirs(run)}")

    resumed = subprocess.run(_command(maze_data.path, run, "--resume"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = load_file(str(whole_run / MODEL_FILE))
    cut = load_file(str(run / MODEL_FILE))
    assert expected.keys() == cut.keys()
    for key in expected:
        assert torch.equal(expected[key], cut[key]), key
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)), "steps logged after the last checkpoint are logged once, not twice"


def test_checkpoint_write_cut_off_midway_is_never_loaded(
    maze_data: Dataset, whole: tuple[Path, float], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(whole[0], run)
    newest = checkpoint_dirs(run)[-1]
    tensors = load_file(str(newest / MODEL_FILE))

    class Boom(Exception):
        pass

    class Exploding(dict):  # type: ignore[type-arg]
        def items(self):  # type: ignore[no-untyped-def]
            raise Boom

    with pytest.raises(Boom):
        write_checkpoint(run, 999, tensors, Exploding(), {"step": 999}, keep=5)
    assert checkpoint_dirs(run)[-1] == newest, "a failed write does not become the newest checkpoint"
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")], "temp dir removed"

    # A process killed inside the write leaves a hidden temp dir; it is ignored, and removed on resume.
    stale = run / "checkpoints" / ".step_00000999.abc"
    stale.mkdir()
    (stale / MODEL_FILE).write_bytes(b"half")
    assert checkpoint_dirs(run)[-1] == newest
    (run / MODEL_FILE).write_bytes((run / MODEL_FILE).read_bytes()[:100])  # truncated final weights
    with pytest.raises(CheckpointError, match=MODEL_FILE):
        load_policy(run)
    (run / MODEL_FILE).unlink()
    done = subprocess.run(_command(maze_data.path, run, "--resume"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not stale.exists()
    load_policy(run)
