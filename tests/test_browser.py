"""``clonekit serve``: the viewer page driven in a real headless Chromium (playwright + Debian's chromium).

A real uvicorn server on a free port serves a small dataset written by the test; the page lists its episodes,
filters them, shows a chosen episode's frames and annotation streams as the scrubber moves, and shows text as
text (a thought holding HTML markup stays markup, nothing runs). A screenshot goes to the test's tmp dir.
The live page: a person takes over from a policy (discrete keys on the maze; on Avoiding, the continuous
pad and arrow keys inside a round of ``clonekit interactive --intervener human``) and the dataset on disk
has those steps flagged with the actions sent. One browser serves every test of the module.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from clonekit.cli import main
from clonekit.data import DatasetWriter, array_stream, text_stream
from clonekit.interactive.browse import Browse
from clonekit.interactive.server import make_app
from tests.conftest import assert_one_error_line

SIZE = 5
MARKUP = '<img src="x" onerror="window.__injected = 1">'
STREAMS = [
    array_stream("obs", "uint8", (3, SIZE, SIZE)),
    array_stream("action", "int64"),
    array_stream("reward", "float32"),
    array_stream("terminated", "bool"),
    array_stream("truncated", "bool"),
    text_stream("thought", "what the demonstrator was thinking"),
    array_stream("intervention", "bool"),
    array_stream("demonstrator", "int64"),
]


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "chromium is not installed: `make setup` installs Debian's chromium where it runs as root with apt-get",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (each test opens its own page)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"], headless=True)
        try:
            yield launched
        finally:
            launched.close()


def _episode(k: int, length: int) -> dict[str, Any]:
    """Agent (channel 1) walks right along row k % SIZE; walls (channel 0) on the top row; goal (2) at the end."""
    obs = np.zeros((length, 3, SIZE, SIZE), dtype=np.uint8)
    obs[:, 0, 0, :] = 1
    obs[:, 2, k % SIZE, SIZE - 1] = 1
    for t in range(length):
        obs[t, 1, k % SIZE, t % SIZE] = 1
    success = k % 2 == 0
    thoughts = [f"episode {k} step {t}: go right" for t in range(length)]
    if k == 2:
        thoughts[1] = MARKUP
    return {
        "obs": obs,
        "action": np.full(length, 3),
        "reward": np.eye(length, dtype=np.float32)[-1] * float(success),
        "terminated": np.eye(length, dtype=bool)[-1] & success,
        "truncated": np.eye(length, dtype=bool)[-1] & (not success),
        "thought": thoughts,
        "intervention": np.arange(length) == 2 if k == 3 else np.zeros(length, dtype=bool),
        "demonstrator": np.full(length, k % 2),
    }


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("browse") / "data"
    spaces = {"observation": gym.spaces.Box(0, 1, (3, SIZE, SIZE), np.uint8), "action": gym.spaces.Discrete(4)}
    with DatasetWriter(path, STREAMS, spaces=spaces, env={"id": "external", "kwargs": {}}) as writer:
        for k in range(5):
            writer.add_episode(_episode(k, 4 + k))
    return path


def test_browse_lists_filters_and_draws_episodes(dataset_path: Path) -> None:
    browse = Browse(dataset_path)
    assert browse.kind == "dataset" and [r["length"] for r in browse.episodes()] == [4, 5, 6, 7, 8]
    assert [r["index"] for r in browse.episodes(success=True)] == [0, 2, 4]
    assert [r["index"] for r in browse.episodes(intervention=True)] == [3]
    assert [r["index"] for r in browse.episodes(demonstrator="1")] == [1, 3]
    steps = browse.steps(0, 2)
    assert steps["frames"] and steps["streams"]["thought"][1] == MARKUP and steps["streams"]["action"] == [3] * 6
    png = browse.frame_png(0, 2, 1)
    assert png.startswith(b"\x89PNG")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(dataset_path: Path) -> Iterator[str]:
    """The real app under uvicorn on a free local port, with a token; yields the page URL."""
    import uvicorn

    port = _free_port()
    app = make_app(Browse(dataset_path), token="s3cret")
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(timeout=10)


def test_the_api_refuses_requests_without_the_token(server: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(server + "api/summary")
    assert refused.value.code == 401
    with urllib.request.urlopen(server + "api/summary?token=s3cret") as ok:
        assert ok.status == 200
    with pytest.raises(urllib.error.HTTPError) as missing:  # a bad index is a 404 with one line, not a crash
        urllib.request.urlopen(server + "api/datasets/0/episodes/99?token=s3cret")
    assert missing.value.code == 404 and b"episode 99" in missing.value.read()


def test_the_page_shows_episodes_frames_and_streams_in_chromium(server: str, tmp_path: Path, browser: Any) -> None:
    page = browser.new_page()
    try:
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server + "?token=s3cret")
        page.wait_for_selector("body[data-ready='1']", timeout=15000)
        assert page.locator("#episodes button").count() == 5
        page.select_option("#f-success", "1")  # filter: successes only
        page.wait_for_function("document.querySelectorAll('#episodes button').length === 3")
        page.click("#episodes button[data-episode='2']")
        page.wait_for_selector("#episode:not([hidden])")
        page.fill("#step", "1")  # scrub to step 1 (fires input)
        thought = page.locator("#streams tr[data-stream='thought'] td").nth(1)
        assert thought.text_content() == MARKUP  # shown as text
        assert page.evaluate("window.__injected") is None and page.locator("#streams img").count() == 0
        assert page.locator("#step-label").text_content() == "step 1 / 5"
        page.wait_for_function("document.getElementById('frame').complete")
        size = page.evaluate(
            "[document.getElementById('frame').naturalWidth, document.getElementById('frame').naturalHeight]"
        )
        assert size == [SIZE * 8, SIZE * 8]
        page.fill("#step", "4")
        assert (
            page.locator("#streams tr[data-stream='thought'] td").nth(1).text_content() == "episode 2 step 4: go right"
        )
        page.screenshot(path=str(tmp_path / "viewer.png"), full_page=True)
        assert (tmp_path / "viewer.png").stat().st_size > 1000
        assert not errors, errors
    finally:
        page.close()


def test_a_non_local_bind_without_a_token_exits_2_with_one_line(
    dataset_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLONEKIT_TOKEN", raising=False)
    code = main(["serve", str(dataset_path), "--host", "0.0.0.0"])
    assert_one_error_line(code, capsys.readouterr().err, "needs --token")
    code = main(["serve", str(dataset_path.parent / "nothing")])
    assert_one_error_line(code, capsys.readouterr().err, "expected a dataset, run or experiment directory")


# -- the live page: a policy plays, a person takes over --------------------------------------------------------


@pytest.fixture(scope="module")
def maze_run(maze_data: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A briefly trained BC run on the maze data (what it does matters little: the person takes over)."""
    from clonekit.train import TrainConfig, train

    run = tmp_path_factory.mktemp("live") / "run"
    config = TrainConfig(steps=20, batch_size=32, checkpoint_every=20, log_every=10, tensorboard=False)
    train(
        "bc", maze_data, run, config, policy_overrides={"hidden_sizes": [32], "conv_channels": [8]}, show_progress=False
    )
    return run


def _intervention_actions(dataset: Any) -> list[int]:
    flags = np.asarray(dataset.column("intervention"), dtype=bool)
    actions = np.asarray(dataset.column("action"))
    assert (np.asarray(dataset.column("expert_action"))[flags] == actions[flags]).all()
    return actions[flags].tolist()


def _take_over_and_act(page: Any, actions: list[int]) -> None:
    """Take over on the live page, then press each action's number key, waiting for each step's acknowledgement."""
    page.wait_for_function("Number(document.getElementById('counters').dataset.step || 0) >= 2")  # the policy plays
    page.click("#takeover")
    page.wait_for_selector("body[data-control='human']")
    for action in actions:
        before = page.evaluate("document.getElementById('counters').textContent")
        page.keyboard.press(str(action + 1))
        page.wait_for_function(f"document.getElementById('counters').textContent !== {json.dumps(before)}")


def test_the_live_page_takes_over_and_the_dataset_records_the_interventions(
    maze_run: Path, tmp_path: Path, one_torch_thread: None, browser: Any
) -> None:
    import uvicorn

    from clonekit.interactive.live import live_session_for_run

    session = live_session_for_run(maze_run, tmp_path / "live", split="train", num_tasks=2)
    port = _free_port()
    app = make_app(Browse(maze_run), live=session, step_interval=0.05)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive()
        time.sleep(0.05)
    sent = [3, 0, 2]
    page = browser.new_page()
    try:
        page.goto(f"http://127.0.0.1:{port}/live")
        _take_over_and_act(page, sent)
        assert page.locator("#frame").get_attribute("src").startswith("data:image/png;base64,")
        page.click("#release")
        page.wait_for_selector("body[data-control='policy']")
        saved = int(page.locator("#counters").get_attribute("data-saved"))
        page.click("#end")
        page.wait_for_function(f"Number(document.getElementById('counters').dataset.saved) > {saved}")
        page.screenshot(path=str(tmp_path / "live.png"))
    finally:
        page.close()
        server.should_exit = True
        thread.join(timeout=10)
        session.close()
    dataset = session.dataset()
    assert dataset is not None and _intervention_actions(dataset) == sent


def test_a_killed_live_server_loses_no_acknowledged_step(maze_run: Path, tmp_path: Path, browser: Any) -> None:
    from clonekit.interactive.live import live_session_for_run

    port = _free_port()
    command = [sys.executable, "-m", "clonekit", "serve", str(maze_run), "--live", "--live-dir", str(tmp_path / "live")]
    command += ["--port", str(port), "--split", "train", "--step-interval", "0.05"]
    log = tmp_path / "server.log"  # a file, not a pipe: a full pipe would stall the server
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # batch-1 steps: one thread is fastest, and a busy machine hurts less
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log.open("w"), env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/summary", timeout=1)
                break
            except OSError:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        sent = [1, 1]
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/live")
        try:
            _take_over_and_act(page, sent)  # both steps acknowledged on the page
        except Exception as err:
            raise AssertionError(f"the live page did not play; server log:\n{log.read_text()}") from err
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        page.close()
    finally:
        if process.poll() is None:
            process.kill()
    session = live_session_for_run(maze_run, tmp_path / "live", split="train")  # restart on the same directory
    try:
        dataset = session.dataset()
        assert dataset is not None and _intervention_actions(dataset)[-2:] == sent
        assert bool(np.asarray(dataset.column("truncated"))[-1])  # the cut episode ends truncated
    finally:
        session.close()


# -- a person as the intervener of an interactive round, with continuous actions ---------------------------------


def _acknowledged(page: Any, act: Any) -> None:
    """Do ``act`` on the live page and wait until the server acknowledged a step (the counters change)."""
    before = page.evaluate("document.getElementById('counters').textContent")
    act()
    page.wait_for_function(f"document.getElementById('counters').textContent !== {json.dumps(before)}")


def test_a_person_takes_over_a_round_with_continuous_actions(
    avoiding_data: Any, tmp_path: Path, one_torch_thread: None, browser: Any
) -> None:
    from clonekit.interactive import InteractiveConfig
    from clonekit.interactive.human import run_with_person

    config = InteractiveConfig(
        train_steps=10,
        batch_size=32,
        policy_overrides={"hidden_sizes": [16]},
        episodes_per_round=2,
        max_episode_steps=10,
    )
    port, out = _free_port(), tmp_path / "run"
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["run"] = run_with_person(
                "hg_dagger", avoiding_data.path, out, 1, 0, config, port=port, step_interval=0.05
            )
        except BaseException as err:  # reported by the asserts below
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/live", timeout=1)
            break
        except OSError:
            assert thread.is_alive() and time.monotonic() < deadline, outcome
            time.sleep(0.05)
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(f"http://127.0.0.1:{port}/live")
        page.wait_for_function("Number(document.getElementById('counters').dataset.step || 0) >= 1")  # round 0 plays
        assert page.locator("#round").text_content() == "interactive round 0"
        page.click("#takeover")
        page.wait_for_selector("body[data-control='human']")
        pad = page.locator("#pad").bounding_box()
        page.mouse.move(pad["x"] + pad["width"] / 4, pad["y"] + pad["height"] / 4)  # left and up: [-0.5, 0.5]
        _acknowledged(page, page.mouse.down)  # held: a step now, then one every interval
        page.mouse.up()
        on_pad = json.loads(page.locator("#vector").get_attribute("data-action"))
        assert np.allclose(on_pad, [-0.5, 0.5], atol=0.02), on_pad
        _acknowledged(page, lambda: page.keyboard.press("ArrowLeft"))  # [-1, 0]
        _acknowledged(page, lambda: page.keyboard.press("ArrowDown"))  # [0, -1]
        page.screenshot(path=str(tmp_path / "human-round.png"))
        page.click("#release")
        page.wait_for_selector("body[data-control='policy']")
        thread.join(timeout=60)  # the policy plays the round out; the final policy trains
        assert not errors, errors
    finally:
        page.close()
    assert not thread.is_alive() and "error" not in outcome, outcome
    dataset = outcome["run"].dataset
    played = np.asarray(dataset.column("round")) == 0
    flags = np.asarray(dataset.column("intervention"))[played]
    actions = np.asarray(dataset.column("action"))[played][flags]
    distinct = [a for k, a in enumerate(actions.tolist()) if k == 0 or a != actions[k - 1].tolist()]
    assert np.allclose(distinct, [on_pad, [-1.0, 0.0], [0.0, -1.0]], atol=1e-6), distinct  # the actions sent, in order
    assert (~flags).sum() >= 1 and outcome["run"].rounds[0]["expert_labels"] == int(flags.sum())
