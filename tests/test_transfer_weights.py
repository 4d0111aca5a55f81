"""Transferability of demonstrations recorded under other dynamics (:mod:`clonekit.quality.transfer`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clonekit.cli import main
from clonekit.data import Dataset, DatasetWriter, array_stream
from clonekit.envs import get_env_family
from clonekit.errors import ConfigError, DatasetError
from clonekit.experiments.avoiding_ood_dynamics import write_drift_demos
from clonekit.quality.transfer import TransferConfig, separation_auc, transfer_scores, write_transfer_weights
from tests.conftest import assert_one_error_line, tree_hash

# 0.004 is a tenth of full speed per step. Measured (scorer seeds 0-2, 150 steps): AUC 1.0, every target
# episode weight 1.0, every wind episode weight <= 8e-5.
DRIFTS = (0.004, -0.01, 0.02)
AUC_THRESHOLD = 0.9
SCORER = TransferConfig(steps=150, seed=0)  # the default forward model, fewer steps
LINEAR = TransferConfig(hidden_sizes=(), seed=0)  # the linear map alone: no gradient steps


@pytest.fixture(scope="module")
def drift_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, Dataset]:
    """6 training starts; demos: 6 target episodes and 4 under each drift of ``DRIFTS``; 3 target episodes for
    the scorer."""
    root = tmp_path_factory.mktemp("drift")
    tasks = get_env_family("avoiding").sample_tasks(0, "train", 6, set())
    groups = [(0.0, 6, "demos"), *[(d, 4, "demos") for d in DRIFTS]]
    demos = write_drift_demos(root / "demos", 0, tasks, groups, {})
    scorer = write_drift_demos(root / "scorer", 0, tasks, [(0.0, 3, "scorer")], {})
    return demos, scorer


def test_scores_separate_target_from_other_dynamics(
    drift_data: tuple[Dataset, Dataset], one_torch_thread: None
) -> None:
    demos, scorer = drift_data
    scores = transfer_scores(demos, scorer, SCORER)
    drift = np.asarray(demos.episode_info("drift"))
    target = drift == 0
    auc = separation_auc(-scores.score[target], -scores.score[~target])
    assert auc >= AUC_THRESHOLD, (auc, scores.score)
    # Target episodes keep most of their weight, strong-drift ones lose nearly all of it.
    assert scores.weight[target].min() >= 0.5, scores.weight[target]
    assert scores.weight[drift == 0.02].max() <= 0.01, scores.weight[drift == 0.02]


def test_weight_stream_written_and_source_untouched(
    drift_data: tuple[Dataset, Dataset], tmp_path: Path, one_torch_thread: None
) -> None:
    demos, scorer = drift_data
    before = (tree_hash(demos.path), tree_hash(scorer.path))
    out = tmp_path / "weighted"
    new, scores = write_transfer_weights(demos, scorer, out, LINEAR)
    assert (tree_hash(demos.path), tree_hash(scorer.path)) == before
    assert "weight" not in demos.streams and new.streams["weight"].dtype == "float32"
    weight = np.asarray(new.column("weight"))
    np.testing.assert_allclose(weight, np.repeat(scores.weight, demos.episode_lengths).astype(np.float32))
    np.testing.assert_array_equal(new.column("obs"), demos.column("obs"))
    np.testing.assert_array_equal(new.episode_info("drift"), demos.episode_info("drift"))
    assert new.extra["transfer"]["source_fingerprint"] == demos.fingerprint
    # A second pass multiplies the weights already there (a curation's zeros stay zero).
    again, second = write_transfer_weights(new, scorer, tmp_path / "twice", LINEAR)
    np.testing.assert_allclose(
        np.asarray(again.column("weight")),
        weight * np.repeat(second.weight, demos.episode_lengths),
        rtol=1e-6,
        atol=1e-30,
    )
    with pytest.raises(DatasetError, match="exists"):
        write_transfer_weights(demos, scorer, out, LINEAR)


def test_bad_input_is_one_line(
    drift_data: tuple[Dataset, Dataset], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demos, scorer = drift_data
    streams = [array_stream("obs", "float32", (3,)), array_stream("action", "float32", (2,))]
    streams += [array_stream("reward", "float32", ()), array_stream("terminated", "bool", ())]
    wide = DatasetWriter(tmp_path / "wide", [*streams, array_stream("truncated", "bool", ())])
    with wide:
        steps = {"obs": np.zeros((4, 3)), "action": np.zeros((4, 2)), "reward": np.zeros(4)}
        wide.add_episode({**steps, "terminated": np.zeros(4, bool), "truncated": np.zeros(4, bool)})
    with pytest.raises(ConfigError, match="temperature"):
        TransferConfig(temperature=0)

    def cli(*args: str) -> tuple[int, str]:
        code = main(["transfer-weights", str(demos.path), "--out", str(tmp_path / "out"), "--steps", "5", *args])
        return code, capsys.readouterr().err

    assert_one_error_line(*cli("--target", str(tmp_path / "wide")), "3/2", "2/2")
    assert_one_error_line(*cli("--target", str(scorer.path), "--temperature", "0"), "temperature", "> 0")
    assert_one_error_line(*cli("--target", str(tmp_path / "missing")), "missing")
    assert not (tmp_path / "out").exists()
    assert (
        main(
            [
                "transfer-weights",
                str(demos.path),
                "--target",
                str(scorer.path),
                "--out",
                str(tmp_path / "out"),
                "--steps",
                "5",
            ]
        )
        == 0
    )
    assert "weight" in Dataset.open(tmp_path / "out").streams
