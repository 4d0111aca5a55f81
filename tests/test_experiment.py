"""The maze-procedure experiment end to end on a tiny setting: outputs, their shape, and resuming."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clonekit.experiments import maze_procedure
from clonekit.experiments.common import torch_threads
from clonekit.experiments.maze_procedure import MazeProcedureConfig
from tests.conftest import assert_one_error_line

TINY = MazeProcedureConfig(
    train_sizes=(2, 3), episodes_per_maze=3, test_mazes=4, eval_episodes=8, bc_steps=10, pc_steps=10, batch_size=16
)


def test_experiment_writes_results_report_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    results = maze_procedure.run(out, seed=5, quick=True, show_progress=False, log=lambda _: None, config=TINY)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    assert on_disk["experiment"] == "maze-procedure" and on_disk["seed"] == 5 and on_disk["quick"] is True
    assert set(on_disk["metrics"]) == {"bc_n2", "pc_n2", "bc_n3", "pc_n3"}
    for splits in on_disk["metrics"].values():
        assert set(splits) == {"train", "test"}
        success = splits["test"]["success"]
        assert success["n"] == 8 and 0 <= success["ci95"][0] <= success["mean"] <= success["ci95"][1] <= 1
    assert (out / "success.png").stat().st_size > 1000 and (out / "procedure.png").stat().st_size > 1000
    report = (out / "report.md").read_text()
    assert "pc_n3" in report and "success.png" in report

    # Running again reuses the data and the finished runs and gives the same numbers.
    weights = (out / "runs" / "pc_n3" / "model.safetensors").stat().st_mtime_ns
    again = maze_procedure.run(out, seed=5, quick=True, show_progress=False, log=lambda _: None, config=TINY)
    assert again["metrics"] == results["metrics"]
    assert (out / "runs" / "pc_n3" / "model.safetensors").stat().st_mtime_ns == weights


def test_same_seed_in_a_fresh_process_gives_identical_results(tmp_path: Path) -> None:
    """A separate process (another hash seed) and this test process (after whatever ran in it before), fresh
    output dirs, same seed: identical metrics and weights."""
    config = "dataclasses.replace(TINY, train_sizes=(2,))"  # one size: a BC and a PC run
    script = (
        "import sys, dataclasses; from pathlib import Path; from tests.test_experiment import TINY; "
        "from clonekit.experiments import maze_procedure; "
        "maze_procedure.run(Path(sys.argv[1]), seed=7, quick=True, show_progress=False, log=lambda _: None, "
        f"config={config})"
    )
    root = Path(__file__).resolve().parent.parent
    hash_seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "fresh")], env=env, cwd=root)
    with torch_threads(1):  # side by side with the fresh process: two cores, half the wall time
        maze_procedure.run(
            tmp_path / "here", seed=7, quick=True, show_progress=False, log=lambda _: None,
            config=dataclasses.replace(TINY, train_sizes=(2,)),
        )  # fmt: skip
    assert process.wait(timeout=300) == 0
    results = [json.loads((tmp_path / run / "results.json").read_text()) for run in ("fresh", "here")]
    assert results[0]["metrics"] == results[1]["metrics"]
    assert results[0]["config"] == results[1]["config"]
    for name in results[0]["metrics"]:  # and bitwise-identical weights, a stronger check than the success rates
        weights = [(tmp_path / run / "runs" / name / "model.safetensors").read_bytes() for run in ("fresh", "here")]
        assert weights[0] == weights[1], name


def test_cli_run_with_settings_over_the_preset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from clonekit.cli import main

    settings = ["train_sizes=[2]", "episodes_per_maze=3", "test_mazes=2", "eval_episodes=4", "bc_steps=4"]
    settings += ["pc_steps=4", "batch_size=8"]
    args = ["run", "maze-procedure", "--quick", "--seed", "3", "--out", str(tmp_path / "exp"), "--json"]
    code = main([*args, *(f"--set={s}" for s in settings)])
    assert code == 0
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert results["config"]["train_sizes"] == [2] and results["config"]["bc_steps"] == 4
    assert set(results["metrics"]) == {"bc_n2", "pc_n2"} and results["metrics"]["bc_n2"]["test"]["success"]["n"] == 4
    for bad, needle in (("bc_stepz=4", "unknown key"), ("bc_steps=many", "bc_steps"), ("bc_steps=0", "bc_steps")):
        code = main([*args[:-1], "--set", bad])
        assert_one_error_line(code, capsys.readouterr().err, needle)
