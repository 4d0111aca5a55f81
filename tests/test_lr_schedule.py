"""Learning-rate schedules: the cosine schedule's values, the rate each step really used, an interrupted run that
resumes to the uninterrupted weights, the constant default unchanged, and the setting reaching every training of
an interactive run."""

from __future__ import annotations

import itertools
import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from clonekit.checkpoint import MODEL_FILE, checkpoint_dirs
from clonekit.data import Dataset
from clonekit.errors import ConfigError
from clonekit.experiments.gym_interactive import GymInteractiveConfig
from clonekit.experts.collect import collect
from clonekit.interactive import InteractiveConfig
from clonekit.interactive.loop import train_config_for
from clonekit.train import TrainConfig, learning_rate, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL = {"encoder": "mlp", "hidden_sizes": [32]}


@pytest.fixture(scope="module")
def maze(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    out = tmp_path_factory.mktemp("lr") / "maze"
    return collect("maze", "bfs", episodes=6, seed=0, out=out, num_tasks=3, env_kwargs={"size": 7}, show_progress=False)


def _config(**kw: object) -> TrainConfig:
    base = TrainConfig(steps=12, batch_size=16, lr=0.01, checkpoint_every=4, keep_checkpoints=10, log_every=1)
    return replace(base, tensorboard=False, **kw)  # type: ignore[arg-type]


def test_cosine_falls_from_the_peak_to_near_zero_along_a_half_cosine() -> None:
    config = TrainConfig(steps=100, lr=0.01, lr_schedule="cosine")
    rates = [learning_rate(config, step) for step in range(1, 101)]
    assert rates[0] == 0.01 and math.isclose(rates[50], 0.005)
    assert all(a > b for a, b in itertools.pairwise(rates)) and 0 < rates[-1] < 0.01 * 1e-3
    assert learning_rate(TrainConfig(steps=100, lr=0.01), 100) == 0.01
    with pytest.raises(ConfigError, match="lr_schedule"):
        TrainConfig(lr_schedule="linear")


def test_each_step_uses_its_scheduled_rate_and_a_killed_run_resumes_to_the_same_weights(
    maze: Dataset, tmp_path: Path
) -> None:
    config = _config(lr_schedule="cosine")
    train("bc", maze, tmp_path / "whole", config, SMALL, show_progress=False)
    logged = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in logged] == [learning_rate(config, r["step"]) for r in logged]
    assert logged[0]["lr"] == 0.01 and logged[-1]["lr"] < 0.001
    # Killed after the step-4 checkpoint: later checkpoints and the final weights never written.
    shutil.copytree(tmp_path / "whole", tmp_path / "cut")
    for directory in checkpoint_dirs(tmp_path / "cut")[1:]:
        shutil.rmtree(directory)
    (tmp_path / "cut" / MODEL_FILE).unlink()
    train("bc", maze, tmp_path / "cut", config, SMALL, resume=True, show_progress=False)
    whole, cut = load_file(str(tmp_path / "whole" / MODEL_FILE)), load_file(str(tmp_path / "cut" / MODEL_FILE))
    assert whole.keys() == cut.keys() and all(torch.equal(whole[k], cut[k]) for k in whole)
    # The schedule changes the weights; the constant default trains as it always did (every step at lr).
    train("bc", maze, tmp_path / "constant", _config(), SMALL, show_progress=False)
    constant = load_file(str(tmp_path / "constant" / MODEL_FILE))
    assert not all(torch.equal(whole[k], constant[k]) for k in whole)
    rates = {json.loads(line)["lr"] for line in (tmp_path / "constant" / "metrics.jsonl").read_text().splitlines()}
    assert rates == {0.01}


def test_an_interactive_run_trains_every_round_with_its_schedule() -> None:
    config = InteractiveConfig(lr_schedule="cosine", train_steps=50)
    assert train_config_for("sirius", config, 0).lr_schedule == "cosine"
    assert train_config_for("dagger", InteractiveConfig(), 0).lr_schedule == "constant"
    with pytest.raises(ConfigError, match="lr_schedule"):
        InteractiveConfig(lr_schedule="step")
    with pytest.raises(ConfigError, match="lr_schedule"):
        GymInteractiveConfig(lr_schedule="step")
