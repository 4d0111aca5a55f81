"""Self-improvement of a thinking policy (its own thoughts recorded with every attempt) and ``maze-cognitive``:
thought cloning primed with or without cognitive thoughts, then STaR rounds."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from clonekit.checkpoint import load_policy
from clonekit.data import Dataset
from clonekit.envs.maze import ACTION_NAMES
from clonekit.errors import ConfigError
from clonekit.experiments.maze_cognitive import QUICK, plain_thoughts, run, shows_backtracking
from clonekit.policies import build_policy
from clonekit.quality.improve import ImproveConfig, improve

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = replace(
    QUICK,
    size=5,
    train_mazes=4,
    demo_episodes=4,
    test_mazes=2,
    rounds=1,
    attempts=3,
    demo_steps=3,
    round_steps=2,
    batch_size=4,
    window=12,
    hidden_size=16,
    eval_episodes=2,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A tiny ``maze-cognitive`` run (5x5 mazes, a few gradient steps): its directory and results."""
    root = tmp_path_factory.mktemp("cognitive")
    return root, run(root, seed=0, quick=True, show_progress=False, log=lambda line: None, config=TINY)


def test_thought_cloning_action_logits_are_what_act_takes_the_argmax_of() -> None:
    policy = build_policy("thought_cloning", {"obs_shape": [3, 5, 5], "num_actions": 4, "thought_vocab": ["a", "b"]})
    obs = torch.rand(6, 3, 5, 5)
    state_a, state_l = policy.initial_state(6), policy.initial_state(6)
    for _ in range(3):
        action, state_a = policy.act({"obs": obs}, state_a)
        logits, state_l = policy.action_logits({"obs": obs}, state_l)
        assert logits.shape == (6, 4)
        torch.testing.assert_close(logits.argmax(-1), action)
        for mine, theirs in zip(state_l, state_a, strict=True):
            torch.testing.assert_close(mine, theirs)
        obs = torch.rand(6, 3, 5, 5)


def test_improve_round_records_the_thoughts_the_policy_explained(tiny_run: tuple[Path, dict[str, Any]]) -> None:
    root, results = tiny_run
    thinking_run = root / "runs" / "primed" / "round_0"  # thought cloning on the dfs-thoughts demonstrations
    data = Dataset.open(root / "runs" / "primed" / "star" / "data-001")
    demos = Dataset.open(root / "data" / "primed")
    assert "thought" in data.streams
    marks = [data.column("source")[int(s)] for s in data.episode_starts]
    assert marks[: demos.num_episodes] == ["demo"] * demos.num_episodes
    for k in range(demos.num_episodes):  # the demonstrations keep their own thoughts
        assert list(data.episode(k)["thought"]) == list(demos.episode(k)["thought"])
    own = [k for k, mark in enumerate(marks) if mark == "self:1"]
    assert len(own) == results["rounds"]["primed"][0]["successes"] > 0
    policy = load_policy(thinking_run)
    for k in own:  # replay the kept attempt: at each step the policy explains the thought that was recorded
        episode = data.episode(k)
        obs = torch.as_tensor(np.array(episode["obs"]))
        state = policy.initial_state(1)
        explained = []
        with torch.inference_mode():
            for t in range(len(obs)):
                explanation = policy.explain({"obs": obs[t : t + 1]}, state)
                assert explanation is not None
                explained += explanation["thought"]
                _, state = policy.act({"obs": obs[t : t + 1]}, state)  # the state does not depend on the action
        assert list(episode["thought"]) == explained and all(explained)
    assert (root / "runs" / "primed" / "star" / "round_1" / "model.safetensors").is_file()


def test_failure_prefixes_are_refused_for_a_policy_that_trains_on_whole_episodes(
    tiny_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    thinking_run = tiny_run[0] / "runs" / "primed" / "round_0"
    with pytest.raises(ConfigError, match="failures"):
        improve(thinking_run, tmp_path / "star", rounds=1, config=ImproveConfig(failures="prefix"))
    assert not (tmp_path / "star").exists()


def test_plain_thoughts_keep_every_action_and_drop_only_the_cognitive_words(
    tiny_run: tuple[Path, dict[str, Any]],
) -> None:
    primed = Dataset.open(tiny_run[0] / "data" / "primed")
    plain = Dataset.open(tiny_run[0] / "data" / "plain")
    assert plain.num_episodes == primed.num_episodes
    np.testing.assert_array_equal(np.asarray(plain.column("action")), np.asarray(primed.column("action")))
    np.testing.assert_array_equal(np.asarray(plain.column("obs")), np.asarray(primed.column("obs")))
    actions = np.asarray(primed.column("action"))
    assert list(plain.column("thought")) == [f"move {ACTION_NAMES[a]}" for a in actions]
    primed_thoughts = [list(primed.episode(k)["thought"]) for k in range(primed.num_episodes)]
    assert any(shows_backtracking(t) for t in primed_thoughts)
    assert not any(shows_backtracking(list(plain.episode(k)["thought"])) for k in range(plain.num_episodes))
    assert plain_thoughts(primed, tiny_run[0] / "data" / "plain").fingerprint == plain.fingerprint  # reused


def test_maze_cognitive_writes_its_contract(tiny_run: tuple[Path, dict[str, Any]]) -> None:
    root, results = tiny_run
    assert list(results["metrics"]) == ["primed_round_0", "primed_round_1", "plain_round_0", "plain_round_1"]
    for cell in results["metrics"].values():
        assert set(cell) == {"test", "train"}
        for metric in ("success", "backtrack_thoughts", "length"):
            assert {"mean", "ci95", "n"} <= set(cell["test"][metric])
    assert set(results["rounds"]) == {"primed", "plain"}
    assert json.loads((root / "results.json").read_text())["experiment"] == "maze-cognitive"
    assert (root / "rounds.png").is_file() and "plain_round_1" in (root / "report.md").read_text()
