"""The CLI end to end on small data, and its handling of bad input (one line, exit 2, inputs untouched)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from clonekit.cli import main
from clonekit.data import Dataset, DatasetWriter, array_stream
from tests.conftest import assert_one_error_line, tree_hash


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_collect_inspect_train_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, run = tmp_path / "data", tmp_path / "run"
    code, out, err = _run(
        capsys,
        "collect",
        "maze",
        "--expert",
        "bfs",
        "--episodes",
        12,
        "--tasks",
        3,
        "--seed",
        1,
        "--out",
        data,
        "--quiet",
    )
    assert code == 0, err
    code, out, _ = _run(capsys, "inspect", data, "--json", "--verify")
    summary = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and summary["num_episodes"] == 12 and "procedure" in summary["streams"]
    args = [
        "train",
        "procedure_cloning",
        "--data",
        data,
        "--out",
        run,
        "--steps",
        20,
        "--batch-size",
        16,
        "--quiet",
    ]
    code, _, err = _run(capsys, *args, "--set", "hidden_channels=8")
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["policy_config"]["hidden_channels"] == 8
    code, out, err = _run(capsys, "eval", run, "--episodes", 10, "--split", "test", "--tasks", 5, "--json")
    assert code == 0, err
    metrics = json.loads(out.strip().splitlines()[-1])["metrics"]
    assert metrics["success"]["n"] == 10 and len(metrics["success"]["ci95"]) == 2
    code, out, _ = _run(capsys, "list")
    assert code == 0 and "procedure_cloning" in out and "maze-procedure" in out


@pytest.fixture()
def small_data(tmp_path: Path, maze_data: Dataset) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(maze_data.path, copy)
    return copy


def test_missing_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "inspect", tmp_path / "nope")
    assert_one_error_line(code, err, "nope")
    code, _, err = _run(capsys, "eval", tmp_path / "norun")
    assert_one_error_line(code, err, "norun")
    code, _, err = _run(capsys, "train", "bc", "--data", tmp_path / "nodata", "--out", tmp_path / "r")
    assert_one_error_line(code, err, "nodata")
    assert not (tmp_path / "r").exists()


def test_unknown_names(small_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "train", "bcc", "--data", small_data, "--out", tmp_path / "r")
    assert_one_error_line(code, err, "unknown policy 'bcc'", "procedure_cloning")
    code, _, err = _run(capsys, "collect", "mze", "--expert", "bfs", "--episodes", 2, "--out", tmp_path / "d")
    assert_one_error_line(code, err, "unknown env 'mze'")
    code, _, err = _run(capsys, "collect", "maze", "--expert", "dfs", "--episodes", 2, "--out", tmp_path / "d")
    assert_one_error_line(code, err, "'dfs'")
    code, _, err = _run(capsys, "run", "maze-procedur", "--out", tmp_path / "o")
    assert_one_error_line(code, err, "unknown experiment", "maze-procedure")
    code, _, err = _run(capsys, "train", "bc", "--data", small_data, "--out", tmp_path / "r", "--set", "encodr=1")
    assert_one_error_line(code, err, "encodr")
    code, _, err = _run(capsys, "train", "bc", "--data", small_data, "--out", tmp_path / "r", "--steps", 0)
    assert_one_error_line(code, err, "steps")


def test_corrupt_dataset_is_reported_and_left_alone(
    small_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meta = small_data / "meta.json"
    meta.write_text(meta.read_text()[:50])
    before = tree_hash(small_data)
    for args in (("inspect", small_data), ("train", "bc", "--data", small_data, "--out", tmp_path / "r")):
        code, _, err = _run(capsys, *args)
        assert_one_error_line(code, err, "meta.json")
    assert tree_hash(small_data) == before


def test_incompatible_schema_version(small_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    meta_path = small_data / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["schema_version"] = 99
    meta_path.write_text(json.dumps(meta))
    code, _, err = _run(capsys, "inspect", small_data)
    assert_one_error_line(code, err, "schema_version")


def test_missing_stream_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "plain"
    streams = [
        array_stream("obs", "uint8", (3, 16, 16)),
        array_stream("action", "int64"),
        array_stream("reward", "float32"),
        array_stream("terminated", "bool"),
        array_stream("truncated", "bool"),
    ]
    with DatasetWriter(data, streams, spaces={"action": {"type": "Discrete", "n": 4, "start": 0}}) as writer:
        writer.add_episode(
            {
                "obs": np.zeros((3, 3, 16, 16), np.uint8),
                "action": np.zeros(3, np.int64),
                "reward": np.zeros(3, np.float32),
                "terminated": np.array([0, 0, 1], bool),
                "truncated": np.zeros(3, bool),
            }
        )
    before = tree_hash(data)
    code, _, err = _run(capsys, "train", "procedure_cloning", "--data", data, "--out", tmp_path / "r")
    assert_one_error_line(code, err, "'procedure'")
    assert tree_hash(data) == before


def test_existing_run_needs_resume(small_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    args = ["train", "bc", "--data", small_data, "--out", run, "--steps", 3, "--batch-size", 8, "--quiet"]
    assert _run(capsys, *args)[0] == 0
    before = tree_hash(run)
    code, _, err = _run(capsys, *args)
    assert_one_error_line(code, err, "--resume")
    assert tree_hash(run) == before
    code, _, err = _run(capsys, "train", "procedure_cloning", "--data", small_data, "--out", run, "--resume")
    assert_one_error_line(code, err, "'bc'")


def test_resume_with_changed_settings_is_refused(
    small_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rerun into a finished run with other settings must not silently reuse (or extend) it."""
    run = tmp_path / "run"
    args = ["train", "bc", "--data", small_data, "--out", run, "--batch-size", 8, "--quiet", "--resume"]
    assert _run(capsys, *args, "--steps", 3, "--set", "hidden_sizes=[16]")[0] == 0
    before = tree_hash(run)
    code, _, err = _run(capsys, *args, "--steps", 3, "--lr", "0.01", "--set", "hidden_sizes=[16]")
    assert_one_error_line(code, err, "lr=0.001")
    code, _, err = _run(capsys, *args, "--steps", 3, "--set", "hidden_sizes=[32]")
    assert_one_error_line(code, err, "hidden_sizes=[16]")
    assert tree_hash(run) == before
    # The run's own settings continue it (more steps), and policy settings left out continue as recorded.
    assert _run(capsys, *args, "--steps", 5)[0] == 0
    assert json.loads((run / "config.json").read_text())["policy_config"]["hidden_sizes"] == [16]
