"""The avoiding-modes experiment end to end on a tiny setting: outputs, their shape, and resuming."""

from __future__ import annotations

import json
from pathlib import Path

from clonekit.experiments import avoiding_modes, get_experiment
from clonekit.experiments.avoiding_modes import AvoidingModesConfig

TINY = AvoidingModesConfig(
    episodes=8,
    train_starts=4,
    test_starts=3,
    eval_episodes=6,
    mlp_steps=4,
    gmm_steps=4,
    diffusion_steps=4,
    batch_size=16,
    hidden_sizes=(16,),
    denoising_steps=2,
    chunk=3,
    execute_steps=2,
)


def test_experiment_writes_results_report_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    results = avoiding_modes.run(out, seed=2, quick=True, show_progress=False, log=lambda _: None, config=TINY)
    on_disk = json.loads((out / "results.json").read_text())
    assert json.dumps(on_disk, sort_keys=True) == json.dumps(results, sort_keys=True)  # NaN-safe (n=0 cells)
    assert on_disk["experiment"] == "avoiding-modes" and on_disk["seed"] == 2 and on_disk["quick"] is True
    assert set(on_disk["metrics"]) == {"mlp", "gmm", "diffusion", "diffusion_chunked"}
    for name, splits in on_disk["metrics"].items():
        assert set(splits) == {"train", "test"}
        for split_name, split in splits.items():
            assert set(split) == {"success", "entropy", "modes"}
            success = split["success"]
            # The MSE policy is deterministic on deterministic start states: one episode per task.
            tasks = TINY.train_starts if split_name == "train" else TINY.test_starts
            assert success["n"] == (tasks if name == "mlp" else 6) and success["n_tasks"] == tasks
            assert 0 <= success["ci95"][0] <= success["mean"] <= success["ci95"][1] <= 1
            assert success["ci95"][1] > success["ci95"][0]  # never a zero-width interval for success
            assert split["entropy"]["n"] <= 6
    for plot in ("trajectories.png", "success.png", "entropy.png"):
        assert (out / plot).stat().st_size > 1000, plot
    report = (out / "report.md").read_text()
    assert "diffusion_chunked" in report and "trajectories.png" in report
    assert len(get_experiment("avoiding-modes").table(results)) == 4

    # Running again reuses the data and the finished runs and gives the same numbers.
    weights = (out / "runs" / "gmm" / "model.safetensors").stat().st_mtime_ns
    again = avoiding_modes.run(out, seed=2, quick=True, show_progress=False, log=lambda _: None, config=TINY)
    assert json.dumps(again["metrics"], sort_keys=True) == json.dumps(on_disk["metrics"], sort_keys=True)
    assert (out / "runs" / "gmm" / "model.safetensors").stat().st_mtime_ns == weights
