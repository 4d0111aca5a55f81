"""Crash safety: a training process killed with SIGKILL mid-training resumes to the exact weights of a run that was
never interrupted, and a write cut off midway never leaves something that loads.

The kill lands at a fixed point, found by watching the run directory (not after a timer, which a loaded machine
can outrun): right after the metrics line of step ``KILL_AFTER_STEP`` appears, i.e. after the checkpoint of step
40 and before that of step 60, with steps after the last checkpoint already logged and 150 steps still to go.
"""

from __future__ import annotations

import json
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

STEPS = 200
CHECKPOINT_EVERY = 20
KILL_AFTER_STEP = 50  # a logged step (the default log_every is 50) between two checkpoints


def _command(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "clonekit.train", "bc", "--data", str(data), "--out", str(out), "--steps", str(STEPS),
        "--batch-size", "32", "--checkpoint-every", str(CHECKPOINT_EVERY), "--quiet", *extra,
    ]  # fmt: skip


def _logged_steps(run: Path) -> list[int]:
    """Steps of the whole lines of ``run/metrics.jsonl`` (a line being written is left out)."""
    path = run / "metrics.jsonl"
    text = path.read_text() if path.exists() else ""
    return [json.loads(line)["step"] for line in text.splitlines(keepends=True) if line.endswith("\n")]


@pytest.fixture(scope="module")
def whole(maze_data: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run."""
    run = tmp_path_factory.mktemp("whole") / "run"
    done = subprocess.run(_command(maze_data.path, run), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return run


def test_sigkill_mid_training_then_resume_gives_the_uninterrupted_weights(
    maze_data: Dataset, whole: Path, tmp_path: Path
) -> None:
    run = tmp_path / "cut"
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as err:
        process = subprocess.Popen(_command(maze_data.path, run), stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 300
    while KILL_AFTER_STEP not in _logged_steps(run):
        assert process.poll() is None, (
            f"training ended (exit {process.returncode}) before step {KILL_AFTER_STEP}: {stderr.read_text()[-3000:]}"
        )
        assert time.monotonic() < deadline, f"step {KILL_AFTER_STEP} was not logged within 300 s"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert not (run / MODEL_FILE).exists(), "the kill came after training had ended"
    newest = checkpoint_dirs(run)[-1].name
    # A poller starved for a moment kills a little later; the run must still be cut short before its end.
    assert newest < f"step_{STEPS:08d}", newest
    print(f"killed after step {max(_logged_steps(run))} was logged; newest checkpoint {newest}")

    resumed = subprocess.run(_command(maze_data.path, run, "--resume"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = load_file(str(whole / MODEL_FILE))
    cut = load_file(str(run / MODEL_FILE))
    assert expected.keys() == cut.keys()
    for key in expected:
        assert torch.equal(expected[key], cut[key]), key
    steps = _logged_steps(run)
    assert steps == _logged_steps(whole), "steps logged after the last checkpoint are logged once, not twice"


def test_checkpoint_write_cut_off_midway_is_never_loaded(maze_data: Dataset, whole: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(whole, run)
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
