"""The ``offline-gap`` experiment end to end on a tiny preset: every key, train/test/gap metrics, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clonekit.data import Dataset
from clonekit.experiments import offline_gap
from tests.conftest import tree_hash


def test_offline_gap_tiny_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from clonekit.cli import main

    settings = [
        "maze_size=5",
        "train_mazes=3",
        "expert_episodes=3",
        "noisy_episodes=3",
        "random_episodes=3",
        "test_mazes=3",
        "eval_episodes=6",
        "steps=3",
        "batch_size=16",
        "hidden_sizes=[8]",
        "dt_steps=2",
        "dt_batch_size=4",
        "dt_context=3",
    ]
    out = tmp_path / "exp"
    args = [
        "run",
        "offline-gap",
        "--quick",
        "--seed",
        "1",
        "--out",
        str(out),
        "--json",
        *(f"--set={s}" for s in settings),
    ]
    assert main(args) == 0
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert results["experiment"] == "offline-gap" and list(results["metrics"]) == list(offline_gap.KEYS)
    for splits in results["metrics"].values():
        assert set(splits) == {"train", "test", "gap"}
        train, test = splits["train"]["success"], splits["test"]["success"]
        for m in (train, test):
            assert m["n"] == 6 and m["n_tasks"] == 3 and 0 <= m["ci95"][0] <= m["mean"] <= m["ci95"][1] <= 1
        gap = splits["gap"]["success_gap"]
        assert gap["mean"] == pytest.approx(train["mean"] - test["mean"])
        assert -1 <= gap["ci95"][0] <= gap["mean"] <= gap["ci95"][1] <= 1
    data = Dataset.open(out / "data" / "all")
    behaviour = np.repeat(np.asarray(data.episode_info("behaviour")), data.episode_lengths)
    assert np.array_equal(np.asarray(data.column("expert")), (behaviour == "expert").astype(np.int64))
    assert (out / "success.png").stat().st_size > 1000 and "| dt |" in (out / "report.md").read_text()

    # A rerun reuses the data and every finished run.
    before = tree_hash(out / "runs")
    assert main(args) == 0
    assert tree_hash(out / "runs") == before
