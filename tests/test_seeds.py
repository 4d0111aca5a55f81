"""Training seeds as the unit: ``clonekit run NAME --seeds`` aggregates per-seed runs (stratified bootstrap)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clonekit.cli import main
from clonekit.errors import ConfigError
from clonekit.evaluation.stats import wilson_interval
from clonekit.experiments.seeds import METHOD, aggregate_results, parse_seeds
from tests.conftest import assert_one_error_line


def test_parse_seeds() -> None:
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0-2,9") == [0, 1, 2, 9]
    assert parse_seeds("3, 7") == [3, 7]
    for bad in ("4-2", "x", "1", "1,1", "0-"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)


def _run(seed: int, test: float, per_task: dict[str, float]) -> dict:
    splits = {"test": {"success": {"mean": test, "ci95": [0, 1], "n": 40}}}
    splits |= {f"test:{t}": {"success": {"mean": v, "ci95": [0, 1], "n": 20}} for t, v in per_task.items()}
    return {"experiment": "x", "seed": seed, "quick": False, "config": {"a": 1}, "metrics": {"p": splits}}


def test_aggregate_stratifies_over_tasks_and_keeps_per_seed_values() -> None:
    runs = [_run(s, t, {"a": a, "b": b}) for s, t, a, b in [(0, 0.5, 0.9, 0.1), (1, 0.6, 1.0, 0.2), (2, 0.4, 0.8, 0.0)]]
    results = aggregate_results(runs, [0, 1, 2])
    m = results["metrics"]["p"]["test"]["success"]
    assert m["method"] == METHOD and m["n_seeds"] == 3 and m["n_tasks"] == 2 and m["n"] == 120
    assert m["mean"] == pytest.approx(np.mean([0.9, 0.1, 1.0, 0.2, 0.8, 0.0]))
    assert m["per_seed"] == pytest.approx([0.5, 0.6, 0.4])
    assert m["ci95"][0] <= m["mean"] <= m["ci95"][1] and m["ci95"][1] - m["ci95"][0] > 0
    assert results["metrics"]["p"]["test:a"]["success"]["mean"] == pytest.approx(0.9)
    assert results["seeds"] == [0, 1, 2] and results["aggregation"]["per_seed_results"][2] == "seed_2/results.json"


def test_aggregate_of_seeds_that_all_succeed_has_no_zero_width_interval() -> None:
    runs = [_run(s, 1.0, {}) for s in range(5)]
    for run in runs:
        run["metrics"]["p"]["test"]["success"]["n_tasks"] = 50
    m = aggregate_results(runs, list(range(5)))["metrics"]["p"]["test"]["success"]
    assert m["method"] == "wilson_over_tasks_of_all_seeds" and m["mean"] == 1.0
    assert m["ci95"] == pytest.approx(list(wilson_interval(250, 250))) and m["ci95"][0] < 1.0


def test_aggregate_refuses_mixed_results() -> None:
    with pytest.raises(ConfigError, match="seed 1"):
        aggregate_results([_run(0, 0.5, {}), _run(5, 0.5, {})], [0, 1])


def test_cli_seeds_runs_each_seed_and_aggregates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], one_torch_thread: None
) -> None:
    tiny = ["train_sizes=[2]", "episodes_per_maze=2", "test_mazes=3", "eval_episodes=6", "bc_steps=3", "pc_steps=3"]
    sets = [arg for s in tiny for arg in ("--set", s)]
    code = main(["run", "maze-procedure", "--seeds", "0-1", "--out", str(tmp_path), "--quick", "--json", *sets])
    assert code == 0
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert results == json.loads((tmp_path / "results.json").read_text())
    per_seed = [json.loads((tmp_path / f"seed_{s}" / "results.json").read_text()) for s in (0, 1)]
    assert [r["seed"] for r in per_seed] == [0, 1]
    m = results["metrics"]["pc_n2"]["test"]["success"]
    assert m["n_seeds"] == 2 and m["per_seed"] == [r["metrics"]["pc_n2"]["test"]["success"]["mean"] for r in per_seed]
    assert (tmp_path / "report.md").read_text().startswith("# maze-procedure over 2 training seeds")
    assert (tmp_path / "seeds.png").stat().st_size > 0


def test_cli_seeds_bad_value_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "maze-procedure", "--seeds", "3-1", "--out", str(tmp_path)])
    assert_one_error_line(code, capsys.readouterr().err, "--seeds")
