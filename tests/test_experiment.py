"""The maze-procedure experiment end to end on a tiny setting: outputs, their shape, and resuming."""

from __future__ import annotations

import json
from pathlib import Path

from clonekit.experiments import maze_procedure
from clonekit.experiments.maze_procedure import MazeProcedureConfig

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
