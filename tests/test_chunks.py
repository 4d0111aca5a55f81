"""Large steps (pictures): chunks bounded by bytes, statistics streamed over chunks, no whole-column copy."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pyarrow as pa
import pytest
import torch

from clonekit.data import Dataset, DatasetWriter, array_stream
from clonekit.data.columns import chunk_rows
from clonekit.data.windows import sample_batch
from clonekit.data.writer import DEFAULT_MAX_CHUNK_BYTES, DEFAULT_ROWS_PER_CHUNK
from clonekit.errors import DatasetError
from clonekit.nn import normalize
from clonekit.nn.normalize import Normalizer, feature_range, row_blocks
from clonekit.policies import build_policy
from clonekit.train import policy_config_for

PICTURE = (3, 32, 32)  # 3 KiB a step
EPISODE_LENGTHS = (300, 211, 500, 129, 400)  # 1,540 steps: 4.5 MiB of pictures
CHUNK_BYTES = 256 << 10  # 85 pictures a chunk


def write_pictures(path: Path, continuous: bool, **kwargs: Any) -> Dataset:
    """Random pictures with discrete (or 2-D continuous) actions and a goal, in ``EPISODE_LENGTHS`` episodes."""
    rng = np.random.default_rng(0)
    action = array_stream("action", "float32", (2,)) if continuous else array_stream("action", "int64")
    streams = [
        array_stream("obs", "uint8", PICTURE),
        action,
        array_stream("reward", "float32"),
        array_stream("terminated", "bool"),
        array_stream("truncated", "bool"),
        array_stream("goal", "float32", (2,)),
    ]
    action_space = gym.spaces.Box(-3, 3, (2,), np.float32) if continuous else gym.spaces.Discrete(4)
    spaces = {"observation": gym.spaces.Box(0, 255, PICTURE, np.uint8), "action": action_space}
    with DatasetWriter(path, streams, spaces=spaces, **kwargs) as writer:
        for length in EPISODE_LENGTHS:
            writer.add_episode(
                {
                    "obs": rng.integers(0, 256, (length, *PICTURE), dtype=np.uint8),
                    "action": rng.uniform(-3, 3, (length, 2)) if continuous else rng.integers(0, 4, length),
                    "reward": np.zeros(length),
                    "terminated": np.arange(length) == length - 1,
                    "truncated": np.zeros(length, dtype=bool),
                    "goal": rng.normal(size=(length, 2)),
                }
            )
    return Dataset.open(path)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return write_pictures(tmp_path_factory.mktemp("data") / "pictures", False, max_chunk_bytes=CHUNK_BYTES)


def record_batch_rows(file: Path) -> list[int]:
    with pa.memory_map(str(file)) as source:
        reader = pa.ipc.open_file(source)
        return [reader.get_batch(i).num_rows for i in range(reader.num_record_batches)]


def peak_traced_bytes(work: Callable[[], object]) -> int:
    """Peak bytes allocated through Python and numpy while ``work`` runs (mapped files are not allocations)."""
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_chunks_are_bounded_by_bytes_and_by_rows() -> None:
    assert chunk_rows(array_stream("obs", "uint8", (3, 64, 64)), DEFAULT_ROWS_PER_CHUNK, DEFAULT_MAX_CHUNK_BYTES) == (
        DEFAULT_MAX_CHUNK_BYTES // (3 * 64 * 64)
    )
    # Steps of up to 1 KiB keep the row cap, so small-step datasets keep their layout (and fingerprint).
    for spec in (array_stream("obs", "float32", (256,)), array_stream("terminated", "bool")):
        assert chunk_rows(spec, DEFAULT_ROWS_PER_CHUNK, DEFAULT_MAX_CHUNK_BYTES) == DEFAULT_ROWS_PER_CHUNK
    assert chunk_rows(array_stream("obs", "float64", (100,)), 10, 100) == 1  # never fewer than one row


def test_a_picture_column_is_written_in_byte_bounded_chunks_and_read_back_whole(
    pictures: Dataset, tmp_path: Path
) -> None:
    rows = CHUNK_BYTES // (3 * 32 * 32)
    obs_batches = record_batch_rows(pictures.path / "columns" / "obs.arrow")
    assert len(obs_batches) == 19 and set(obs_batches[:-1]) == {rows} and sum(obs_batches) == pictures.num_steps
    assert record_batch_rows(pictures.path / "columns" / "action.arrow") == [pictures.num_steps]
    chunks = list(pictures.column_chunks("obs"))
    assert [len(chunk) for chunk in chunks] == obs_batches
    assert all(not chunk.flags.writeable for chunk in chunks)
    one_chunk = write_pictures(tmp_path / "one", False, max_chunk_bytes=1 << 30)
    assert record_batch_rows(one_chunk.path / "columns" / "obs.arrow") == [pictures.num_steps]
    np.testing.assert_array_equal(np.concatenate(chunks), one_chunk.column("obs"))
    pictures.verify()
    with pytest.raises(DatasetError, match="max_chunk_bytes"):
        DatasetWriter(tmp_path / "bad", [], max_chunk_bytes=0)


@pytest.mark.parametrize("mode", ["per_feature", "per_channel"])
def test_streamed_statistics_equal_those_of_the_whole_array(
    mode: str, pictures: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = np.concatenate(list(pictures.column_chunks("obs")))
    streamed, full = Normalizer(PICTURE, mode), Normalizer(PICTURE, mode)
    streamed.fit(pictures.column_chunks("obs"))
    full.fit(whole)
    torch.testing.assert_close(streamed.mean, full.mean, rtol=0, atol=0)
    torch.testing.assert_close(streamed.std, full.std, rtol=0, atol=0)
    axes = (0, 2, 3) if mode == "per_channel" else (0,)
    as_float = whole.astype(np.float64)
    np.testing.assert_allclose(streamed.mean.numpy(), as_float.mean(axis=axes).reshape(streamed.mean.shape), 1e-6)
    np.testing.assert_allclose(streamed.std.numpy(), as_float.std(axis=axes).reshape(streamed.std.shape), 1e-6)
    # Float data, in blocks that do not line up with the chunks: still the numbers of the whole array, since
    # blocks are cut at the same rows however the rows are split.
    monkeypatch.setattr(normalize, "FIT_BLOCK_BYTES", 8 * 3 * 100)
    values = np.random.default_rng(1).normal(3.0, 2.0, (1000, 3)).astype(np.float32)
    pieces = np.split(values, [7, 250, 251, 640])
    streamed, full = Normalizer((3,), "per_feature"), Normalizer((3,), "per_feature")
    streamed.fit(iter(pieces))
    full.fit(values)
    assert torch.equal(streamed.mean, full.mean) and torch.equal(streamed.std, full.std)
    assert [len(block) for block in row_blocks(pieces, 100)] == [100] * 10
    low, high = feature_range(iter(pieces), (3,))
    np.testing.assert_array_equal(low, values.min(axis=0).astype(np.float64))
    np.testing.assert_array_equal(high, values.max(axis=0).astype(np.float64))


@pytest.mark.parametrize("name", ["bc", "continuous_bc"])
def test_prepare_and_training_batches_do_not_copy_the_picture_column(
    name: str, pictures: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = pictures if name == "bc" else write_pictures(tmp_path / "c", True, max_chunk_bytes=CHUNK_BYTES)
    column_bytes = data.num_steps * 3 * 32 * 32
    monkeypatch.setattr(normalize, "FIT_BLOCK_BYTES", 128 << 10)  # float64 blocks of 5 pictures
    overrides = {"encoder": "cnn", "conv_channels": [4], "hidden_sizes": [8], "frame_stack": 3}
    policy = build_policy(name, policy_config_for(name, data, overrides))
    # The measure sees a copy: reading the column whole (concatenating its chunks) allocates all of it.
    assert peak_traced_bytes(lambda: data.column("obs")) >= column_bytes
    assert peak_traced_bytes(lambda: policy.prepare(data)) < column_bytes / 8
    whole = Normalizer(PICTURE, policy.normalizer.mode)
    whole.fit(np.asarray(data.column("obs")))
    assert torch.equal(policy.normalizer.mean, whole.mean) and torch.equal(policy.normalizer.std, whole.std)
    generator = torch.Generator().manual_seed(0)
    windows = policy.sample_windows()
    peak = peak_traced_bytes(lambda: sample_batch(data, 16, generator, ["obs", "action"], windows))
    assert peak < column_bytes / 8
