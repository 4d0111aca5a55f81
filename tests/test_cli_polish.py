"""The small things a new user meets first: ``--version``, ``clonekit list``'s descriptions, ``eval``'s progress."""

from __future__ import annotations

import json
import re
from importlib.metadata import version
from pathlib import Path

import pytest

from clonekit.cli import main
from clonekit.data import Dataset
from clonekit.registry import catalog, describe
from clonekit.train import TrainConfig, train


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "--version")
    assert code == 0, err
    assert out == f"clonekit {version('clonekit')}\n"


def test_list_gives_each_entry_its_own_plain_one_line_description(capsys: pytest.CaptureFixture[str]) -> None:
    rows = catalog()
    for kind, name, description in rows:
        assert description and "\n" not in description, (kind, name, description)
        assert "`" not in description and not re.search(r":\w+:", description), (kind, name, description)
    policies = {name: description for kind, name, description in rows if kind == "policy"}
    assert len(set(policies.values())) == len(policies), policies
    assert "recurrent" in policies["recurrent_bc"].lower() and "thought" in policies["thought_cloning"].lower()
    code, out, err = _run(capsys, "list")
    assert code == 0, err
    assert "recurrent_bc" in out and ":mod:" not in out and "``" not in out


class _Plugin:
    """Wraps :class:`~pkg.mod.Policy` around ``obs`` (see :mod:`the guide <pkg.guide>`) and `x`.

    More detail that is not part of the summary.
    """


class _Undocumented(_Plugin):
    pass


def test_describe_reduces_rest_markup_and_never_inherits() -> None:
    assert describe(_Plugin) == "Wraps Policy around obs (see the guide) and x."
    assert describe(_Plugin()) == describe(_Plugin)
    assert describe(_Undocumented) == ""  # not its base class's description


def _tiny_run(data: Dataset, out: Path) -> Path:
    config = TrainConfig(steps=3, batch_size=8, checkpoint_every=3, tensorboard=False)
    train("bc", data, out, config, {"conv_channels": [4], "hidden_sizes": [8]}, show_progress=False)
    return out


def test_eval_shows_progress_on_stderr_and_quiet_turns_it_off(
    maze_data: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _tiny_run(maze_data, tmp_path / "run")
    args = ("eval", run, "--episodes", 4, "--batch-size", 2, "--split", "train")
    code, out, err = _run(capsys, *args, "--json")
    assert code == 0, err
    assert json.loads(out)["metrics"]["success"]["n"] == 4  # stdout is the JSON alone
    assert "eval train" in err and "4/4" in err
    code, out, err = _run(capsys, *args, "--quiet")
    assert code == 0, err
    assert err == "" and "success" in out


def test_collect_and_train_show_progress_on_stderr_and_quiet_turns_it_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    collect = ("collect", "maze", "--expert", "bfs", "--episodes", 3, "--tasks", 3)
    code, out, err = _run(capsys, *collect, "--out", data)
    assert code == 0, err
    assert "collect" in err and "3/3" in err
    code, out, err = _run(capsys, *collect, "--out", tmp_path / "quiet", "--quiet")
    assert code == 0 and err == "", err
    train_args = ("train", "bc", "--data", data, "--steps", 3, "--batch-size", 4)
    code, out, err = _run(capsys, *train_args, "--out", tmp_path / "run")
    assert code == 0, err
    assert "train bc" in err and "3/3" in err and "trained bc for 3 steps" in out
    code, out, err = _run(capsys, *train_args, "--out", tmp_path / "run_quiet", "--quiet")
    assert code == 0 and err == "", err
    assert "trained bc for 3 steps" in out
