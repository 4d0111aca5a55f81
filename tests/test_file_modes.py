"""Files and directories clonekit writes atomically get the mode a plain write would: readable as the umask
allows (0644 / 0755 under umask 022), not the 0600 / 0700 of a temporary file."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

import clonekit.export
from clonekit.data import Dataset
from clonekit.export import export_onnx
from clonekit.io import atomic_write_json, current_umask
from clonekit.train import TrainConfig, train


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_run_and_export_files_follow_the_umask(
    umask: int, maze_data: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert current_umask() == umask
    run = tmp_path / "run"
    config = TrainConfig(steps=2, batch_size=8, checkpoint_every=2, tensorboard=False)
    train("bc", maze_data, run, config, {"conv_channels": [4], "hidden_sizes": [8]}, show_progress=False)
    # The ONNX conversion takes seconds and has no say in the file's mode (test_export.py covers it): only the
    # write is exercised here.
    monkeypatch.setattr(clonekit.export, "onnx_model_bytes", lambda policy, obs_dtype: b"model")
    onnx = export_onnx(run, tmp_path / "policy.onnx")
    atomic_write_json(tmp_path / "new" / "results.json", {"ok": True})
    files = [p for p in [*run.rglob("*"), onnx, tmp_path / "new" / "results.json"] if p.is_file()]
    dirs = [p for p in run.rglob("*") if p.is_dir()]
    names = {p.name for p in files} | {p.name for p in dirs}
    assert {"config.json", "model.safetensors", "optimizer.safetensors", "trainer.json", "policy.onnx"} <= names
    assert any(p.name.startswith("step_") for p in dirs)
    for path in files:
        assert _mode(path) == 0o666 & ~umask, (path, oct(_mode(path)))
    for path in dirs:
        assert _mode(path) == 0o777 & ~umask, (path, oct(_mode(path)))
