"""D4RL-style flat HDF5: import of files made elsewhere (episodes split at terminals | timeouts, spaces derived),
an exact clonekit -> d4rl -> clonekit round trip, and one-line CLI errors for bad files (the source untouched)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import numpy as np
import pytest

from clonekit.cli import main
from clonekit.data import Dataset, DatasetWriter, array_stream, text_stream
from clonekit.data.convert import convert, detect_format
from clonekit.errors import DatasetError
from tests.conftest import assert_one_error_line, tree_hash

# Three episodes of 4, 3 and 2 steps: the first ends in a terminal state, the second at a timeout, the third
# stops without either flag (the file ends mid-episode).
LENGTHS = (4, 3, 2)
N = sum(LENGTHS)


def flat_arrays(seed: int = 0) -> dict[str, Any]:
    """The top-level datasets of a D4RL-style file, plus infos and metadata as D4RL files carry them."""
    rng = np.random.default_rng(seed)
    terminals = np.zeros(N, dtype=bool)
    timeouts = np.zeros(N, dtype=bool)
    terminals[3] = True
    timeouts[6] = True
    observations = rng.normal(size=(N, 3)).astype(np.float32)
    return {
        "observations": observations,
        "next_observations": observations + 1,
        "actions": rng.uniform(-0.5, 0.5, size=(N, 2)).astype(np.float32),
        "rewards": rng.normal(size=N),  # float64, as some D4RL files store them
        "terminals": terminals,
        "timeouts": timeouts,
        "infos/goal": rng.normal(size=(N, 2)),
        "infos/sim/qpos": rng.normal(size=(N, 4)).astype(np.float32),
        "metadata/algorithm": np.bytes_("SAC"),
    }


def write_flat(path: Path, arrays: dict[str, Any]) -> Path:
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    return path


def test_flat_file_becomes_episodes_streams_and_spaces(tmp_path: Path) -> None:
    arrays = flat_arrays()
    src = write_flat(tmp_path / "hopper.hdf5", arrays)
    before = tree_hash(src)
    assert detect_format(src) == "d4rl"

    warnings = convert(src, tmp_path / "ck", "clonekit")
    assert tree_hash(src) == before
    assert any("last 2 rows (7 to 8)" in w and "truncated" in w for w in warnings), warnings
    assert any("metadata: skipped" in w for w in warnings), warnings
    assert all("\n" not in w for w in warnings)

    dataset = Dataset.open(tmp_path / "ck")
    assert dataset.episode_lengths.tolist() == list(LENGTHS)
    assert list(dataset.streams) == [
        *("obs", "action", "reward", "terminated", "truncated"),
        *("next_obs", "goal", "sim.qpos"),  # infos/goal and infos/sim/qpos, nested keys joined by "."
    ]
    assert dataset.streams["goal"].dtype == "float64" and dataset.streams["sim.qpos"].shape == (4,)
    np.testing.assert_array_equal(dataset.column("obs"), arrays["observations"])
    np.testing.assert_array_equal(dataset.column("next_obs"), arrays["next_observations"])
    np.testing.assert_array_equal(dataset.column("action"), arrays["actions"])
    np.testing.assert_array_equal(dataset.column("reward"), arrays["rewards"].astype(np.float32))
    np.testing.assert_array_equal(dataset.column("sim.qpos"), arrays["infos/sim/qpos"])
    assert np.flatnonzero(dataset.column("terminated")).tolist() == [3]
    assert np.flatnonzero(dataset.column("truncated")).tolist() == [6, 8]  # the open last episode is truncated
    assert dataset.space("observation") == gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    assert dataset.space("action") == gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    assert dataset.extra == {"converted_from": {"format": "d4rl"}}
    dataset.verify()


def test_integer_actions_give_a_discrete_space_and_a_file_ending_on_a_flag_needs_no_warning(tmp_path: Path) -> None:
    arrays = flat_arrays()
    arrays["actions"] = np.array([0, 2, 1, 1, 0, 2, 2, 1, 0], dtype=np.int64)
    arrays["timeouts"][-1] = True
    del arrays["metadata/algorithm"]
    src = write_flat(tmp_path / "discrete.hdf5", arrays)
    warnings = convert(src, tmp_path / "ck", "clonekit")
    assert not any("without a terminal or timeout" in w for w in warnings), warnings
    dataset = Dataset.open(tmp_path / "ck")
    assert dataset.space("action") == gym.spaces.Discrete(3)
    assert dataset.episode_lengths.tolist() == list(LENGTHS)


@pytest.fixture
def handmade(tmp_path: Path) -> Path:
    """A clonekit dataset with a uint8 image obs, text and bool annotations and three episode info columns."""
    rng = np.random.default_rng(2)
    streams = [
        array_stream("obs", "uint8", (2, 3, 3)),
        array_stream("action", "int64"),
        array_stream("reward", "float32"),
        array_stream("terminated", "bool"),
        array_stream("truncated", "bool"),
        text_stream("thought"),
        array_stream("intervention", "bool"),
        array_stream("procedure", "int16", (2, 3)),
    ]
    out = tmp_path / "handmade"
    spaces = {"observation": gym.spaces.Box(0, 255, (2, 3, 3), np.uint8), "action": gym.spaces.Discrete(4)}
    with DatasetWriter(out, streams, spaces=spaces, env={"id": "toy"}, episode_info=("task", "score", "n")) as w:
        for i, length in enumerate((3, 1, 5)):
            flags = np.zeros(length, dtype=bool)
            flags[-1] = True
            w.add_episode(
                {
                    "obs": rng.integers(0, 256, size=(length, 2, 3, 3), dtype=np.uint8),
                    "action": rng.integers(0, 4, size=length),
                    "reward": rng.normal(size=length),
                    "terminated": flags & (i != 1),  # episode 1 is cut short, the others terminate
                    "truncated": flags & (i == 1),
                    "thought": [f"step {t} ünï" for t in range(length)],
                    "intervention": rng.random(length) < 0.5,
                    "procedure": rng.integers(-1, 6, size=(length, 2, 3), dtype=np.int16),
                },
                {"task": f"t{i}", "score": 0.5 * i, "n": i},
            )
    return out


def test_round_trip_through_d4rl_is_exact(handmade: Path, tmp_path: Path) -> None:
    before = tree_hash(handmade)
    assert convert(handmade, tmp_path / "flat.hdf5", "d4rl") == []
    assert detect_format(tmp_path / "flat.hdf5") == "d4rl"
    with h5py.File(tmp_path / "flat.hdf5", "r") as f:  # what D4RL tools read
        assert f["observations"].shape == (9, 2, 3, 3) and f["actions"].dtype == np.int64
        assert np.flatnonzero(f["terminals"][()] | f["timeouts"][()]).tolist() == [2, 3, 8]
        assert sorted(f["infos"]) == ["intervention", "procedure", "thought"]
        assert json.loads(f.attrs["clonekit"])["episode_info_values"]["task"] == ["t0", "t1", "t2"]

    assert convert(tmp_path / "flat.hdf5", tmp_path / "back", "clonekit") == []
    original, back = Dataset.open(handmade), Dataset.open(tmp_path / "back")
    assert back.fingerprint == original.fingerprint  # same column bytes and episode index
    for key in ("streams", "spaces", "env", "episode_info", "extra"):
        assert back.meta[key] == original.meta[key], key
    assert back.column("thought") == original.column("thought")
    assert tree_hash(handmade) == before


def test_export_refuses_episodes_the_flat_layout_cannot_delimit(tmp_path: Path) -> None:
    src = tmp_path / "open"
    streams = [array_stream("obs", "float32", (1,)), array_stream("action", "int64"), array_stream("reward", "float32")]
    streams += [array_stream("terminated", "bool"), array_stream("truncated", "bool")]
    with DatasetWriter(src, streams) as writer:
        steps = {"obs": np.zeros((3, 1)), "action": np.zeros(3, dtype=np.int64), "reward": np.zeros(3)}
        writer.add_episode(steps | {"terminated": np.zeros(3, dtype=bool), "truncated": np.zeros(3, dtype=bool)})
    with pytest.raises(DatasetError, match=r"episode 0: cannot be stored in D4RL-style HDF5.*neither at its last"):
        convert(src, tmp_path / "open.hdf5", "d4rl")
    assert not (tmp_path / "open.hdf5").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize(
    "change, needles",
    [
        (lambda a: a.pop("timeouts"), ["timeouts", "found nothing"]),
        (lambda a: a.update(rewards=a["rewards"][:-1]), ["rewards", "expected 9 rows", "found 8"]),
        (lambda a: a["observations"].__setitem__((5, 1), np.nan), ["observations", "nan at row 5"]),
        (lambda a: a.update(terminals=np.where(a["terminals"], 1.0, np.nan)), ["terminals", "finite"]),
        (lambda a: a.update(actions=np.array(["x"] * N, dtype="S1")), ["actions", "numeric"]),
    ],
    ids=["missing-key", "short-rewards", "nan-observation", "nan-terminal", "text-actions"],
)
def test_bad_flat_files_give_one_error_line_naming_file_and_key(
    change: Any, needles: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arrays = flat_arrays()
    change(arrays)
    src = write_flat(tmp_path / "bad.hdf5", arrays)
    before = tree_hash(src)
    code = main(["convert", str(src), str(tmp_path / "out")])
    assert_one_error_line(code, capsys.readouterr().err, "bad.hdf5", *needles)
    assert not (tmp_path / "out").exists()
    assert tree_hash(src) == before
