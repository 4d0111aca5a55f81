"""``clonekit relabel``: hindsight goals through the command line, SRC only read, user errors in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clonekit.cli import main
from clonekit.data import Dataset
from tests.conftest import assert_one_error_line, tree_hash


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_relabel_writes_goals_and_leaves_src_alone(
    avoiding_data: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = avoiding_data.path
    before = tree_hash(src)
    dst = tmp_path / "goals"
    code, out, err = _run(capsys, "relabel", str(src), str(dst), "--strategy", "final", "--seed", "3")
    assert code == 0, err
    assert out.strip().startswith(f"wrote {dst}: {avoiding_data.num_episodes} episodes")
    relabeled = Dataset.open(dst)
    assert "goal" in relabeled.streams and relabeled.num_steps == avoiding_data.num_steps
    assert relabeled.extra["hindsight"] == {"strategy": "final", "copies": 1, "source": "obs", "seed": 3}
    first = relabeled.episode(0)
    np.testing.assert_array_equal(first["goal"], np.repeat(first["obs"][-1:], len(first["obs"]), axis=0))

    # A dataset with goals: the originals are kept by default, next to --copies relabeled copies.
    code, out, err = _run(capsys, "relabel", str(dst), str(tmp_path / "more"), "--copies", "2")
    assert code == 0, err
    assert Dataset.open(tmp_path / "more").num_episodes == 3 * avoiding_data.num_episodes

    missing = tmp_path / "nowhere"
    code, _, err = _run(capsys, "relabel", str(missing), str(tmp_path / "x"))
    assert_one_error_line(code, err, str(missing))
    code, _, err = _run(capsys, "relabel", str(src), str(tmp_path / "x"), "--strategy", "sideways")
    assert_one_error_line(code, err, "strategy", "sideways")
    code, _, err = _run(capsys, "relabel", str(src), str(dst))  # DST exists
    assert_one_error_line(code, err, str(dst))
    code, _, err = _run(capsys, "relabel", str(src), str(tmp_path / "x"), "--keep-original")  # SRC has no goal
    assert_one_error_line(code, err, "goal")
    assert not (tmp_path / "x").exists()
    assert tree_hash(src) == before
