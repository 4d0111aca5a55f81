"""A person as the intervener of interactive rounds: every round's episodes are played on the live page.

``clonekit interactive METHOD --data DEMOS --out RUN --rounds R --intervener human`` serves the live page
(``/live``, :mod:`clonekit.interactive.server`) for the whole run. Each round, :class:`HumanRounds` opens a
:class:`~clonekit.interactive.live.LiveSession` for the round's policy in ``RUN/human/round_i`` (the round's
``episodes_per_round`` episodes on the run's training tasks, cut at ``max_episode_steps``, the person's steps
capped by what is left of ``label_budget``) and waits until the session has saved them all. The person
watches, takes over (number keys for discrete actions; the pad or the arrow keys for continuous ones) and
releases, as on ``clonekit serve RUN --live``; the steps they controlled become the round's ``intervention``
steps with their actions as ``expert_action``, and the round is appended and the next policy trained as with a
simulated intervener (HG-DAgger, Sirius, RLIF; not DAgger, which needs a label at every visited state).

Every step is journaled before the page is told of it, so a kill loses no acknowledged step: rerunning the same
command resumes the round's training, moves the unfinished episode into the round's session as a truncated
one, and plays the rest of the round.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from clonekit.data import Dataset
from clonekit.errors import ConfigError
from clonekit.interactive.browse import Browse
from clonekit.interactive.episodes import RoundPlay
from clonekit.interactive.live import STEP_KEYS, LiveSession
from clonekit.interactive.loop import (
    InteractiveConfig,
    InteractiveRun,
    RoundHook,
    RoundToPlay,
    check_method,
    check_player_method,
    run_interactive,
)
from clonekit.interactive.server import check_bind, make_app, require_ui

HUMAN_DIR = "human"  # RUN/human/round_i: the live session of round i


class LiveHost:
    """What the live page talks to during a run: the current round's session, or none while a policy trains.

    It answers the calls the page's socket makes on a :class:`LiveSession` (``human``, ``step``, ``set_control``,
    ``end_episode``, ``state``). Between rounds a policy step does nothing, a person's step or take-over is
    refused with a one-line ``ConfigError``, and the state's ``waiting`` says what the run is doing.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._session: LiveSession | None = None
        self._round: int | None = None
        self.waiting = "the run is starting"

    def open_round(self, round_index: int, session: LiveSession) -> None:
        """Let the page play ``session``, round ``round_index``'s episodes."""
        with self._lock:
            self._session, self._round = session, round_index

    def close_round(self, waiting: str) -> None:
        """No session to play any more; the page shows ``waiting``."""
        with self._lock:
            self._session, self.waiting = None, waiting

    def set_waiting(self, waiting: str) -> None:
        """What the page shows while no round is playing."""
        with self._lock:
            self.waiting = waiting

    def _current(self) -> LiveSession | None:
        with self._lock:
            return self._session

    @property
    def human(self) -> bool:
        session = self._current()
        return session is not None and session.human

    def _playing(self) -> LiveSession:
        session = self._current()
        if session is None:
            raise ConfigError(f"live: no episode is playing now ({self.waiting}); wait for the next round")
        return session

    def step(self, human_action: Any = None) -> dict[str, Any]:
        session = self._current()
        if session is None and human_action is None:
            return self.state()
        return self._with_round(self._playing().step(human_action))

    def set_control(self, human: bool) -> dict[str, Any]:
        session = self._current()
        if session is None and not human:
            return self.state()
        return self._with_round(self._playing().set_control(human))

    def end_episode(self) -> dict[str, Any]:
        return self._with_round(self._playing().end_episode())

    def state(self) -> dict[str, Any]:
        session = self._current()
        if session is not None:
            return self._with_round(session.state())
        return {
            "frame": None,
            "obs": None,
            "control": "policy",
            "episode": 0,
            "step": 0,
            "interventions": 0,
            "episodes_saved": 0,
            "action_names": [],
            "last": {},
            "round": self._round,
            "waiting": self.waiting,
        }

    def _with_round(self, state: dict[str, Any]) -> dict[str, Any]:
        return {**state, "round": self._round}


class HumanRounds:
    """A :class:`~clonekit.interactive.loop.RoundPlayer` whose rounds a person plays on the live page of ``host``.

    ``run_dir`` is the run's directory (the rounds' sessions go under ``run_dir/human``); ``log`` is told when a
    round waits for the person and when it is saved.
    """

    name = "human"

    def __init__(self, host: LiveHost, run_dir: str | Path, log: Callable[[str], None] | None = None) -> None:
        self.host, self.run_dir, self.log = host, Path(run_dir), log
        self.poll_seconds = 0.2

    def play(self, round_to_play: RoundToPlay) -> RoundPlay:
        ids = np.asarray(round_to_play.episode_ids, dtype=np.int64)
        first, index = int(ids[0]), round_to_play.index
        round_to_play.policy.eval()
        session = LiveSession(
            round_to_play.policy,
            round_to_play.family,
            round_to_play.env_kwargs,
            round_to_play.tasks,
            self.run_dir / HUMAN_DIR / f"round_{index}",
            max_episodes=len(ids),
            max_steps=round_to_play.max_steps,
            first_episode=first,
            seed=round_to_play.seed,
            label_budget=round_to_play.labels_left,
        )
        self.host.open_round(index, session)
        left = len(ids) - session.committed
        self._say(f"round {index}: play {left} episode{'' if left == 1 else 's'} on the live page")
        try:
            while not session.finished.wait(self.poll_seconds):  # short waits: Ctrl+C stays responsive
                pass
        finally:
            self.host.close_round(f"round {index} is saved; the next policy is training")
            session.close()
        return round_play(session.dataset(), first, len(round_to_play.tasks))

    def _say(self, line: str) -> None:
        if self.log is not None:
            self.log(line)


def round_play(dataset: Dataset | None, first_episode: int, num_tasks: int) -> RoundPlay:
    """A round's episodes from its live session's dataset: episode ``j`` played task ``(first_episode + j) %
    num_tasks``, and every intervention step was one label."""
    episodes = []
    if dataset is not None:
        for j in range(dataset.num_episodes):
            steps = dataset.episode(j)
            episodes.append(({name: np.array(steps[name]) for name in STEP_KEYS}, (first_episode + j) % num_tasks))
    labels = sum(int(episode["intervention"].sum()) for episode, _ in episodes)
    return RoundPlay(episodes, labels)


@contextmanager
def live_page(
    host: LiveHost,
    browse: Browse,
    hostname: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    step_interval: float = 0.25,
) -> Iterator[str]:
    """Serve the page for ``host`` (and the viewer of ``browse``) from a background thread while the block runs;
    yields the live page's URL. Checks the bind (a non-local one needs ``token``) and the ``ui`` extra first."""
    check_bind(hostname, token)
    require_ui()
    if not step_interval > 0:
        raise ConfigError(f"--step-interval: expected a number of seconds > 0, got {step_interval}")
    _check_free(hostname, port)
    import uvicorn

    app = make_app(browse, token, live=host, step_interval=step_interval)
    server = uvicorn.Server(uvicorn.Config(app, host=hostname, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="clonekit-live-page", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise ConfigError(f"--host {hostname} --port {port}: the live page could not listen there (in use?)")
        time.sleep(0.05)
    try:
        yield f"http://{hostname}:{port}/live" + (f"?token={token}" if token else "")
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _check_free(hostname: str, port: int) -> None:
    """A one-line ``ConfigError`` when ``hostname:port`` cannot be listened on (e.g. in use), before the server
    tries and logs its own lines."""
    family = socket.AF_INET6 if ":" in hostname else socket.AF_INET
    try:
        socket.create_server((hostname, port), family=family).close()
    except OSError as err:
        raise ConfigError(f"--host {hostname} --port {port}: cannot listen there ({err.strerror or err})") from err


def run_with_person(
    method: str,
    data: str | Path | Dataset,
    out: str | Path,
    rounds: int,
    seed: int = 0,
    config: InteractiveConfig | None = None,
    hostname: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    step_interval: float = 0.25,
    show_progress: bool = False,
    log: Callable[[str], None] | None = None,
    hook: RoundHook | None = None,
) -> InteractiveRun:
    """:func:`~clonekit.interactive.loop.run_interactive` with a person as the intervener: the live page is
    served at ``hostname:port`` (``token`` required beyond this machine) for the whole run, and each round waits
    for its episodes to be played there (see the module docstring)."""
    check_method(method)
    check_player_method(method)
    check_bind(hostname, token)
    source = data if isinstance(data, Dataset) else Dataset.open(data)
    host = LiveHost()
    with live_page(host, Browse(source.path), hostname, port, token, step_interval) as url:
        if log is not None:
            log(f"the live page is at {url} (Ctrl+C stops; the same command resumes)")
        host.set_waiting("round 0's policy is training")
        player = HumanRounds(host, out, log)
        run = run_interactive(method, source, out, rounds, seed, config, show_progress, log, hook, player=player)
        host.set_waiting("the run has finished")
        return run


__all__ = ["HUMAN_DIR", "HumanRounds", "LiveHost", "live_page", "round_play", "run_with_person"]
