"""Fuzzing every place where data enters: datasets, configs, run directories (and the CLI on top of them).

The rule under test: bad input gives one ``ClonekitError`` line (never another exception type, never a hang)
and the input is left byte-for-byte as it was. Clean inputs are built once per module; every example works on
its own copy. ``derandomize=True`` makes the examples the same on every run, so CI is reproducible.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import shutil
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pyarrow as pa
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from clonekit.checkpoint import load_policy
from clonekit.cli import main
from clonekit.config import config_from_json
from clonekit.data import Dataset, DatasetWriter, array_stream, text_stream
from clonekit.data.format import META_KEYS
from clonekit.errors import ClonekitError, DatasetError
from clonekit.experts.collect import collect
from clonekit.policies import POLICIES
from clonekit.train import TrainConfig, train
from tests.conftest import assert_one_error_line, tree_hash

pytestmark = pytest.mark.timeout(300)  # a hang is a failure, not a stuck CI job

FUZZ = settings(max_examples=100, deadline=None, derandomize=True, database=None, print_blob=False)
DATASET_EXAMPLES = 110
VALUE_EXAMPLES = 30
CONFIG_EXAMPLES = 60
RUN_EXAMPLES = 70  # 270 generated cases in total

# ---------------------------------------------------------------------------------------------------------
# Clean inputs, built once.


def _text_dataset(path: Path) -> Dataset:
    """Float observations, a Box action space with one infinite bound, a text stream, several chunks."""
    rng = np.random.default_rng(0)
    streams = [
        array_stream("obs", "float32", (3,)),
        array_stream("action", "float32", (2,)),
        array_stream("reward", "float32"),
        array_stream("terminated", "bool"),
        array_stream("truncated", "bool"),
        array_stream("expert_action", "float32", (2,)),
        array_stream("intervention", "bool"),
        text_stream("thought"),
    ]
    action_space = gym.spaces.Box(
        low=np.array([-1.0, -1.0], np.float32), high=np.array([1.0, np.inf], np.float32), dtype=np.float32
    )
    writer = DatasetWriter(
        path,
        streams,
        spaces={"observation": gym.spaces.Box(-10, 10, (3,), np.float32), "action": action_space},
        env={"id": "Toy-v0"},
        episode_info=["task_id"],
        rows_per_chunk=4,
    )
    with writer:
        for i, length in enumerate((3, 5, 4)):
            writer.add_episode(
                {
                    "obs": rng.uniform(-1, 1, (length, 3)),
                    "action": rng.uniform(-1, 1, (length, 2)),
                    "reward": rng.random(length),
                    "terminated": np.arange(length) == length - 1,
                    "truncated": np.zeros(length, bool),
                    "expert_action": rng.uniform(-1, 1, (length, 2)),
                    "intervention": rng.random(length) < 0.5,
                    "thought": [f"step {t} ☃ of episode {i}" for t in range(length)],
                },
                info={"task_id": i},
            )
    return Dataset.open(path)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Clean inputs: two datasets and two tiny trained runs, plus a scratch directory for the copies."""
    root = tmp_path_factory.mktemp("fuzz")
    maze = collect("maze", "bfs", episodes=4, seed=0, out=root / "maze", num_tasks=2, show_progress=False)
    _text_dataset(root / "text")
    config = TrainConfig(steps=3, batch_size=8, tensorboard=False)
    train("bc", maze, root / "run_bc", config, {"conv_channels": [4], "hidden_sizes": [8]}, show_progress=False)
    train("procedure_cloning", maze, root / "run_pc", config, {"hidden_channels": 4}, show_progress=False)
    (root / "scratch").mkdir()
    return {name: root / name for name in ("maze", "text", "run_bc", "run_pc", "scratch")}


_copies = itertools.count()


def _copy(clean: dict[str, Path], name: str) -> Path:
    target = clean["scratch"] / f"{name}-{next(_copies)}"
    shutil.copytree(clean[name], target)
    return target


def _assert_user_error(error: BaseException) -> None:
    """The error is a ClonekitError whose message is one line."""
    assert isinstance(error, ClonekitError), f"{type(error).__name__}: {error}"
    assert "\n" not in str(error) and str(error).strip(), repr(str(error))


def _expect_success_or_user_error(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except ClonekitError as error:
        _assert_user_error(error)
        return None


# ---------------------------------------------------------------------------------------------------------
# Strategies.

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
small_ints = st.integers(-3, 70) | st.sampled_from([2**31, 2**63, 10**12])
plausible_shapes = st.lists(small_ints, max_size=4) | st.sampled_from([[], [3, 7, 7], [2, 7, 7], [2], [3], [0]])
plausible_dtypes = st.sampled_from(["uint8", "int64", "float32", "float64", "bool", "string", "complex64", "V8"])
fractions = st.floats(0.0, 1.0)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _read_meta(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / "meta.json").read_text())
    return data


def _write_meta(root: Path, meta: Any) -> None:
    (root / "meta.json").write_text(json.dumps(meta))


def _fingerprint(root: Path) -> str:
    """The content fingerprint as documented in ``clonekit.data.format`` (to re-sign value mutations)."""
    meta = _read_meta(root)
    digest = hashlib.sha256()
    for name in sorted([f"columns/{s}.arrow" for s in meta["streams"]] + ["episodes.arrow"]):
        digest.update((root / name).read_bytes())
    return f"sha256:{digest.hexdigest()}"


def _read_table(file: Path) -> pa.Table:
    # An in-memory copy: a memory-mapped table would change under us while the file is rewritten.
    return pa.ipc.open_file(pa.BufferReader(file.read_bytes())).read_all()


def _write_table(file: Path, table: pa.Table) -> None:
    with pa.OSFile(str(file), "wb") as sink, pa.ipc.new_file(sink, table.schema) as out:
        out.write_table(table)


def _set_step_value(root: Path, stream: str, row_fraction: float, element: int, value: float) -> tuple[int, int, Any]:
    """Write ``value`` into one element of one step of an array stream (in its storage dtype) and re-sign.

    Returns ``(step, element index within the step, the value as stored)``.
    """
    file = root / "columns" / f"{stream}.arrow"
    array = _read_table(file).column("data").combine_chunks()
    flat = array.values if pa.types.is_fixed_size_list(array.type) else array
    values = flat.to_numpy(zero_copy_only=False).copy()
    size = len(values) // len(array)
    row = min(int(row_fraction * len(array)), len(array) - 1)
    index = row * size + element % size
    if values.dtype.kind in "iu":
        info = np.iinfo(values.dtype)
        value = int(np.clip(value, info.min, info.max)) if math.isfinite(value) else int(info.max)
    values[index] = value
    new_flat = pa.array(values, type=flat.type)
    new = pa.FixedSizeListArray.from_arrays(new_flat, size) if flat is not array else new_flat
    _write_table(file, pa.table({"data": new}))
    meta = _read_meta(root)
    meta["fingerprint"] = _fingerprint(root)
    _write_meta(root, meta)
    return row, element % size, values[index].item()


def _rewrite_column(root: Path, stream: str, arrow_type: str, length_delta: int) -> None:
    """Replace a column with one of another Arrow type and/or another number of rows."""
    file = root / "columns" / f"{stream}.arrow"
    meta = _read_meta(root)
    rows = max(meta["num_steps"] + length_delta, 0)
    types = {
        "int64": pa.int64(),
        "float64": pa.float64(),
        "uint8": pa.uint8(),
        "string": pa.large_string(),
        "list3": pa.list_(pa.float32(), 3),
        "list2": pa.list_(pa.float32(), 2),
        "nullable": pa.int64(),
    }
    kind = types[arrow_type]
    if arrow_type == "string":
        array = pa.array([str(i) for i in range(rows)], type=kind)
    elif pa.types.is_fixed_size_list(kind):
        array = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(rows * kind.list_size, np.float32)), kind.list_size)
    elif arrow_type == "nullable":
        array = pa.array([None if i == 0 else i for i in range(rows)], type=kind)
    else:
        array = pa.array(np.ones(rows), type=kind)
    _write_table(file, pa.table({"data": array}))


def _rewrite_episodes(root: Path, starts: list[int], lengths: list[int]) -> None:
    table = _read_table(root / "episodes.arrow")
    n = table.num_rows
    starts = (starts + [0] * n)[:n]
    lengths = (lengths + [1] * n)[:n]
    table = table.set_column(0, "start", pa.array(starts, type=pa.int64()))
    table = table.set_column(1, "length", pa.array(lengths, type=pa.int64()))
    _write_table(root / "episodes.arrow", table)


def _array_stream(meta: dict[str, Any], index: int) -> str:
    """The array stream a generated ``index`` picks (sorted by name, wrapping around)."""
    arrays = [s for s in sorted(meta["streams"]) if meta["streams"][s]["kind"] == "array"]
    return arrays[index % len(arrays)]


def apply_dataset_mutation(root: Path, mutation: tuple[Any, ...]) -> None:
    """Apply one generated mutation (a readable tuple, so a failing example prints what it did)."""
    op, *args = mutation
    files = _files(root)
    meta = _read_meta(root)
    streams = sorted(meta["streams"])
    if op == "truncate":
        file = files[args[0] % len(files)]
        data = file.read_bytes()
        file.write_bytes(data[: int(args[1] * len(data))])
    elif op == "flip":
        file = files[args[0] % len(files)]
        data = bytearray(file.read_bytes())
        for position, xor in args[1]:
            if data:
                data[min(int(position * len(data)), len(data) - 1)] ^= xor
        file.write_bytes(bytes(data))
    elif op == "delete":
        files[args[0] % len(files)].unlink()
    elif op == "meta_drop":
        meta.pop(META_KEYS[args[0] % len(META_KEYS)])
        _write_meta(root, meta)
    elif op == "meta_rename":
        key = META_KEYS[args[0] % len(META_KEYS)]
        meta[args[1]] = meta.pop(key)
        _write_meta(root, meta)
    elif op == "meta_set":
        meta[args[0]] = args[1]
        _write_meta(root, meta)
    elif op == "meta_count":
        meta[args[0]] = meta[args[0]] + args[1]
        _write_meta(root, meta)
    elif op == "meta_replace":
        _write_meta(root, args[0])
    elif op == "meta_text":
        (root / "meta.json").write_bytes(args[0])
    elif op == "stream_set":
        meta["streams"][streams[args[0] % len(streams)]][args[1]] = args[2]
        _write_meta(root, meta)
    elif op == "stream_drop":
        meta["streams"].pop(streams[args[0] % len(streams)])
        _write_meta(root, meta)
    elif op == "stream_add":
        meta["streams"][args[0]] = args[1]
        _write_meta(root, meta)
    elif op == "space_set":
        meta["spaces"].setdefault(args[0], {})
        if isinstance(meta["spaces"][args[0]], dict) and args[1] is not None:
            meta["spaces"][args[0]][args[1]] = args[2]
        else:
            meta["spaces"][args[0]] = args[2]
        _write_meta(root, meta)
    elif op == "column_rewrite":
        _rewrite_column(root, streams[args[0] % len(streams)], args[1], args[2])
    elif op == "episodes":
        _rewrite_episodes(root, args[0], args[1])
    elif op == "value":
        _set_step_value(root, _array_stream(meta, args[0]), args[1], args[2], args[3])
    else:
        raise AssertionError(f"unknown mutation {op!r}")


stream_fields = st.sampled_from(["kind", "dtype", "shape", "description"])
stream_values = json_values | plausible_shapes | plausible_dtypes | st.sampled_from(["array", "text"])
bad_values = st.sampled_from([math.nan, math.inf, -math.inf, 2.0, -7.0, 255.0, 1e30, 4.0, -1.5, 3.0])

dataset_mutations = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 40), fractions),
    st.tuples(
        st.just("flip"),
        st.integers(0, 40),
        st.lists(st.tuples(fractions, st.integers(1, 255)), min_size=1, max_size=6),
    ),
    st.tuples(st.just("delete"), st.integers(0, 40)),
    st.tuples(st.just("meta_drop"), st.integers(0, len(META_KEYS) - 1)),
    st.tuples(st.just("meta_rename"), st.integers(0, len(META_KEYS) - 1), st.text(max_size=8)),
    st.tuples(
        st.just("meta_set"),
        st.sampled_from([*META_KEYS, "schema_version", "schema_version", "num_steps", "spaces"]),
        json_values | st.integers(-3, 3) | st.sampled_from(["1", 1.0, 2, 0]),
    ),
    st.tuples(st.just("meta_count"), st.sampled_from(["num_steps", "num_episodes"]), st.integers(-5, 5)),
    st.tuples(st.just("meta_replace"), json_values),
    st.tuples(st.just("meta_text"), st.binary(max_size=40)),
    st.tuples(st.just("stream_set"), st.integers(0, 20), stream_fields, stream_values),
    st.tuples(st.just("stream_drop"), st.integers(0, 20)),
    st.tuples(
        st.just("stream_add"),
        st.sampled_from(["procedure", "goal", "extra", "../x", "thought", "style", ""]),
        json_values | st.fixed_dictionaries({"kind": stream_values, "dtype": stream_values, "shape": stream_values}),
    ),
    st.tuples(
        st.just("space_set"),
        st.sampled_from(["action", "observation"]),
        st.sampled_from([None, "type", "n", "start", "shape", "dtype", "low", "high"]),
        json_values | plausible_shapes | plausible_dtypes | st.sampled_from(["Box", "Discrete", "inf", "-inf"]),
    ),
    st.tuples(
        st.just("column_rewrite"),
        st.integers(0, 20),
        st.sampled_from(["int64", "float64", "uint8", "string", "list3", "list2", "nullable"]),
        st.integers(-2, 2),
    ),
    st.tuples(
        st.just("episodes"),
        st.lists(st.integers(-5, 40) | st.just(2**62), max_size=5),
        st.lists(st.integers(-5, 40) | st.just(2**62), max_size=5),
    ),
    st.tuples(st.just("value"), st.integers(0, 20), fractions, st.integers(0, 400), bad_values),
)


# ---------------------------------------------------------------------------------------------------------
# (a) datasets.


def _use_dataset(path: Path) -> None:
    """Open, verify, value-check and sample: each either works or raises one ClonekitError line."""
    dataset = _expect_success_or_user_error(lambda: Dataset.open(path))
    if dataset is None:
        return
    _expect_success_or_user_error(dataset.verify)
    _expect_success_or_user_error(dataset.check_values)
    _expect_success_or_user_error(dataset.summary)
    batch = dataset.sample(16, torch.Generator().manual_seed(0))
    assert all(len(values) == 16 for values in batch.values())


@settings(FUZZ, max_examples=DATASET_EXAMPLES)
@given(which=st.sampled_from(["maze", "text"]), mutation=dataset_mutations)
def test_mutated_datasets(clean: dict[str, Path], which: str, mutation: tuple[Any, ...]) -> None:
    root = _copy(clean, which)
    try:
        apply_dataset_mutation(root, mutation)
        before = tree_hash(root)
        _use_dataset(root)
        assert tree_hash(root) == before
    finally:
        shutil.rmtree(root)


# The value rules of Dataset.check_values as documented: bool streams hold 0/1, these streams are finite, and
# action labels lie in the action space.
FINITE = ("obs", "action", "reward", "expert_action")
ACTION_LABELS = ("action", "expert_action")


def _breaks_a_value_rule(dataset: Dataset, stream: str, element: int, stored: Any) -> bool:
    """Whether ``stored``, element ``element`` of one step of ``stream``, is a value check_values must reject."""
    spec = dataset.streams[stream]
    if spec.dtype == "bool":
        return bool(stored > 1)
    if spec.dtype.startswith("float") and stream in FINITE and not math.isfinite(stored):
        return True
    if stream not in ACTION_LABELS:
        return False
    space = dataset.space("action")
    if isinstance(space, gym.spaces.Discrete):
        return not int(space.start) <= stored < int(space.start) + int(space.n)
    assert isinstance(space, gym.spaces.Box) and space.shape == spec.shape
    low, high = space.low.reshape(-1)[element], space.high.reshape(-1)[element]
    return bool(not low <= stored <= high)


@settings(FUZZ, max_examples=VALUE_EXAMPLES)
@given(
    which=st.sampled_from(["maze", "text"]),
    stream=st.integers(0, 20),
    row=fractions,
    element=st.integers(0, 400),
    value=bad_values,
)
def test_bad_values_are_found_by_check_values(
    clean: dict[str, Path], which: str, stream: int, row: float, element: int, value: float
) -> None:
    """Re-signed datasets with a NaN/inf or out-of-range value open fine; the value scan names the bad value.

    A generated value can be harmless where it lands (2.0 as a reward, -7 clipped to 0 in a uint8 image); such
    examples are rejected, so each one that runs holds a value that breaks a documented rule.
    """
    root = _copy(clean, which)
    try:
        name = _array_stream(_read_meta(root), stream)
        step, index, stored = _set_step_value(root, name, row, element, value)
        dataset = Dataset.open(root)  # structural checks only: the bad value is not looked at here
        assume(_breaks_a_value_rule(dataset, name, index, stored))
        before = tree_hash(root)
        for check in (dataset.check_values, dataset.verify):
            with pytest.raises(DatasetError) as error:
                check()
            _assert_user_error(error.value)
            assert f"stream {name!r}, step {step}:" in str(error.value), (stored, str(error.value))
        assert tree_hash(root) == before
    finally:
        shutil.rmtree(root)


@pytest.mark.parametrize(
    ("which", "stream", "value", "expected"),
    [
        ("text", "obs", math.nan, "expected finite values, found nan"),
        ("text", "reward", -math.inf, "expected finite values, found -inf"),
        ("text", "action", 1.5, "expected values within the bounds of meta.json spaces['action']"),
        ("text", "expert_action", -3.0, "expected values within the bounds of meta.json spaces['action']"),
        ("text", "intervention", 7, "expected 0 or 1 (bool), found 7"),
        ("maze", "action", 4, "expected values in [0, 3] (meta.json spaces['action'] Discrete), found 4"),
        ("maze", "action", -1, "found -1"),
    ],
)
def test_check_values_names_stream_step_and_value(
    clean: dict[str, Path], which: str, stream: str, value: float, expected: str
) -> None:
    root = _copy(clean, which)
    try:
        dataset = Dataset.open(root)
        row = 5.5 / dataset.num_steps  # step 5
        _set_step_value(root, stream, row, 0, value)
        before = tree_hash(root)
        dataset = Dataset.open(root)
        others = [name for name in dataset.streams if name != stream]
        dataset.check_values(others)  # the bad value is only in `stream`
        for check in (lambda: dataset.check_values([stream]), dataset.verify):
            with pytest.raises(DatasetError) as error:
                check()
            message = str(error.value)
            assert f"stream {stream!r}, step 5" in message and expected in message, message
            _assert_user_error(error.value)
        assert tree_hash(root) == before
    finally:
        shutil.rmtree(root)


def test_check_values_rejects_unknown_stream(clean: dict[str, Path]) -> None:
    dataset = Dataset.open(clean["maze"])
    dataset.check_values()
    dataset.check_values(["procedure", "thought"] if "thought" in dataset.streams else ["procedure"])
    with pytest.raises(DatasetError, match="no stream 'goal'"):
        dataset.check_values(["goal"])


# ---------------------------------------------------------------------------------------------------------
# (b) policy and train configs.

CONFIG_CLASSES: dict[str, tuple[type[Any], dict[str, Any]]] = {
    **{
        name: (config_cls, {"obs_shape": [3, 7, 7], "num_actions": 4})
        for name, (config_cls, _) in sorted(POLICIES.items())
    },
    "train": (TrainConfig, {}),
}
config_keys = st.sampled_from(
    sorted({f for cls, _ in CONFIG_CLASSES.values() for f in cls.__dataclass_fields__} | {"", "Steps", "x.y"})
)
config_values = (
    json_values
    | small_ints
    | st.integers(-(2**80), 2**80)
    | st.floats()
    | plausible_shapes
    | st.lists(json_values, max_size=3)
    | st.sampled_from(["conv", "mlp", "per_channel", "per_feature", "none", "cpu", "cuda", "auto", True, False])
)


@settings(FUZZ, max_examples=CONFIG_EXAMPLES)
@given(
    which=st.sampled_from(sorted(CONFIG_CLASSES)),
    changes=st.dictionaries(config_keys, config_values, max_size=4),
    drop=st.lists(config_keys, max_size=2),
    whole=st.none() | json_values,
)
def test_random_config_json(which: str, changes: dict[str, Any], drop: list[str], whole: Any) -> None:
    config_cls, base = CONFIG_CLASSES[which]
    data = {**base, **changes}
    for key in drop:
        data.pop(key, None)
    for payload in (data, whole) if whole is not None else (data,):
        # Through a JSON round trip, as read from a file (NaN and inf survive it in Python's json).
        parsed = json.loads(json.dumps(payload))
        config = _expect_success_or_user_error(lambda p=parsed: config_from_json(config_cls, p, "config.json"))
        assert config is None or isinstance(config, config_cls)


# ---------------------------------------------------------------------------------------------------------
# (c) run directories and checkpoints.


def _safetensors_bytes(header: Any, payload: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + payload


def _edit_weights(path: Path, change: Callable[[dict[str, torch.Tensor]], None]) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    change(tensors)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))


def apply_run_mutation(root: Path, mutation: tuple[Any, ...]) -> None:
    op, *args = mutation
    config_file, weights = root / "config.json", root / "model.safetensors"
    config = json.loads(config_file.read_text())
    if op == "config_text":
        config_file.write_bytes(args[0])
    elif op == "config_truncate":
        data = config_file.read_bytes()
        config_file.write_bytes(data[: int(args[0] * len(data))])
    elif op == "config_drop":
        config.pop(args[0], None)
        config_file.write_text(json.dumps(config))
    elif op == "config_set":
        config[args[0]] = args[1]
        config_file.write_text(json.dumps(config))
    elif op == "config_replace":
        config_file.write_text(json.dumps(args[0]))
    elif op == "policy_config_set":
        config["policy_config"][args[0]] = args[1]
        config_file.write_text(json.dumps(config))
    elif op == "policy_config_drop":
        config["policy_config"].pop(args[0], None)
        config_file.write_text(json.dumps(config))
    elif op == "weights_truncate":
        data = weights.read_bytes()
        weights.write_bytes(data[: int(args[0] * len(data))])
    elif op == "weights_flip":
        data = bytearray(weights.read_bytes())
        for position, xor in args[0]:
            data[min(int(position * len(data)), len(data) - 1)] ^= xor
        weights.write_bytes(bytes(data))
    elif op == "weights_delete":
        weights.unlink()
    elif op == "weights_header":
        weights.write_bytes(_safetensors_bytes(args[0], args[1]))
    elif op == "weights_reshape":

        def reshape(tensors: dict[str, torch.Tensor]) -> None:
            name = sorted(tensors)[args[0] % len(tensors)]
            if args[1] == "drop":
                del tensors[name]
            elif args[1] == "extra":
                tensors["extra.weight"] = torch.zeros(2)
            elif args[1] == "grow":
                tensors[name] = torch.zeros(tensors[name].numel() + 1)
            elif args[1] == "flatten":
                tensors[name] = tensors[name].flatten()
            else:
                tensors[name] = tensors[name].to(getattr(torch, args[1]))

        _edit_weights(weights, reshape)
    else:
        raise AssertionError(f"unknown mutation {op!r}")


policy_config_fields = st.sampled_from(
    sorted({f for name, (cls, _) in POLICIES.items() for f in cls.__dataclass_fields__} | {"unknown"})
)
policy_config_values = (
    small_ints
    | plausible_shapes
    | st.integers(2**20, 2**40)
    | json_values
    | st.sampled_from(["conv", "mlp", "per_feature", "none"])
)
run_mutations = st.one_of(
    st.tuples(st.just("config_text"), st.binary(max_size=40)),
    st.tuples(st.just("config_truncate"), fractions),
    st.tuples(
        st.just("config_drop"), st.sampled_from(["format", "policy", "policy_config", "dataset", "train_config"])
    ),
    st.tuples(
        st.just("config_set"),
        st.sampled_from(["format", "policy", "policy", "policy_config", "dataset", "train_config"]),
        json_values | st.sampled_from(["bc", "procedure_cloning", "nope", "clonekit.run"]),
    ),
    st.tuples(st.just("config_replace"), json_values),
    st.tuples(st.just("policy_config_set"), policy_config_fields, policy_config_values),
    st.tuples(st.just("policy_config_set"), policy_config_fields, policy_config_values),
    st.tuples(st.just("policy_config_drop"), policy_config_fields),
    st.tuples(st.just("weights_truncate"), fractions),
    st.tuples(st.just("weights_flip"), st.lists(st.tuples(fractions, st.integers(1, 255)), min_size=1, max_size=6)),
    st.tuples(st.just("weights_delete")),
    st.tuples(
        st.just("weights_header"),
        json_values
        | st.fixed_dictionaries(
            {"head.linear.weight": st.fixed_dictionaries({"dtype": json_values, "shape": json_values})}
        )
        | st.fixed_dictionaries(
            {
                "x": st.fixed_dictionaries(
                    {
                        "dtype": st.sampled_from(["F32", "F64", "I64", "BOOL", "F8_E4M3", "Q9"]),
                        "shape": plausible_shapes,
                        "data_offsets": st.lists(small_ints, max_size=3),
                    }
                )
            }
        ),
        st.binary(max_size=64),
    ),
    st.tuples(
        st.just("weights_reshape"),
        st.integers(0, 30),
        st.sampled_from(["drop", "extra", "grow", "flatten", "float64", "float16", "int64"]),
    ),
)


@settings(FUZZ, max_examples=RUN_EXAMPLES)
@given(which=st.sampled_from(["run_bc", "run_pc"]), mutation=run_mutations)
def test_mutated_runs(clean: dict[str, Path], which: str, mutation: tuple[Any, ...]) -> None:
    root = _copy(clean, which)
    try:
        apply_run_mutation(root, mutation)
        before = tree_hash(root)
        policy = _expect_success_or_user_error(lambda: load_policy(root))
        if policy is not None:
            assert not policy.training
        assert tree_hash(root) == before
    finally:
        shutil.rmtree(root)


# ---------------------------------------------------------------------------------------------------------
# The CLI on top: exit code 2, one stderr line, inputs untouched.


def _cli_cases() -> Iterator[tuple[str, str, tuple[Any, ...], list[str]]]:
    yield "inspect truncated column", "maze", ("truncate", 1, 0.5), ["inspect", "{root}"]
    yield "inspect bad space", "maze", ("space_set", "action", "n", "four"), ["inspect", "{root}"]
    yield "inspect --verify NaN obs", "text", ("value", 1, 0.5, 0, math.nan), ["inspect", "{root}", "--verify"]
    yield (
        "train on garbled meta",
        "maze",
        ("meta_text", b"\x00{"),
        ["train", "bc", "--data", "{root}", "--out", "{out}"],
    )
    yield "eval garbled weights", "run_bc", ("weights_truncate", 0.3), ["eval", "{root}"]
    yield "eval weights do not fit", "run_pc", ("policy_config_set", "hidden_channels", 5), ["eval", "{root}"]
    yield "eval huge network", "run_pc", ("policy_config_set", "num_layers", 10**12), ["eval", "{root}"]
    yield "eval policy renamed", "run_pc", ("config_set", "policy", "bc"), ["eval", "{root}"]
    yield "eval dataset block junk", "run_bc", ("config_set", "dataset", [1]), ["eval", "{root}"]


@pytest.mark.parametrize(
    ("which", "mutation", "argv"), [case[1:] for case in _cli_cases()], ids=[case[0] for case in _cli_cases()]
)
def test_cli_reports_one_line(
    clean: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    which: str,
    mutation: tuple[Any, ...],
    argv: list[str],
) -> None:
    root = _copy(clean, which)
    out = clean["scratch"] / f"out-{next(_copies)}"
    try:
        if which.startswith("run"):
            apply_run_mutation(root, mutation)
        else:
            apply_dataset_mutation(root, mutation)
        before = tree_hash(root)
        code = main([arg.format(root=root, out=out) for arg in argv])
        assert_one_error_line(code, capsys.readouterr().err)
        assert tree_hash(root) == before
        assert not out.exists()
    finally:
        shutil.rmtree(root)
