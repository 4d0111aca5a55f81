"""A person as the intervener, without a browser: the live session's continuous actions, bounds and recovery,
and interactive rounds played through :class:`clonekit.interactive.human.HumanRounds` (driven from this thread
as the page's socket would drive it). The page itself is driven in Chromium in ``tests/test_browser.py``."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from clonekit.cli import main
from clonekit.data import Dataset
from clonekit.envs import get_env_family
from clonekit.errors import CheckpointError, ConfigError
from clonekit.evaluation import split_tasks
from clonekit.interactive import InteractiveConfig, run_interactive
from clonekit.interactive.human import HumanRounds, LiveHost
from clonekit.interactive.live import LiveSession
from tests.conftest import assert_one_error_line

FAST = {"train_steps": 10, "batch_size": 32, "policy_overrides": {"hidden_sizes": [16]}}


class GoDown:
    """A stand-in policy: always full speed down (Avoiding's action ``[0, -1]``; it stays at the bottom edge,
    far from every obstacle, so no episode ends by itself)."""

    def initial_state(self, batch_size: int) -> None:
        return None

    def act(self, obs: dict[str, torch.Tensor], state: Any = None) -> tuple[torch.Tensor, None]:
        return torch.tensor([[0.0, -1.0]]).repeat(len(obs["obs"]), 1), None


def _session(avoiding_data: Dataset, directory: Path, **bounds: Any) -> LiveSession:
    tasks = split_tasks(avoiding_data.env, "train", 0, 1)
    return LiveSession(GoDown(), get_env_family("avoiding"), {}, tasks, directory, **bounds)


def test_continuous_take_over_is_clipped_checked_and_saved(avoiding_data: Dataset, tmp_path: Path) -> None:
    session = _session(avoiding_data, tmp_path / "live")
    state = session.step()
    assert state["action_low"] == [-1.0, -1.0] and state["action_high"] == [1.0, 1.0]
    assert state["frame"].startswith("data:image/png;base64,") and state["obs"] is None  # the arena, drawn
    session.set_control(True)
    session.step([2.0, -0.5])  # clipped to the bounds
    session.step([-0.25, 0.75])
    for bad in ([1.0], "left", [1.0, float("nan")], [True, 0.0]):
        with pytest.raises(ConfigError, match="expected a list of 2 finite numbers"):
            session.step(bad)
    session.set_control(False)
    session.step()
    session.end_episode()
    dataset = session.dataset()
    assert dataset is not None and dataset.streams["action"].dtype == "float32"
    flags = np.asarray(dataset.column("intervention"))
    actions = np.asarray(dataset.column("action"))
    assert flags.tolist() == [False, True, True, False]
    np.testing.assert_array_equal(actions[flags], np.array([[1.0, -0.5], [-0.25, 0.75]], dtype=np.float32))
    np.testing.assert_array_equal(actions[~flags], np.array([[0.0, -1.0]] * 2, dtype=np.float32))
    np.testing.assert_array_equal(np.asarray(dataset.column("expert_action")), actions)
    session.close()


def test_a_bounded_session_recovers_a_kill_and_finishes(avoiding_data: Dataset, tmp_path: Path) -> None:
    directory = tmp_path / "round"
    session = _session(avoiding_data, directory, max_episodes=2, max_steps=4, first_episode=3, seed=7)
    session.set_control(True)
    session.step([-1.0, 0.0])
    session.step([-1.0, -1.0])
    session.close()  # killed here: the two acknowledged steps are only in the journal
    session = _session(avoiding_data, directory, max_episodes=2, max_steps=4, first_episode=3, seed=7)
    assert session.committed == 1 and session.labels_used == 2 and not session.finished.is_set()
    for _ in range(4):  # the second episode is cut at max_steps
        session.step()
    assert session.finished.is_set()
    assert session.step()["finished"] and session.state()["episodes_saved"] == 2  # a policy step does nothing
    with pytest.raises(ConfigError, match="finished"):
        session.step([0.0, 0.0])
    dataset = session.dataset()
    assert dataset is not None and dataset.episode_lengths.tolist() == [2, 4]
    assert np.asarray(dataset.column("truncated")).tolist() == [False, True, False, False, False, True]
    session.close()
    budget = _session(avoiding_data, tmp_path / "budget", label_budget=1)  # the last label ends it all
    budget.set_control(True)
    budget.step([0.5, 0.5])
    assert budget.finished.is_set() and budget.labels_left == 0
    budget.close()


def _drive(host: LiveHost, run: threading.Thread, sent: list[list[float]]) -> None:
    """Play like a person on the page: wait for round 0, take over for ``sent``, release, let the policy end it."""
    deadline = time.monotonic() + 60
    while host.state().get("waiting") is not None:
        assert run.is_alive() and time.monotonic() < deadline, "the round never started"
        time.sleep(0.01)
    host.step()
    host.set_control(True)
    for action in sent:
        host.step(action)
    host.set_control(False)
    while run.is_alive():
        host.step()
        time.sleep(0.002)


def test_a_person_plays_the_rounds_and_a_killed_run_resumes(
    avoiding_data: Dataset, tmp_path: Path, one_torch_thread: None
) -> None:
    config = InteractiveConfig(episodes_per_round=2, max_episode_steps=5, **FAST)  # type: ignore[arg-type]
    out = tmp_path / "run"
    host = LiveHost()
    errors: list[BaseException] = []

    def killed(i: int, stage: str) -> None:
        if stage == "collected":
            raise KeyboardInterrupt  # killed after the round was played, before it was appended

    def play() -> None:
        try:
            run_interactive("hg_dagger", avoiding_data, out, 1, 0, config, hook=killed, player=HumanRounds(host, out))
        except KeyboardInterrupt as err:
            errors.append(err)

    run = threading.Thread(target=play)
    run.start()
    sent = [[-1.0, 0.5], [0.25, -1.0]]
    _drive(host, run, sent)
    run.join()
    assert len(errors) == 1 and json.loads((out / "run.json").read_text())["rounds"] == []
    # Rerun: the round's session is complete on disk, so nobody needs to play again.
    finished = run_interactive("hg_dagger", avoiding_data, out, 1, 0, config, player=HumanRounds(LiveHost(), out))
    rows = np.asarray(finished.dataset.column("round")) == 0
    flags = np.asarray(finished.dataset.column("intervention"))[rows]
    actions = np.asarray(finished.dataset.column("action"))[rows]
    np.testing.assert_array_equal(actions[flags], np.array(sent, dtype=np.float32))
    weights = np.asarray(finished.dataset.column("weight"))[rows]
    assert weights[flags].tolist() == [1.0, 1.0] and not weights[~flags].any()  # HG-DAgger learns the take-over
    assert finished.rounds[0]["expert_labels"] == 2 and finished.rounds[0]["episodes"] == 2
    assert json.loads((out / "run.json").read_text())["intervener"] == "human"
    with pytest.raises(CheckpointError, match="intervener"):  # a human run does not continue simulated
        run_interactive("hg_dagger", avoiding_data, out, 2, 0, config)
    with pytest.raises(ConfigError, match="dagger: the expert labels every visited state"):
        run_interactive("dagger", avoiding_data, tmp_path / "d", 1, 0, config, player=HumanRounds(host, out))


def test_the_cli_refuses_a_bad_intervener_or_bind_with_one_line(
    avoiding_data: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLONEKIT_TOKEN", raising=False)
    base = [
        "interactive",
        "hg_dagger",
        "--data",
        str(avoiding_data.path),
        "--out",
        str(tmp_path / "o"),
        "--rounds",
        "1",
    ]
    code = main([*base, "--intervener", "human", "--host", "0.0.0.0"])
    assert_one_error_line(code, capsys.readouterr().err, "needs --token")
    code = main([*base, "--intervener", "robot"])
    assert_one_error_line(code, capsys.readouterr().err, "--intervener", "robot")
    code = main([*base, "--port", "9000"])
    assert_one_error_line(code, capsys.readouterr().err, "--intervener human")
    code = main([*base[:1], "dagger", *base[2:], "--intervener", "human"])
    assert_one_error_line(code, capsys.readouterr().err, "use hg_dagger, sirius or rlif")
    assert not (tmp_path / "o").exists()


def test_avoiding_observations_are_drawn_as_pictures_for_the_page() -> None:
    from clonekit.envs.pixels import AVOIDING_AGENT, render_avoiding
    from clonekit.interactive.browse import draw

    family = get_env_family("avoiding")
    pictures = draw(np.array([[0.3, 0.5], [-0.6, 0.9]], np.float32), family)
    assert pictures is not None and pictures.shape == (2, 128, 128, 3) and pictures.dtype == np.uint8
    for picture, (x, y) in zip(pictures, [(0.3, 0.5), (-0.6, 0.9)], strict=True):
        rows, cols = np.nonzero((picture == np.array(AVOIDING_AGENT, np.uint8)).all(-1))
        # The agent's disc sits where the arena (x in [-1, 1], y in [0, 1.1], top row first) puts it.
        assert abs(cols.mean() - (x + 1) / 2 * 128) < 2 and abs(rows.mean() - (1.1 - y) / 1.1 * 128) < 2
    frames = render_avoiding(np.array([[0.0, 0.2]]), 32)  # pixel observations (T, 3, S, S) pass as they are
    assert np.array_equal(draw(frames, family), frames.transpose(0, 2, 3, 1))
