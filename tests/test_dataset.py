"""The dataset format: round trips, zero-copy reads, chunked gathers, atomic writes and one-line errors."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pyarrow as pa
import pytest
import torch

from clonekit.data import (
    Dataset,
    DatasetWriter,
    StreamSpec,
    array_stream,
    space_from_json,
    space_to_json,
    text_stream,
)
from clonekit.errors import ConfigError, DatasetError

EPISODE_LENGTHS = (5, 11, 8)
LONG_THOUGHT = ("step by step → " * 400)[:5000]
STREAMS = [
    array_stream("obs", "uint8", (3, 4, 4)),
    array_stream("action", "int64"),
    array_stream("reward", "float32"),
    array_stream("terminated", "bool"),
    array_stream("truncated", "bool"),
    array_stream("procedure", "int16", (2, 4, 4), "BFS distance maps"),
    text_stream("thought", "why the demonstrator acted"),
    array_stream("intervention", "bool"),
]


def make_episode(rng: np.random.Generator, length: int) -> dict[str, Any]:
    thoughts = [f"go {i} → ☃ 日本" for i in range(length)]
    thoughts[1] = ""
    thoughts[2] = LONG_THOUGHT
    terminated = np.zeros(length, dtype=bool)
    terminated[-1] = length % 2 == 1
    return {
        "obs": rng.integers(0, 256, (length, 3, 4, 4), dtype=np.uint8),
        "action": rng.integers(0, 4, length),
        "reward": rng.random(length),  # float64, cast to float32 by the writer
        "terminated": terminated,
        "truncated": ~terminated & (np.arange(length) == length - 1),
        "procedure": rng.integers(-300, 300, (length, 2, 4, 4)).astype(np.int16),
        "thought": thoughts,
        "intervention": rng.random(length) < 0.3,
    }


def write_dataset(
    path: Path, lengths: tuple[int, ...] = EPISODE_LENGTHS, seed: int = 0, **kwargs: Any
) -> tuple[Dataset, list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    episodes = [make_episode(rng, length) for length in lengths]
    writer = DatasetWriter(
        path,
        STREAMS,
        episode_info=["task_id"],
        env={"id": "Maze-v0", "kwargs": {"size": 4}},
        spaces={"observation": gym.spaces.Box(0, 1, (3, 4, 4), np.uint8), "action": gym.spaces.Discrete(4)},
        **kwargs,
    )
    with writer:
        for i, episode in enumerate(episodes):
            writer.add_episode(episode, info={"task_id": 10 + i})
    return Dataset.open(path), episodes


def file_hashes(root: Path) -> dict[str, str]:
    if not root.exists():
        return {}
    return {
        str(file.relative_to(root)): hashlib.sha256(file.read_bytes()).hexdigest()
        for file in sorted(root.rglob("*"))
        if file.is_file()
    }


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Dataset, list[dict[str, Any]]]:
    return write_dataset(tmp_path / "data")


def test_round_trip_reads_back_every_stream_exactly(dataset: tuple[Dataset, list[dict[str, Any]]]) -> None:
    ds, episodes = dataset
    assert len(ds) == ds.num_steps == sum(EPISODE_LENGTHS)
    assert ds.num_episodes == len(EPISODE_LENGTHS)
    np.testing.assert_array_equal(ds.episode_lengths, EPISODE_LENGTHS)
    np.testing.assert_array_equal(ds.episode_starts, [0, 5, 16])
    np.testing.assert_array_equal(ds.episode_info("task_id"), [10, 11, 12])
    np.testing.assert_array_equal(ds.episode_index(), np.repeat([0, 1, 2], EPISODE_LENGTHS))
    assert ds.streams["procedure"] == STREAMS[5]
    assert ds.env == {"id": "Maze-v0", "kwargs": {"size": 4}}
    assert space_from_json(ds.spaces["action"]) == gym.spaces.Discrete(4)

    for name, spec in ds.streams.items():
        expected = [value for episode in episodes for value in episode[name]]
        if spec.kind == "text":
            assert ds.column(name) == expected
            continue
        column = ds.column(name)
        assert isinstance(column, np.ndarray)
        assert column.dtype == np.dtype(spec.dtype) and column.shape == (ds.num_steps, *spec.shape)
        np.testing.assert_array_equal(column, np.asarray(expected).astype(spec.dtype))

    for i, episode in enumerate(episodes):
        read = ds.episode(i)
        assert read["thought"] == episode["thought"]
        for name in ("obs", "action", "terminated", "procedure", "intervention"):
            np.testing.assert_array_equal(read[name], episode[name])
    assert ds.column("thought")[2] == LONG_THOUGHT and len(LONG_THOUGHT) == 5000
    assert ds.column("thought")[1] == ""


def test_numeric_columns_are_memory_mapped_without_copy(
    dataset: tuple[Dataset, list[dict[str, Any]]],
) -> None:
    ds, episodes = dataset
    obs = ds.column("obs")
    terminated = ds.column("terminated")
    assert isinstance(obs, np.ndarray) and isinstance(terminated, np.ndarray)
    assert not obs.flags.writeable and not terminated.flags.writeable
    assert np.shares_memory(obs, ds.column("obs"))
    assert np.shares_memory(terminated, ds.column("terminated"))
    assert terminated.dtype == np.bool_

    # Proof that the array *is* the file: change a byte on disk and watch the already-returned array change.
    file = ds.path / "columns" / "obs.arrow"
    offset = file.read_bytes().find(np.concatenate([e["obs"] for e in episodes]).tobytes())
    assert offset > 0
    new_value = (int(obs[0, 0, 0, 0]) + 1) % 256
    with open(file, "r+b") as f:
        f.seek(offset)
        f.write(bytes([new_value]))
    assert obs[0, 0, 0, 0] == new_value


@pytest.mark.parametrize("rows_per_chunk", [7, 8])  # 24 steps: a short last chunk, and exact chunks
def test_multi_chunk_gather_matches_single_chunk(tmp_path: Path, rows_per_chunk: int) -> None:
    single, _ = write_dataset(tmp_path / "single")
    chunked, episodes = write_dataset(tmp_path / "chunked", rows_per_chunk=rows_per_chunk)
    reader = pa.ipc.open_file(pa.memory_map(str(chunked.path / "columns" / "obs.arrow")))
    batch_rows = [reader.get_batch(i).num_rows for i in range(reader.num_record_batches)]
    assert batch_rows == {7: [7, 7, 7, 3], 8: [8, 8, 8]}[rows_per_chunk]
    indices = np.random.default_rng(1).integers(0, single.num_steps, 200)
    indices[:3] = [0, 6, 7]  # first step, and either side of the first chunk edge for rows_per_chunk=7
    a, b = single.gather(indices), chunked.gather(indices)
    assert a.keys() == b.keys() == single.streams.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape
        np.testing.assert_array_equal(a[name], b[name])
    assert list(b["thought"][:3]) == [episodes[0]["thought"][0], episodes[1]["thought"][1], LONG_THOUGHT]
    for name in single.streams:
        np.testing.assert_array_equal(np.asarray(single.column(name)), np.asarray(chunked.column(name)))
    for i in range(single.num_episodes):  # episode 1 (steps 5..15) spans three chunks
        for name, values in chunked.episode(i).items():
            np.testing.assert_array_equal(np.asarray(values), np.asarray(single.episode(i)[name]))
    assert single.fingerprint != chunked.fingerprint  # different batch layout, different bytes


def test_sample_is_deterministic_with_dtypes_and_shapes(
    dataset: tuple[Dataset, list[dict[str, Any]]],
) -> None:
    ds, _ = dataset
    first = ds.sample(64, torch.Generator().manual_seed(3))
    second = ds.sample(64, torch.Generator().manual_seed(3))
    other = ds.sample(64, torch.Generator().manual_seed(4))
    assert "thought" not in first
    assert set(first) == {n for n, s in ds.streams.items() if s.kind == "array"}
    for name, tensor in first.items():
        torch.testing.assert_close(tensor, second[name], rtol=0, atol=0)
    assert not torch.equal(first["obs"], other["obs"])
    assert first["obs"].dtype == torch.uint8 and first["obs"].shape == (64, 3, 4, 4)
    assert first["procedure"].dtype == torch.int16 and first["procedure"].shape == (64, 2, 4, 4)
    assert first["action"].dtype == torch.int64 and first["action"].shape == (64,)
    assert first["reward"].dtype == torch.float32
    assert first["terminated"].dtype == torch.bool and first["intervention"].dtype == torch.bool

    expected = torch.randint(ds.num_steps, (64,), generator=torch.Generator().manual_seed(3)).numpy()
    np.testing.assert_array_equal(first["obs"].numpy(), ds.gather(expected, ["obs"])["obs"])
    only = ds.sample(8, torch.Generator().manual_seed(0), streams=["action"])
    assert set(only) == {"action"}
    with pytest.raises(DatasetError, match="text stream 'thought' cannot be sampled into a tensor"):
        ds.sample(8, torch.Generator(), streams=["thought"])


def test_writer_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "data"
    rng = np.random.default_rng(0)
    with DatasetWriter(path, STREAMS, episode_info=["task_id"], rows_per_chunk=4) as writer:
        writer.add_episode(make_episode(rng, 9), info={"task_id": 1})
        assert not path.exists()
        assert writer.num_steps == 9 and writer.num_episodes == 1
        (tmp_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith(".data.tmp-")]
        assert tmp_dir.is_dir() and not (tmp_dir / "meta.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert Dataset.open(path).num_steps == 9


def test_exception_inside_writer_leaves_nothing(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    writer = DatasetWriter(tmp_path / "data", STREAMS, episode_info=["task_id"])
    with pytest.raises(RuntimeError, match="demonstrator crashed"), writer:
        writer.add_episode(make_episode(rng, 6), info={"task_id": 1})
        raise RuntimeError("demonstrator crashed")
    assert list(tmp_path.iterdir()) == []


def test_existing_path_needs_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "data"
    old, old_episodes = write_dataset(path, seed=0)
    with pytest.raises(DatasetError, match=f"{path}: already exists"):
        DatasetWriter(path, STREAMS)
    new, _ = write_dataset(path, seed=1, overwrite=True)
    assert new.fingerprint != old.fingerprint
    assert Dataset.open(path).fingerprint == new.fingerprint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    # The replaced dataset was renamed away, not rewritten in place, so its open mapping still reads right.
    np.testing.assert_array_equal(old.column("obs"), np.concatenate([e["obs"] for e in old_episodes]))

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not a clonekit dataset"):
        DatasetWriter(tmp_path / "notes", STREAMS, overwrite=True)
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


def _rewrite_arrow(name: str, change: Callable[[pa.Table], pa.Table]) -> Callable[[Path], None]:
    """Replace an Arrow file with a valid one holding ``change(old table)``."""

    def rewrite(root: Path) -> None:
        # Read an in-memory copy: a memory-mapped table would change under us while the file is rewritten.
        table = change(pa.ipc.open_file(pa.BufferReader((root / name).read_bytes())).read_all())
        with pa.OSFile(str(root / name), "wb") as sink, pa.ipc.new_file(sink, table.schema) as out:
            out.write_table(table)

    return rewrite


def _edit_meta(drop: str = "", **changes: Any) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        meta = json.loads((root / "meta.json").read_text())
        meta.update(changes)
        meta.pop(drop, None)
        (root / "meta.json").write_text(json.dumps(meta))

    return edit


def _cut_bytes(name: str, start: int, stop: int | None) -> Callable[[Path], None]:
    """Delete bytes ``[start:stop]`` of a file (``stop=None``: truncate it at ``start``)."""

    def cut(root: Path) -> None:
        data = (root / name).read_bytes()
        (root / name).write_bytes(data[:start] + (data[stop:] if stop is not None else b""))

    return cut


CORRUPTIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "garbled meta.json": (lambda root: (root / "meta.json").write_text('{"format": "clon'), "meta.json"),
    "meta.json not an object": (lambda root: (root / "meta.json").write_text("[1, 2]"), "meta.json"),
    "unknown format": (_edit_meta(format="other.dataset"), "meta.json: format"),
    "schema_version 99": (
        _edit_meta(schema_version=99),
        "schema_version 99 is newer than this clonekit supports (1); upgrade clonekit",
    ),
    "missing key": (_edit_meta(drop="num_steps"), "meta.json: missing key(s) 'num_steps'"),
    "num_steps not an int": (_edit_meta(num_steps="24"), "meta.json: num_steps: expected an int"),
    "bad stream spec": (
        _edit_meta(streams={"obs": {"kind": "array", "dtype": "complex64", "shape": [3, 4, 4]}}),
        "stream 'obs' field 'dtype'",
    ),
    "missing column file": (lambda root: (root / "columns" / "thought.arrow").unlink(), "thought.arrow"),
    "truncated column file": (_cut_bytes("columns/obs.arrow", -100, None), "obs.arrow"),
    "bytes cut from the middle": (_cut_bytes("columns/procedure.arrow", 300, 400), "procedure.arrow"),
    "row count mismatch": (
        _rewrite_arrow("columns/action.arrow", lambda table: table.slice(0, table.num_rows - 2)),
        "action.arrow: expected 24 rows (meta.json num_steps), found 22",
    ),
    "wrong Arrow type": (
        _rewrite_arrow("columns/action.arrow", lambda table: table.cast(pa.schema([("data", pa.float64())]))),
        "action.arrow: expected Arrow type int64",
    ),
    "episodes not contiguous": (
        _rewrite_arrow(
            "episodes.arrow",
            lambda table: table.set_column(0, "start", pa.array([0, 6, 16], type=pa.int64())),
        ),
        "episodes.arrow: episode 1: expected start 5",
    ),
    "episode count mismatch": (_edit_meta(num_episodes=2), "episodes.arrow: expected 2 rows"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corrupt_dataset_raises_one_line_error_and_changes_nothing(
    dataset: tuple[Dataset, list[dict[str, Any]]], case: str
) -> None:
    ds, _ = dataset
    corrupt, expected_text = CORRUPTIONS[case]
    corrupt(ds.path)
    before = file_hashes(ds.path)
    with pytest.raises(DatasetError) as error:
        Dataset.open(ds.path)
    message = str(error.value)
    assert expected_text in message and "\n" not in message
    assert file_hashes(ds.path) == before


def test_missing_directory_and_missing_meta(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="nowhere: no such dataset directory"):
        Dataset.open(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"meta\.json: missing"):
        Dataset.open(tmp_path / "empty")
    assert list((tmp_path / "empty").iterdir()) == []


def _drop(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda steps: steps.pop(name)


def _set(name: str, value: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], None]:
    return lambda steps: steps.__setitem__(name, value(steps))


BAD_EPISODES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "missing stream": (_drop("procedure"), "missing stream 'procedure'"),
    "undeclared stream": (_set("mood", lambda s: ["ok"] * 6), "stream 'mood' is not declared"),
    "wrong shape": (_set("obs", lambda s: s["obs"][:, :2]), "stream 'obs': expected shape (T, 3, 4, 4)"),
    "length mismatch": (_set("action", lambda s: s["action"][:-1]), "stream 'action': expected 6 steps"),
    "float into int": (
        _set("action", lambda s: s["action"] + 0.5),
        "stream 'action': expected values castable",
    ),
    "int out of range": (
        _set("procedure", lambda s: s["procedure"].astype(np.int64) * 1000),
        "stream 'procedure'",
    ),
    "text not a list": (_set("thought", lambda s: "one string"), "stream 'thought': expected a sequence"),
}


@pytest.mark.parametrize("case", sorted(BAD_EPISODES))
def test_bad_episode_is_rejected_and_writer_stays_usable(tmp_path: Path, case: str) -> None:
    spoil, expected_text = BAD_EPISODES[case]
    rng = np.random.default_rng(0)
    with DatasetWriter(tmp_path / "data", STREAMS, episode_info=["task_id"]) as writer:
        writer.add_episode(make_episode(rng, 4), info={"task_id": 0})
        steps = make_episode(rng, 6)
        spoil(steps)
        with pytest.raises(DatasetError) as error:
            writer.add_episode(steps, info={"task_id": 1})
        assert expected_text in str(error.value) and "episode 1" in str(error.value)
        writer.add_episode(make_episode(rng, 3), info={"task_id": 2})
    assert Dataset.open(tmp_path / "data").num_steps == 7


def test_nan_in_float_obs_is_rejected(tmp_path: Path) -> None:
    streams = [array_stream("obs", "float32", (2,)), *STREAMS[1:5]]
    steps = {
        "obs": np.array([[0.0, 1.0], [np.nan, 2.0]]),
        "action": np.array([0, 1]),
        "reward": np.zeros(2),
        "terminated": np.array([False, True]),
        "truncated": np.array([False, False]),
    }
    expected = r"episode 0, stream 'obs': expected finite values, found nan at step 1"
    with pytest.raises(DatasetError, match=expected), DatasetWriter(tmp_path / "data", streams) as writer:
        writer.add_episode(steps)
    assert list(tmp_path.iterdir()) == []


def test_closing_without_episodes_or_twice(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path / "data", STREAMS)
    with pytest.raises(DatasetError, match="no episodes were added"):
        writer.close()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DatasetError, match="already aborted"):
        writer.add_episode(make_episode(np.random.default_rng(0), 3))


def test_bad_stream_declarations(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="missing required stream"):
        DatasetWriter(tmp_path / "a", STREAMS[1:])
    with pytest.raises(DatasetError, match=r"stream 'reward': expected array float32 \(\)"):
        DatasetWriter(tmp_path / "b", [*STREAMS[:2], array_stream("reward", "float64"), *STREAMS[3:]])
    with pytest.raises(DatasetError, match="declared twice"):
        DatasetWriter(tmp_path / "c", [*STREAMS, array_stream("action", "int64")])
    with pytest.raises(DatasetError, match=r"stream name '\.\./x'"):
        array_stream("../x", "float32")
    with pytest.raises(DatasetError, match="stream 'obs' field 'shape'"):
        StreamSpec.from_json("obs", {"kind": "array", "dtype": "uint8", "shape": "3x4"})
    assert StreamSpec.from_json("procedure", STREAMS[5].to_json()) == STREAMS[5]
    assert list(tmp_path.iterdir()) == []


def test_require_streams_names_the_missing_stream(dataset: tuple[Dataset, list[dict[str, Any]]]) -> None:
    ds, _ = dataset
    ds.require_streams(["obs", "procedure"], needed_by="procedure cloning")
    with pytest.raises(DatasetError) as error:
        ds.require_streams(["obs", "goal"], needed_by="goal-conditioned BC")
    assert str(error.value) == (
        f"{ds.path}: goal-conditioned BC needs stream 'goal', which this dataset does not have "
        "(streams: obs, action, reward, terminated, truncated, procedure, thought, intervention)"
    )


def test_verify_detects_a_changed_byte(dataset: tuple[Dataset, list[dict[str, Any]]]) -> None:
    ds, _ = dataset
    ds.verify()
    file = ds.path / "columns" / "reward.arrow"
    data = bytearray(file.read_bytes())
    offset = data.find(np.asarray(ds.column("reward")).tobytes())
    data[offset] ^= 0xFF
    file.write_bytes(bytes(data))
    reopened = Dataset.open(ds.path)  # still structurally valid: only verify() can tell
    with pytest.raises(DatasetError, match="fingerprint mismatch"):
        reopened.verify()


def test_summary_is_json_and_correct(dataset: tuple[Dataset, list[dict[str, Any]]]) -> None:
    ds, episodes = dataset
    summary = json.loads(json.dumps(ds.summary()))
    assert summary["num_steps"] == 24 and summary["num_episodes"] == 3
    assert summary["episode_length"] == {"min": 5, "mean": 8.0, "max": 11}
    returns = [e["reward"].astype(np.float32).astype(np.float64).sum() for e in episodes]
    assert summary["return_mean"] == pytest.approx(np.mean(returns))
    assert summary["terminated_fraction"] == pytest.approx(2 / 3)  # lengths 5 and 11 end terminated
    assert summary["streams"]["thought"] == {
        "kind": "text",
        "dtype": "string",
        "shape": [],
        "description": "why the demonstrator acted",
    }


def test_spaces_round_trip() -> None:
    box = gym.spaces.Box(low=-np.inf, high=np.array([1.0, 2.0, np.inf], dtype=np.float32), dtype=np.float32)
    as_json = json.loads(json.dumps(space_to_json(box), allow_nan=False))
    assert as_json["low"] == "-inf" and as_json["high"] == [1.0, 2.0, "inf"]
    assert space_from_json(as_json) == box
    image = gym.spaces.Box(0, 255, (3, 64, 64), np.uint8)
    assert space_to_json(image) == {
        "type": "Box",
        "shape": [3, 64, 64],
        "dtype": "uint8",
        "low": 0,
        "high": 255,
    }
    assert space_from_json(space_to_json(image)) == image
    assert space_from_json(space_to_json(gym.spaces.Discrete(5, start=-2))) == gym.spaces.Discrete(5, start=-2)
    with pytest.raises(ConfigError, match="'MultiBinary'"):
        space_to_json(gym.spaces.MultiBinary(3))
    with pytest.raises(ConfigError, match="field 'type'"):
        space_from_json({"type": "Tuple"})


def test_older_schema_versions_upgrade_in_memory_on_open(
    dataset: tuple[Dataset, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader for version 1 stays when the schema moves on: open() upgrades meta.json in memory, step by step."""
    from clonekit.data import format as fmt

    path = dataset[0].path
    before = file_hashes(path)

    def one_to_two(meta: dict[str, Any]) -> dict[str, Any]:
        return {**meta, "extra": {**meta["extra"], "renamed": meta["created_by"]}}

    def two_to_three(meta: dict[str, Any]) -> dict[str, Any]:
        return {**meta, "extra": {**meta["extra"], "v3": True}}

    monkeypatch.setattr(fmt, "SCHEMA_VERSION", 3)
    monkeypatch.setattr(fmt, "UPGRADES", {1: one_to_two, 2: two_to_three})
    upgraded = Dataset.open(path)
    assert upgraded.meta["schema_version"] == 3
    assert upgraded.meta["extra"]["renamed"] == dataset[0].meta["created_by"] and upgraded.meta["extra"]["v3"]
    np.testing.assert_array_equal(
        upgraded.gather(np.arange(5), ["obs"])["obs"], dataset[0].gather(np.arange(5), ["obs"])["obs"]
    )
    assert file_hashes(path) == before, "upgrading never rewrites the files"

    monkeypatch.setattr(fmt, "UPGRADES", {2: two_to_three})
    with pytest.raises(DatasetError, match=r"meta\.json: schema_version 1 is no longer readable .* reads 2 to 3"):
        Dataset.open(path)

    def broken(meta: dict[str, Any]) -> dict[str, Any]:
        return {**meta, "x": meta["no such key"]}

    monkeypatch.setattr(fmt, "UPGRADES", {1: broken, 2: two_to_three})
    with pytest.raises(DatasetError, match="cannot upgrade schema_version 1 to 2"):
        Dataset.open(path)
