"""Data quality: the report's measures on crafted datasets with known answers, curation, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from clonekit.cli import main
from clonekit.data import Dataset, DatasetWriter, array_stream
from clonekit.quality.curate import Filter, curate
from clonekit.quality.extraneous import episode_loop_steps, loop_steps, segments
from clonekit.quality.report import quality_report, state_keys
from tests.conftest import assert_one_error_line, tree_hash

CELLS = 8


def _write(
    path: Path,
    episodes: list[dict[str, Any]],
    continuous: bool = False,
    extra: dict[str, Any] | None = None,
) -> Dataset:
    """Line-world episodes: obs one-hot position ``(CELLS,)`` uint8; given actions, rewards, demonstrators."""
    streams = [
        array_stream("obs", "uint8", (CELLS,)),
        array_stream("action", "float32", (2,)) if continuous else array_stream("action", "int64"),
        array_stream("reward", "float32"),
        array_stream("terminated", "bool"),
        array_stream("truncated", "bool"),
        array_stream("demonstrator", "int64"),
    ]
    action_space = gym.spaces.Box(-1, 1, (2,), np.float32) if continuous else gym.spaces.Discrete(2)
    spaces = {"observation": gym.spaces.Box(0, 1, (CELLS,), np.uint8), "action": action_space}
    with DatasetWriter(path, streams, spaces=spaces, extra=extra or {}) as writer:
        for episode in episodes:
            writer.add_episode(episode)
    return Dataset.open(path)


def _episode(actions: np.ndarray, who: int, success: bool = True) -> dict[str, Any]:
    length = len(actions)
    positions = np.arange(length) % CELLS
    end = np.eye(length, dtype=bool)[-1]
    return {
        "obs": np.eye(CELLS, dtype=np.uint8)[positions],
        "action": actions,
        "reward": end.astype(np.float32) * (1.0 if success else 0.0),
        "terminated": end & success,
        "truncated": end & (not success),
        "demonstrator": np.full(length, who),
    }


def _noisy(rng: np.random.Generator, noise: float, episodes: int = 20) -> list[dict[str, Any]]:
    """The expert always goes right (1); with probability ``noise`` a step's action is left (0) instead."""
    return [_episode((rng.random(CELLS) >= noise).astype(np.int64), who=0) for _ in range(episodes)]


def test_action_conflict_ranks_three_noise_levels_in_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    conflicts = []
    for noise in (0.0, 0.2, 0.5):
        report = quality_report(_write(tmp_path / f"noise{noise}", _noisy(rng, noise)))
        assert report["state_keys"] == "exact" and report["action_conflict"]["unit"] == "bits"
        conflicts.append(report["action_conflict"]["value"])
    assert conflicts[0] == 0.0 and conflicts[0] < conflicts[1] < conflicts[2] <= 1.0, conflicts
    assert conflicts[2] > 0.9  # p = 0.5: about one bit


def test_coverage_and_diversity_have_their_known_values(tmp_path: Path) -> None:
    same = [_episode(np.ones(CELLS, dtype=np.int64), who=0) for _ in range(4)]  # four copies of one episode
    report = quality_report(_write(tmp_path / "same", same))
    assert report["unique_state_fraction"] == pytest.approx(CELLS / (4 * CELLS))
    assert report["transition_diversity"] == pytest.approx((CELLS - 1) / (4 * (CELLS - 1)))
    assert report["episodes"] == 4 and report["success"] == 1.0 and report["length"]["mean"] == CELLS
    assert report["annotation_coverage"] == {"demonstrator": 0.0}  # demonstrator 0 everywhere: no non-zero step


def test_an_incompatible_demonstrator_has_low_agreement_and_curation_removes_it(tmp_path: Path) -> None:
    right, left = np.ones(CELLS, dtype=np.int64), np.zeros(CELLS, dtype=np.int64)
    episodes = [_episode(right, who) for who in (0, 1, 2) for _ in range(3)] + [_episode(left, 3) for _ in range(3)]
    source = _write(tmp_path / "mixed", episodes, extra={"splits": {"train": list(range(10)), "valid": [10, 11]}})
    rows = quality_report(source)["demonstrators"]
    assert [rows[w]["agreement_with_others"] for w in "0123"] == [1.0, 1.0, 1.0, 0.0]
    before = tree_hash(source.path)
    curated = curate(source, tmp_path / "curated", [Filter.parse("min-agreement:0.5")])
    assert tree_hash(source.path) == before  # the source is only read
    assert curated.num_episodes == 9 and set(np.asarray(curated.column("demonstrator")).tolist()) == {0, 1, 2}
    log = curated.extra["curation"]
    assert log["source_fingerprint"] == source.fingerprint and [r["episode"] for r in log["removed"]] == [9, 10, 11]
    assert all(r["reason"] == "demonstrator 3 agreement 0.000 < 0.5" for r in log["removed"])
    assert curated.extra["splits"] == {"train": list(range(9)), "valid": []}  # renumbered to the kept episodes


def test_outcome_filters_keep_what_they_say(tmp_path: Path) -> None:
    episodes = [_episode(np.ones(3 + k, dtype=np.int64), who=k % 2, success=k % 3 != 0) for k in range(6)]
    for k, episode in enumerate(episodes):
        episode["reward"] = episode["reward"] * 0 + np.float32(k) / len(episode["reward"])  # return k
    source = _write(tmp_path / "src", episodes)
    kept = curate(source, tmp_path / "a", [Filter.parse("success"), Filter.parse("top-k:2")])
    assert kept.episode_lengths.tolist() == [7, 8]  # successes 1, 2, 4, 5; the two best returns, in order: 4, 5
    kept = curate(source, tmp_path / "b", [Filter.parse("min-return:2.5"), Filter.parse("drop-demonstrator:1")])
    assert kept.episode_lengths.tolist() == [7]  # returns 3, 4, 5; demonstrators 1, 0, 1
    reasons = {r["episode"]: r["reason"] for r in kept.extra["curation"]["removed"]}
    assert reasons[0] == "return 0 < 2.5" and reasons[3] == "demonstrator 1 dropped"


def test_continuous_actions_use_quantized_states_and_action_gaps(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    calm = [_episode(np.tile([0.5, -0.5], (CELLS, 1)).astype(np.float32), who=0) for _ in range(5)]
    wild = [_episode(rng.uniform(-1, 1, (CELLS, 2)).astype(np.float32), who=1) for _ in range(5)]
    report = quality_report(_write(tmp_path / "cont", calm + wild, continuous=True))
    assert report["action_conflict"]["unit"] == "std ratio" and report["action_conflict"]["value"] > 0.3
    rows = report["demonstrators"]
    assert rows["1"]["action_gap"] > rows["0"]["action_gap"] > 0  # the wild one is further from the others


def test_cli_inspect_quality_and_curate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _write(tmp_path / "data", _noisy(np.random.default_rng(2), 0.2, episodes=6))
    assert main(["inspect", str(source.path), "--quality", "--json", "--out", str(tmp_path / "q")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads((tmp_path / "q" / "quality.json").read_text())
    assert {"report.md", "histograms.png", "coverage.png"} <= {p.name for p in (tmp_path / "q").iterdir()}
    assert main(["inspect", str(source.path), "--quality"]) == 0
    assert "action conflict" in capsys.readouterr().out
    assert main(["curate", str(source.path), "--out", str(tmp_path / "c"), "--filter", "top-k:2"]) == 0
    assert "kept 2 of 6 episodes" in capsys.readouterr().out
    code = main(["curate", str(source.path), "--out", str(tmp_path / "d"), "--filter", "best"])
    assert_one_error_line(code, capsys.readouterr().err, "--filter: expected one of success")
    code = main(["curate", str(source.path), "--out", str(tmp_path / "d"), "--filter", "min-return:99"])
    assert_one_error_line(code, capsys.readouterr().err, "every episode")
    assert not (tmp_path / "d").exists()


def test_loop_steps_cut_back_to_the_first_visit() -> None:
    states = np.array([0, 1, 2, 1, 2, 3, 3, 4])
    assert loop_steps(states).tolist() == [False, True, True, False, False, True, False, False]
    assert segments(loop_steps(states)) == [(1, 3), (5, 6)]
    assert not loop_steps(np.arange(5)).any()


def _wandering(rng: np.random.Generator, episodes: int, rate: float) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Walks right along the line; at each cell, with probability ``rate`` a detour (right, then left back) and
    with probability ``rate`` an idle step (stay) first. Returns the episodes and the injected-step mask.

    (Equally short cuts can differ: a detour left, to a cell the walk already left, closes a loop that starts at
    the step before it; the detector cuts that one. Detours here go ahead, so the injected steps are the loop.)"""
    out, truth = [], []
    for _ in range(episodes):
        positions, actions, injected = [], [], []
        for cell in range(CELLS - 1):
            if rng.random() < rate:  # right to cell + 1, left back to cell
                positions += [cell, cell + 1]
                actions += [1, 0]
                injected += [True, True]
            if rng.random() < rate:
                positions.append(cell)
                actions.append(2)
                injected.append(True)
            positions.append(cell)
            actions.append(1)
            injected.append(False)
        episode = _episode(np.asarray(actions, dtype=np.int64), who=0)
        episode["obs"] = np.eye(CELLS, dtype=np.uint8)[positions]
        out.append(episode)
        truth += injected
    return out, np.asarray(truth)


def test_the_loop_detector_finds_injected_detours_and_idling_and_cut_loops_removes_them(tmp_path: Path) -> None:
    episodes, truth = _wandering(np.random.default_rng(3), episodes=30, rate=0.15)
    source = _write(tmp_path / "wander", episodes)
    states, _ = state_keys(np.asarray(source.column("obs")))
    found = episode_loop_steps(states, source.episode_starts, source.episode_lengths)
    precision = (found & truth).sum() / found.sum()
    recall = (found & truth).sum() / truth.sum()
    assert truth.sum() > 50 and 2 * precision * recall / (precision + recall) >= 0.8, (precision, recall)
    report = quality_report(source)
    assert report["extraneous_steps"]["fraction"] == pytest.approx(found.mean())
    clean = curate(source, tmp_path / "clean", [Filter.parse("cut-loops")])
    assert clean.num_steps == source.num_steps - int(found.sum()) and clean.num_episodes == 30
    assert quality_report(clean)["extraneous_steps"]["fraction"] == 0.0
    assert (np.asarray(clean.column("action")) == 1).all()  # what is left is the straight walk
    assert clean.extra["curation"]["cut"][0]["filter"] == "cut-loops"
