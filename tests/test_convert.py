"""Conversions between clonekit, Minari and robomimic-style HDF5: exact round trips, imports from elsewhere, and
clean one-line errors for bad input (with the source left untouched)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import minari
import numpy as np
import pytest
from minari.data_collector import EpisodeBuffer

from clonekit.data import Dataset, DatasetWriter, array_stream, text_stream
from clonekit.data.convert import convert, detect_format
from clonekit.data.spaces import space_to_json
from clonekit.errors import ConfigError, DatasetError
from clonekit.experts.collect import collect

THOUGHTS = ["go left ← then up", "", "日本語 ok", "ünïcödé 🙂", "", "x", "done.", "", "last"]


@pytest.fixture(scope="module")
def maze(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real dataset: 6 BFS episodes on 2 maze tasks, with a `procedure` stream and episode info."""
    out = tmp_path_factory.mktemp("maze") / "m"
    collect("maze", "bfs", episodes=6, seed=0, out=out, num_tasks=2, show_progress=False)
    return out


@pytest.fixture(scope="module")
def handmade(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Float obs with a Box space, text `thought` (unicode, empty strings), bool `intervention`, 3 info columns."""
    out = tmp_path_factory.mktemp("handmade") / "h"
    rng = np.random.default_rng(0)
    streams = [
        array_stream("obs", "float32", (4,)),
        array_stream("action", "float32", (2,)),
        array_stream("reward", "float32"),
        array_stream("terminated", "bool"),
        array_stream("truncated", "bool"),
        text_stream("thought", "plan in words"),
        array_stream("intervention", "bool"),
        array_stream("expert_action", "float32", (2,)),
        array_stream("goal", "int64", (2,)),
    ]
    spaces = {
        "observation": space_to_json(gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)),
        "action": space_to_json(gym.spaces.Box(-1.0, 1.0, (2,), np.float32)),
    }
    writer = DatasetWriter(
        out,
        streams,
        spaces=spaces,
        env={"id": "handmade", "kwargs": {"size": 3}},
        episode_info=("task", "difficulty", "index"),
        extra={"note": "hand made ✓"},
    )
    first = 0
    with writer:
        for i, length in enumerate((1, 5, 3)):
            terminated = np.zeros(length, dtype=bool)
            truncated = np.zeros(length, dtype=bool)
            (terminated if i != 1 else truncated)[-1] = True
            writer.add_episode(
                {
                    "obs": rng.normal(size=(length, 4)).astype(np.float32),
                    "action": rng.uniform(-1, 1, size=(length, 2)).astype(np.float32),
                    "reward": rng.normal(size=length).astype(np.float32),
                    "terminated": terminated,
                    "truncated": truncated,
                    "thought": THOUGHTS[first : first + length],
                    "intervention": rng.random(length) < 0.5,
                    "expert_action": rng.uniform(-1, 1, size=(length, 2)).astype(np.float32),
                    "goal": rng.integers(-5, 5, size=(length, 2)),
                },
                {"task": f"task-{i}", "difficulty": 0.5 * i, "index": i},
            )
            first += length
    return out


def tree_hash(path: Path) -> str:
    """sha256 over the relative paths and bytes of every file under ``path`` (or of the file itself)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def assert_same_streams(a: Dataset, b: Dataset, streams: list[str]) -> None:
    """Same episode boundaries and, for each stream, bit-identical arrays (dtype and shape) or identical text."""
    np.testing.assert_array_equal(a.episode_lengths, b.episode_lengths)
    for name in streams:
        assert a.streams[name] == b.streams[name], name
        left, right = a.column(name), b.column(name)
        if isinstance(left, list):
            assert left == right, name
        else:
            assert isinstance(right, np.ndarray)
            assert (left.dtype, left.shape) == (right.dtype, right.shape), name
            assert left.tobytes() == right.tobytes(), name


@pytest.mark.parametrize("which", ["maze", "handmade"])
def test_hdf5_round_trip_is_exact(which: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    src: Path = request.getfixturevalue(which)
    before = tree_hash(src)
    warnings = convert(src, tmp_path / "d.hdf5", "hdf5")
    assert len(warnings) == 1 and "no 'next_obs' stream" in warnings[0]  # robomimic's next_obs is derived
    assert convert(tmp_path / "d.hdf5", tmp_path / "back", "clonekit") == []
    original, back = Dataset.open(src), Dataset.open(tmp_path / "back")
    assert list(back.streams) == list(original.streams)
    assert_same_streams(original, back, list(original.streams))
    for key in ("spaces", "env", "episode_info", "extra"):
        assert back.meta[key] == original.meta[key], key
    for name in original.meta["episode_info"]:
        assert back.episode_info(name).tolist() == original.episode_info(name).tolist()
    assert back.fingerprint == original.fingerprint  # same column bytes, so the same content hash
    assert tree_hash(src) == before


def test_hdf5_output_is_robomimic_style(handmade: Path, tmp_path: Path) -> None:
    convert(handmade, tmp_path / "d.hdf5", "hdf5")
    dataset = Dataset.open(handmade)
    with h5py.File(tmp_path / "d.hdf5", "r") as f:
        data = f["data"]
        assert sorted(data) == ["demo_0", "demo_1", "demo_2"]
        assert int(data.attrs["total"]) == dataset.num_steps
        env_args = json.loads(data.attrs["env_args"])
        assert env_args["env_name"] == "handmade"
        assert env_args["env"] == dataset.env and env_args["spaces"] == dataset.spaces
        demo = data["demo_1"]
        assert int(demo.attrs["num_samples"]) == 5
        assert demo["obs/obs"].shape == (5, 4) and demo["actions"].shape == (5, 2)
        assert demo["rewards"].dtype == np.float32 and demo["dones"].dtype == np.bool_
        assert list(demo["thought"].asstr()[()]) == THOUGHTS[1:6]
        assert demo.attrs["episode_info/task"] == "task-1"


def test_minari_round_trip_keeps_numeric_streams_and_drops_text(handmade: Path, tmp_path: Path) -> None:
    before = tree_hash(handmade)
    warnings = convert(handmade, tmp_path / "handmade-v0", "minari")
    dropped = [w for w in warnings if "dropped" in w]
    assert len(dropped) == 1 and "'thought'" in dropped[0]
    assert any("no 'next_obs' stream" in w for w in warnings)
    assert all("\n" not in w for w in warnings)

    # Minari itself reads it: T + 1 observations, the annotations in infos, the real spaces.
    minari_dataset = minari.MinariDataset(tmp_path / "handmade-v0" / "data")
    assert minari_dataset.id == "handmade-v0"
    assert minari_dataset.action_space == gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    episode = minari_dataset[1]
    assert episode.observations.shape == (6, 4)
    assert set(episode.infos) == {"intervention", "expert_action", "goal"}

    assert convert(tmp_path / "handmade-v0", tmp_path / "back", "clonekit") == []
    original, back = Dataset.open(handmade), Dataset.open(tmp_path / "back")
    numeric = [name for name, spec in original.streams.items() if spec.kind == "array"]
    assert list(back.streams) == numeric
    assert_same_streams(original, back, numeric)
    for key in ("spaces", "env", "episode_info", "extra"):
        assert back.meta[key] == original.meta[key], key
    assert back.episode_info("task").tolist() == ["task-0", "task-1", "task-2"]
    assert tree_hash(handmade) == before


def test_minari_round_trip_of_the_maze_dataset_is_exact(maze: Path, tmp_path: Path, monkeypatch: Any) -> None:
    convert(maze, tmp_path / "maze-bfs-v3", "minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    assert minari.load_dataset("maze-bfs-v3").total_episodes == 6  # the directory name is the dataset id
    convert(tmp_path / "maze-bfs-v3", tmp_path / "back", "clonekit")
    assert Dataset.open(tmp_path / "back").fingerprint == Dataset.open(maze).fingerprint


def test_minari_id_is_derived_from_a_directory_name_without_version(maze: Path, tmp_path: Path) -> None:
    warnings = convert(maze, tmp_path / "my maze", "minari")
    assert any("'my_maze-v0'" in w for w in warnings)
    assert minari.MinariDataset(tmp_path / "my maze" / "data").id == "my_maze-v0"


def make_cartpole_minari(root: Path, monkeypatch: Any, dataset_id: str = "cartpole-random-v0") -> Path:
    """A Minari dataset made with minari's own API from real CartPole episodes (random actions, seeded resets)."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    env = gym.make("CartPole-v1")
    env.action_space.seed(0)
    buffers = []
    for episode in range(4):
        seed = 2**63 + episode if episode == 3 else 100 + episode  # Minari seeds may use all 64 bits
        obs, _ = env.reset(seed=seed % 2**32)
        observations, actions, rewards, terminations, truncations = [obs], [], [], [], []
        for _ in range(8 + 3 * episode):
            action = env.action_space.sample()
            obs, reward, terminated, truncated, _ = env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
            terminations.append(terminated)
            truncations.append(truncated)
            if terminated:
                break
        truncations[-1] = truncations[-1] or not terminations[-1]
        buffers.append(
            EpisodeBuffer(
                id=episode,
                seed=seed,
                observations=np.stack(observations),
                actions=np.asarray(actions),
                rewards=np.asarray(rewards),
                terminations=np.asarray(terminations),
                truncations=np.asarray(truncations),
                infos={"step_index": np.arange(len(observations)), "cart": {"speed": np.stack(observations)[:, 1]}},
            )
        )
    minari.create_dataset_from_buffers(
        dataset_id,
        buffers,
        env="CartPole-v1",
        eval_env="CartPole-v1",
        algorithm_name="random",
        author="clonekit tests",
        author_email="tests@example.com",
        code_permalink="https://example.com/clonekit",
        description="random CartPole",
    )
    return root / dataset_id


def test_minari_dataset_from_minari_keeps_final_observations(tmp_path: Path, monkeypatch: Any) -> None:
    src = make_cartpole_minari(tmp_path / "minari_root", monkeypatch)
    assert detect_format(src) == "minari"
    before = tree_hash(src)
    assert convert(src, tmp_path / "ck", "clonekit") == []
    assert tree_hash(src) == before

    original = minari.MinariDataset(src / "data")
    dataset = Dataset.open(tmp_path / "ck")
    assert list(dataset.streams) == [
        *("obs", "action", "reward", "terminated", "truncated", "next_obs"),
        *("cart.speed", "step_index"),  # infos in Minari's (alphabetical) order
    ]
    assert dataset.spaces["action"] == {"type": "Discrete", "n": 2, "start": 0}
    assert dataset.env["id"] == "CartPole-v1"
    assert dataset.episode_info("seed").tolist() == [str(100 + i) for i in range(3)] + [str(2**63 + 3)]
    for i, episode in enumerate(original.iterate_episodes()):
        steps = dataset.episode(i)
        np.testing.assert_array_equal(steps["obs"], episode.observations[:-1])
        np.testing.assert_array_equal(steps["next_obs"], episode.observations[1:])
        np.testing.assert_array_equal(steps["step_index"], np.arange(len(episode.rewards)))

    # Back to Minari: the final observations come from next_obs, so every observation survives.
    assert convert(tmp_path / "ck", tmp_path / "again-v0", "minari") == []
    again = minari.MinariDataset(tmp_path / "again-v0" / "data")
    assert again.env_spec == original.env_spec
    assert again.observation_space == original.observation_space
    assert again.storage.metadata["author"] == {"clonekit tests"}
    seeds = [m["seed"] for m in again.storage.get_episode_metadata(range(4))]
    assert seeds == [100, 101, 102, 2**63 + 3]
    for old, new in zip(original.iterate_episodes(), again.iterate_episodes(), strict=True):
        for field in ("observations", "actions", "rewards", "terminations", "truncations"):
            np.testing.assert_array_equal(getattr(new, field), getattr(old, field), err_msg=field)


def test_minari_dict_observations_are_flattened_in_sorted_key_order(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "root"))
    space = gym.spaces.Dict(
        {"pos": gym.spaces.Box(-1, 1, (2,), np.float64), "goal": gym.spaces.Box(-1, 1, (3,), np.float32)}
    )
    observations = {"pos": np.arange(8.0).reshape(4, 2), "goal": np.ones((4, 3), dtype=np.float32)}
    buffer = EpisodeBuffer(
        observations=observations,
        actions=np.array([0, 1, 1]),
        rewards=np.zeros(3),
        terminations=np.array([False, False, True]),
        truncations=np.zeros(3, dtype=bool),
    )
    minari.create_dataset_from_buffers(
        "dict-obs-v0",
        [buffer],
        observation_space=space,
        action_space=gym.spaces.Discrete(2),
        algorithm_name="none",
        author="a",
        author_email="a@example.com",
        code_permalink="https://example.com",
        description="dict observations",
    )
    warnings = convert(tmp_path / "root" / "dict-obs-v0", tmp_path / "ck", "clonekit")
    assert any("goal, pos" in w for w in warnings)
    obs = Dataset.open(tmp_path / "ck").column("obs")
    expected = np.concatenate([observations["goal"], observations["pos"]], axis=1).astype(np.float32)
    np.testing.assert_array_equal(obs, expected[:-1])


def write_robomimic(path: Path, demos: dict[str, dict[str, Any]]) -> None:
    """A robomimic-style file as other tools write it: no clonekit attrs."""
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1, "env_kwargs": {}})
        for name, demo in demos.items():
            group = data.create_group(name)
            group.attrs["num_samples"] = len(demo["actions"])
            for key, value in demo.items():
                if isinstance(value, dict):
                    for obs_key, obs_value in value.items():
                        group.create_dataset(f"{key}/{obs_key}", data=obs_value)
                else:
                    group.create_dataset(key, data=value)


def test_plain_robomimic_hdf5_concatenates_obs_keys(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    demos = {}
    for number, length in ((0, 4), (1, 2), (2, 3), (10, 5)):  # demo_10 sorts after demo_2 by number
        demos[f"demo_{number}"] = {
            "obs": {"robot0_eef_pos": rng.normal(size=(length, 3)), "gripper": rng.normal(size=(length, 2, 1))},
            "actions": rng.uniform(-1, 1, size=(length, 7)),
            "rewards": np.arange(length, dtype=np.float64),
            "dones": np.eye(1, length, length - 1, dtype=np.int64)[0] * (number != 1),  # demo_1 never finishes
            "states": rng.normal(size=(length, 5)),
            "episode_summary": np.zeros(2),  # not per-step
        }
    write_robomimic(tmp_path / "lift.hdf5", demos)
    before = tree_hash(tmp_path / "lift.hdf5")

    warnings = convert(tmp_path / "lift.hdf5", tmp_path / "ck", "clonekit")
    assert any("obs keys gripper, robot0_eef_pos" in w for w in warnings)
    assert any("episode_summary" in w and "skipped" in w for w in warnings)
    dataset = Dataset.open(tmp_path / "ck")
    assert dataset.episode_lengths.tolist() == [4, 2, 3, 5]
    assert dataset.streams["obs"].shape == (5,) and dataset.streams["obs"].dtype == "float32"
    assert dataset.streams["states"].dtype == "float64"
    last = demos["demo_10"]
    expected = np.concatenate([last["obs"]["gripper"].reshape(5, -1), last["obs"]["robot0_eef_pos"]], axis=1)
    steps = dataset.episode(3)
    np.testing.assert_array_equal(steps["obs"], expected.astype(np.float32))
    np.testing.assert_array_equal(steps["action"], last["actions"])
    np.testing.assert_array_equal(steps["states"], last["states"])
    assert dataset.episode(1)["terminated"].tolist() == [False, False]
    assert dataset.episode(1)["truncated"].tolist() == [False, True]  # stopped without being done
    assert steps["terminated"].tolist() == [False] * 4 + [True] and not steps["truncated"].any()
    assert dataset.spaces["action"]["type"] == "Box" and dataset.env["id"] == "Lift"
    assert tree_hash(tmp_path / "lift.hdf5") == before


def test_plain_robomimic_hdf5_without_dones(tmp_path: Path) -> None:
    demos = {f"demo_{i}": {"obs": {"state": np.ones((3, 2))}, "actions": np.array([0, 2, 1])} for i in range(2)}
    write_robomimic(tmp_path / "plain.hdf5", demos)
    warnings = convert(tmp_path / "plain.hdf5", tmp_path / "ck", "clonekit")
    assert any("no 'dones'" in w for w in warnings) and any("no 'rewards'" in w for w in warnings)
    dataset = Dataset.open(tmp_path / "ck")
    assert not np.asarray(dataset.column("terminated")).any()
    assert np.asarray(dataset.column("truncated")).tolist() == [False, False, True] * 2
    assert dataset.spaces["action"] == {"type": "Discrete", "n": 3, "start": 0}
    assert dataset.streams["obs"].dtype == "float64"  # one obs key keeps its dtype


def test_bad_sources_raise_one_line_errors_naming_the_path(tmp_path: Path, maze: Path) -> None:
    not_a_dataset = tmp_path / "empty_dir"
    not_a_dataset.mkdir()
    (not_a_dataset / "notes.txt").write_text("hello")
    no_data = tmp_path / "no_data.hdf5"
    with h5py.File(no_data, "w") as f:
        f.create_group("other")
    convert(maze, tmp_path / "full.hdf5", "hdf5")
    full = (tmp_path / "full.hdf5").read_bytes()
    cut = tmp_path / "cut.hdf5"
    cut.write_bytes(full[: len(full) // 3])
    garbled = tmp_path / "garbled.hdf5"
    garbled.write_bytes(full[:4096] + bytes(range(256)) * 64)
    junk = tmp_path / "junk.hdf5"
    junk.write_bytes(b"not hdf5 at all" * 10)

    for src in (tmp_path / "missing", not_a_dataset, no_data, cut, garbled, junk):
        before = tree_hash(src) if src.exists() else None
        for to in ("clonekit", "hdf5", "minari"):
            dst = tmp_path / f"out-{src.name}-{to}"
            with pytest.raises(DatasetError) as info:
                convert(src, dst, to)
            message = str(info.value)
            assert str(src) in message and "\n" not in message, message
            assert not dst.exists()
        if before is not None:
            assert tree_hash(src) == before
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # no temp files left behind


def test_unknown_target_format_is_a_config_error(maze: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'parquet'"):
        convert(maze, tmp_path / "x", "parquet")


@pytest.mark.parametrize("to, name", [("clonekit", "out"), ("hdf5", "out.hdf5"), ("minari", "out-v0")])
def test_existing_destination_needs_overwrite(maze: Path, handmade: Path, tmp_path: Path, to: str, name: str) -> None:
    dst = tmp_path / name
    convert(maze, dst, to)
    first = tree_hash(dst)
    with pytest.raises(DatasetError, match="already exists"):
        convert(handmade, dst, to)
    assert tree_hash(dst) == first
    convert(handmade, dst, to, overwrite=True)
    assert tree_hash(dst) != first
    assert detect_format(dst) == to
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing left next to it


def test_overwrite_never_replaces_something_else(maze: Path, tmp_path: Path) -> None:
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    for to in ("clonekit", "hdf5", "minari"):
        with pytest.raises(DatasetError, match="refusing to replace"):
            convert(maze, precious, to, overwrite=True)
    assert precious.read_text() == "keep me"
    with pytest.raises(DatasetError, match="overlaps the source"):
        convert(maze, maze / "inside", "clonekit")


def test_hdf5_refuses_what_it_cannot_hold(tmp_path: Path) -> None:
    base = {"obs": np.zeros((2, 1)), "action": np.zeros(2, dtype=np.int64), "reward": np.zeros(2)}
    base |= {"terminated": np.zeros(2, dtype=bool), "truncated": np.array([False, True])}
    for extra_stream, values, match in [
        (array_stream("dones", "bool"), np.zeros(2, dtype=bool), "robomimic's own datasets"),
        (text_stream("thought"), ["fine", "bad\x00text"], "NUL"),
    ]:
        src = tmp_path / f"src-{extra_stream.name}"
        streams = [
            array_stream("obs", "float32", (1,)),
            array_stream("action", "int64"),
            array_stream("reward", "float32"),
            array_stream("terminated", "bool"),
            array_stream("truncated", "bool"),
            extra_stream,
        ]
        with DatasetWriter(src, streams) as writer:
            writer.add_episode(base | {extra_stream.name: values})
        with pytest.raises(DatasetError, match=match):
            convert(src, tmp_path / f"{extra_stream.name}.hdf5", "hdf5")
        assert not (tmp_path / f"{extra_stream.name}.hdf5").exists()


def test_cli_convert_round_trips_and_reports_bad_input_in_one_line(
    maze: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from clonekit.cli import main

    assert main(["convert", str(maze), str(tmp_path / "m.hdf5"), "--to", "hdf5"]) == 0
    assert main(["convert", str(tmp_path / "m.hdf5"), str(tmp_path / "back")]) == 0
    assert "hdf5" in capsys.readouterr().out
    assert Dataset.open(tmp_path / "back").fingerprint == Dataset.open(maze).fingerprint
    assert main(["convert", str(tmp_path / "missing"), str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "missing" in err and "\n" not in err, err
    assert main(["convert", str(maze), str(tmp_path / "y"), "--to", "parquet"]) == 2
    assert "parquet" in capsys.readouterr().err
