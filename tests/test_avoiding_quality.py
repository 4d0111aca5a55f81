"""avoiding-quality: the continuous detectors on a crafted dataset with known answers, curation by what they find
(the source untouched), the pollution injectors' ground truth, and the experiment end to end on tiny settings."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from clonekit.cli import main
from clonekit.data import Dataset, DatasetWriter, array_stream, text_stream
from clonekit.envs.avoiding import MAX_STEP, AvoidingTask
from clonekit.errors import ConfigError
from clonekit.experiments import get_experiment
from clonekit.experiments.avoiding_pollution import AvoidingPollutionConfig, play_episode
from clonekit.experiments.avoiding_quality import DETECTORS, POLICIES, QUICK
from clonekit.quality.continuous import curate_detected, detect_continuous_defects, near_loop_steps
from clonekit.quality.curate import curate
from tests.conftest import assert_one_error_line, tree_hash

HEADING = np.array([0.6, 0.8])
NOISE_AT = (9,)  # noisy_j1 turns its heading at this step (then goes on in parallel, off the others' lines)
IDLE_AT = range(5, 9)  # wanderer_j2 holds still at these steps ...
EXCURSION_AT = range(12, 18)  # ... and goes 3 steps out and 3 back at these


def _episode(kind: str, x0: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Positions, actions and the truth per step of one crafted episode: 20 steps along ``HEADING`` (jitter
    0.05), with the defects of ``kind`` at known steps."""
    pos = np.array([x0, 0.0])
    obs: list[np.ndarray] = []
    actions: list[np.ndarray] = []
    truth: list[str] = []
    plan: list[tuple[str, np.ndarray]] = []
    t = 0
    while len(actions) < 20 + (10 if kind == "wanderer" else 0):
        action, mark = HEADING + rng.normal(0, 0.05, 2), ""
        if kind == "noisy" and t in NOISE_AT:
            turn = np.deg2rad(120)
            action = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]]) @ HEADING
            mark = "noise"
        if kind == "axis":
            action = np.array([1.0, 0.0]) if t % 2 else np.array([0.0, 1.0])
            mark = "style"
        if kind == "wanderer" and t in IDLE_AT:
            action, mark = rng.normal(0, 0.05, 2), "idle"
        if kind == "wanderer" and t == EXCURSION_AT[0]:
            anchor, side = pos.copy(), np.array([-0.8, 0.6])
            plan = [("out", side)] * 3 + [("back", anchor)] * 3
        if kind == "wanderer" and plan:
            step, where = plan.pop(0)
            left = sum(1 for s, _ in plan if s == "back") + 1
            action = where if step == "out" else (where - pos) / (MAX_STEP * left)
            mark = "detour"
        obs.append(pos.copy())
        actions.append(action)
        truth.append(mark)
        pos = pos + MAX_STEP * action
        t += 1
    return np.asarray(obs, np.float32), np.asarray(actions, np.float32), truth


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, np.ndarray]:
    """Joystick demonstrators (one clean, one noisy, one wandering, plus a clean twin) and one on arrow keys,
    each from the same 8 starts; returns the dataset and the truth per step."""
    rng = np.random.default_rng(0)
    streams = [
        array_stream("obs", "float32", (2,)),
        array_stream("action", "float32", (2,)),
        array_stream("reward", "float32", ()),
        array_stream("terminated", "bool", ()),
        array_stream("truncated", "bool", ()),
        text_stream("demonstrator", "who"),
    ]
    truth: list[str] = []
    path = tmp_path_factory.mktemp("crafted") / "data"
    with DatasetWriter(path, streams) as writer:
        for x0 in np.linspace(-0.1, 0.1, 8):
            for who in ("expert_j0", "noisy_j1", "wanderer_j2", "expert_j3", "axis_a0"):
                obs, actions, marks = _episode(who.split("_")[0], float(x0), rng)
                n = len(actions)
                done = np.arange(n) == n - 1
                writer.add_episode(
                    {
                        "obs": obs,
                        "action": actions,
                        "reward": done.astype(np.float32),
                        "terminated": done,
                        "truncated": np.zeros(n, dtype=bool),
                        "demonstrator": [who] * n,
                    }
                )
                truth += marks
    return Dataset.open(path), np.asarray(truth, dtype=object)


def test_each_detector_finds_exactly_the_crafted_defects(crafted: tuple[Dataset, np.ndarray]) -> None:
    data, truth = crafted
    found = detect_continuous_defects(data)
    assert np.array_equal(found.idle_steps, truth == "idle")
    assert np.array_equal(found.detour_steps, truth == "detour")
    assert np.array_equal(found.noise_steps, truth == "noise")
    assert found.incompatible == ["axis_a0"]
    agreement = {who: float(row["agreement"] or 0.0) for who, row in found.demonstrators.items()}
    assert agreement.pop("axis_a0") < 0.2 and min(agreement.values()) > 0.8


def test_near_loops_keep_short_back_and_forth_apart_from_detours() -> None:
    # 2 steps forward, 1 back and 1 forward again (a mistake undone: a 2-step loop), then 3 out and 3 back.
    moves = [(0, 1), (0, 1), (0, -1), (0, 1), (1, 0), (1, 0), (1, 0), (-1, 0), (-1, 0), (-1, 0), (0, 1)]
    points = np.cumsum([(0, 0), *moves], axis=0).astype(float)
    assert near_loop_steps(points, 0.5, min_steps=5).tolist() == [False] * 4 + [True] * 6 + [False] * 2
    assert near_loop_steps(points, 0.5).sum() == 8  # without a length bar the undone mistake counts too


def test_curating_what_was_found_cuts_and_drops_it_and_leaves_the_source(
    crafted: tuple[Dataset, np.ndarray], tmp_path: Path
) -> None:
    data, truth = crafted
    before = tree_hash(data.path)
    found = detect_continuous_defects(data)
    new = curate_detected(data, tmp_path / "curated", found)
    assert tree_hash(data.path) == before
    assert "axis_a0" not in {str(w) for w in new.column("demonstrator")}
    kept = (truth != "style") & (truth != "idle") & (truth != "detour") & (truth != "noise")
    assert new.num_steps == int(kept.sum()) and new.num_episodes == 32
    log = new.extra["curation"]
    assert {entry["filter"] for entry in log["cut"]} == {"idle", "detour", "noise"}
    assert {entry["reason"] for entry in log["removed"]} == {"demonstrator axis_a0 dropped"}


def test_curate_refuses_step_flags_of_another_length(crafted: tuple[Dataset, np.ndarray], tmp_path: Path) -> None:
    data, _ = crafted
    with pytest.raises(ConfigError, match=r"cut_steps\['noise'\]: expected 880 step flags"):
        curate(data, tmp_path / "bad", [], cut_steps={"noise": np.zeros(3, dtype=bool)})
    assert not (tmp_path / "bad").exists()


def test_injectors_write_the_ground_truth_they_claim() -> None:
    config = AvoidingPollutionConfig(detour_rate=0.3, noise_rate=0.3)
    seen: set[str] = set()
    for k, start in enumerate([(0.0, 0.0), (-0.08, 0.03), (0.07, 0.01)]):
        for kind in ("expert", "noisy", "wanderer", "axis"):
            episode = play_episode(AvoidingTask(start), kind, config, seed=k)
            marks, actions, obs = np.asarray(episode["defect"], object), episode["action"], episode["obs"]
            seen |= set(marks.tolist())
            if kind == "expert":
                assert set(marks.tolist()) == {""}
            if kind == "axis":  # every action along one axis at full speed
                assert set(marks.tolist()) == {"style"}
                assert np.array_equal(np.sort(np.abs(actions), axis=1), np.tile([0.0, 1.0], (len(actions), 1)))
            if kind == "noisy":  # a turned step points elsewhere than the clean step after it
                turned = np.flatnonzero((marks[:-1] == "noise") & (marks[1:] == ""))
                assert len(turned) and (np.linalg.norm(actions[turned] - actions[turned + 1], axis=1) > 0.5).all()
            if kind == "wanderer":
                for mark in ("idle", "detour"):
                    inside = np.concatenate([[False], marks == mark, [False]]).astype(np.int8)
                    edges = np.flatnonzero(np.diff(inside))
                    for a, b in zip(edges[::2], edges[1::2], strict=True):
                        if mark == "detour":  # back where it left, to float precision
                            assert b - a >= 6 and np.abs(obs[b] - obs[a]).max() < 1e-3
                        else:  # barely moved
                            assert b - a >= 4 and np.abs(np.diff(obs[a : b + 1], axis=0)).max() < 0.5 * MAX_STEP
    assert seen == {"", "noise", "idle", "detour", "style"}


def test_avoiding_quality_end_to_end_on_a_tiny_config(tmp_path: Path, one_torch_thread: None) -> None:
    spec = get_experiment("avoiding-quality")
    tiny = replace(QUICK, train_starts=3, hidden_sizes=(16,), steps=10, batch_size=32, test_starts=4, eval_episodes=8)
    results = spec.run(tmp_path, 0, True, show_progress=False, log=lambda m: None, config=tiny)
    assert set(results["metrics"]) == set(POLICIES) | set(DETECTORS)
    for key in POLICIES:
        cell = results["metrics"][key]["test"]["success"]
        assert cell["n"] == 8 and cell["n_tasks"] == 4 and cell["ci95"][0] <= cell["mean"] <= cell["ci95"][1]
    for key in DETECTORS:
        assert set(results["metrics"][key]["train"]) == {"precision", "recall", "f1"}
    steps = {key: results["metrics"][key]["test"]["data_steps"]["mean"] for key in POLICIES}
    assert steps["bc_bestofn"] < steps["bc_curated"] < steps["bc_raw"]  # one episode per start; cut and dropped
    assert (tmp_path / "report.md").exists() and (tmp_path / "avoiding_quality.png").exists()
    again = spec.run(tmp_path, 0, True, show_progress=False, log=lambda m: None, config=tiny)  # resumed: same
    assert again["metrics"] == results["metrics"]


def test_cli_rejects_bad_settings_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "avoiding-quality", "--out", str(tmp_path), "--quick", "--set", "noise_rate=2"])
    assert_one_error_line(code, capsys.readouterr().err, "noise_rate")
