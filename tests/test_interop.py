"""Interop checked by the other libraries themselves: robomimic's loaders and minari's reader open clonekit's
exports, minari's own ``DataCollector`` output imports, and gymnasium's vector API runs every registered env.

robomimic 0.3.0 is installed without its dependencies (see the Makefile's setup): its data utilities need only
tqdm, termcolor and six, but its package imports torchvision at module level for its vision models, which these
tests never use. Where torchvision is not installed, ``robomimic_modules`` imports robomimic with a placeholder
``torchvision`` that raises when anything in it is called, and removes the placeholder afterwards.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import h5py
import minari
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import clonekit.envs  # noqa: F401 - registers the clonekit/ gymnasium ids
from clonekit.data import Dataset, DatasetWriter
from clonekit.data.convert import convert
from clonekit.data.splits import SPLITS_KEY, episode_splits
from clonekit.errors import DatasetError
from clonekit.experts.collect import collect

_TORCHVISION_PLACEHOLDERS = (
    "torchvision",
    "torchvision.models",
    "torchvision.transforms",
    "torchvision.transforms.functional",
)


@dataclass
class Robomimic:
    """robomimic's modules the tests call."""

    file_utils: Any
    obs_utils: Any
    env_utils: Any
    env_base: Any
    sequence_dataset: Any


def _placeholder_module(name: str) -> types.ModuleType:
    module = types.ModuleType(name)

    def unavailable(attr: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(f"{name}.{attr}: torchvision is not installed (robomimic's vision models need it)")

        return call

    module.__getattr__ = unavailable  # type: ignore[method-assign]
    return module


@pytest.fixture(scope="module")
def robomimic_modules() -> Robomimic:
    """robomimic's data utilities, imported (with a placeholder torchvision where torchvision is missing)."""
    if importlib.util.find_spec("robomimic") is None:
        pytest.fail(
            "robomimic is not installed: run `make setup` (pip install --no-deps robomimic==0.3.0 plus "
            "tqdm, termcolor and six, as in the Makefile)",
            pytrace=False,
        )
    placeholders = importlib.util.find_spec("torchvision") is None
    if placeholders:
        modules = {name: _placeholder_module(name) for name in _TORCHVISION_PLACEHOLDERS}
        for name, module in modules.items():
            parent, _, child = name.rpartition(".")
            if parent:
                setattr(modules[parent], child, module)
        sys.modules.update(modules)
    try:
        names = ("file_utils", "obs_utils", "env_utils", "dataset")
        loaded = {name: importlib.import_module(f"robomimic.utils.{name}") for name in names}
        env_base = importlib.import_module("robomimic.envs.env_base")
    finally:
        if placeholders:
            for name in _TORCHVISION_PLACEHOLDERS:
                sys.modules.pop(name, None)
    return Robomimic(
        loaded["file_utils"], loaded["obs_utils"], loaded["env_utils"], env_base, loaded["dataset"].SequenceDataset
    )


@pytest.mark.parametrize("which", ["maze_data", "avoiding_data"])
def test_robomimic_loaders_read_the_hdf5_export_and_the_round_trip_is_exact(
    which: str, request: pytest.FixtureRequest, robomimic_modules: Robomimic, tmp_path: Path
) -> None:
    data: Dataset = request.getfixturevalue(which)
    rm = robomimic_modules
    path = tmp_path / "export.hdf5"
    convert(data.path, path, "hdf5")

    env_meta = rm.file_utils.get_env_metadata_from_dataset(str(path))
    assert rm.env_utils.get_env_type(env_meta=env_meta) == rm.env_base.EnvType.GYM_TYPE
    assert env_meta["env_name"] == data.env["id"] and env_meta["env_kwargs"] == data.env["kwargs"]

    # clonekit keeps images (C, H, W); robomimic's rgb modality expects (H, W, C), so obs is declared low_dim.
    rm.obs_utils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": ["obs"], "rgb": []}})
    shape_meta = rm.file_utils.get_shape_metadata_from_dataset(str(path), all_obs_keys=["obs"])
    action_dim = int(np.prod(data.streams["action"].shape, dtype=np.int64))  # scalar (discrete) actions: 1
    assert shape_meta["ac_dim"] == action_dim
    assert list(shape_meta["all_shapes"]["obs"]) == list(data.streams["obs"].shape)

    sequences = rm.sequence_dataset(str(path), obs_keys=("obs",), dataset_keys=("actions", "rewards", "dones"))
    assert len(sequences) == data.num_steps
    obs, action = np.asarray(data.column("obs")), np.asarray(data.column("action")).reshape(data.num_steps, -1)
    reward, terminated = np.asarray(data.column("reward")), np.asarray(data.column("terminated"))
    episode = data.num_episodes - 1
    start, length = int(data.episode_starts[episode]), int(data.episode_lengths[episode])
    for row in (0, 1, start + length - 1):  # next_obs: the following obs, the last obs at an episode's end
        item = sequences[row]
        np.testing.assert_array_equal(item["obs"]["obs"][0], obs[row])
        np.testing.assert_array_equal(item["next_obs"]["obs"][0], obs[min(row + 1, start + length - 1)])
        np.testing.assert_array_equal(item["actions"][0], action[row])
        assert item["rewards"][0] == reward[row] and item["dones"][0] == terminated[row]

    convert(path, tmp_path / "back", "clonekit")
    back = Dataset.open(tmp_path / "back")
    assert back.fingerprint == data.fingerprint  # the same column bytes: actions back as the original stream
    assert (back.streams, back.spaces, back.env, back.extra) == (data.streams, data.spaces, data.env, data.extra)


def test_robomimic_filter_keys_become_splits_and_go_back_as_mask(
    maze_data: Dataset, robomimic_modules: Robomimic, tmp_path: Path
) -> None:
    rm = robomimic_modules
    path = tmp_path / "export.hdf5"
    convert(maze_data.path, path, "hdf5")
    valid = [f"demo_{i}" for i in (7, 2, 41)]  # robomimic's split script writes them in any order
    train = [f"demo_{i}" for i in range(maze_data.num_episodes) if f"demo_{i}" not in valid]
    rm.file_utils.create_hdf5_filter_key(str(path), valid, "valid")  # robomimic writes mask/valid itself
    rm.file_utils.create_hdf5_filter_key(str(path), train, "train")

    convert(path, tmp_path / "split", "clonekit")
    split = Dataset.open(tmp_path / "split")
    assert episode_splits(split) == {
        "train": [i for i in range(maze_data.num_episodes) if i not in (2, 7, 41)],
        "valid": [2, 7, 41],
    }
    assert split.fingerprint == maze_data.fingerprint  # splits live in meta.json's extra, outside the content

    convert(tmp_path / "split", tmp_path / "again.hdf5", "hdf5")
    rm.obs_utils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": ["obs"], "rgb": []}})
    held_out = rm.sequence_dataset(
        str(tmp_path / "again.hdf5"), obs_keys=("obs",), dataset_keys=("actions",), filter_by_attribute="valid"
    )
    assert held_out.demos == ["demo_2", "demo_7", "demo_41"]
    assert len(held_out) == int(maze_data.episode_lengths[[2, 7, 41]].sum())
    convert(tmp_path / "again.hdf5", tmp_path / "back", "clonekit")
    back = Dataset.open(tmp_path / "back")
    assert back.extra == split.extra and back.fingerprint == maze_data.fingerprint

    rm.file_utils.create_hdf5_filter_key(str(tmp_path / "again.hdf5"), ["demo_3"], "valid")  # re-split after export
    warnings = convert(tmp_path / "again.hdf5", tmp_path / "resplit", "clonekit")
    assert any("mask/ differs from the splits in the clonekit header" in w for w in warnings)
    assert episode_splits(Dataset.open(tmp_path / "resplit"))["valid"] == [3]


def test_bad_masks_are_one_line_errors(maze_data: Dataset, tmp_path: Path) -> None:
    path = tmp_path / "export.hdf5"
    convert(maze_data.path, path, "hdf5")
    with h5py.File(path, "a") as file:
        file["mask/valid"] = np.array([b"demo_1", b"demo_999"])
    with pytest.raises(DatasetError, match=r"mask/valid: 'demo_999' is not a demo_<i> group") as raised:
        convert(path, tmp_path / "back", "clonekit")
    assert "\n" not in str(raised.value)
    src = tmp_path / "bad-splits"
    with DatasetWriter(src, list(maze_data.streams.values()), extra={SPLITS_KEY: {"valid": [3, 1]}}) as writer:
        writer.add_episode(maze_data.episode(0))
    with pytest.raises(DatasetError, match=r"split 'valid': expected a list of episode indices in \[0, 1\)"):
        convert(src, tmp_path / "bad.hdf5", "hdf5")
    assert not (tmp_path / "bad.hdf5").exists()


def balance(obs: np.ndarray) -> np.ndarray:
    """A CartPole controller (batched ``obs -> action``): push toward the side the pole leans to."""
    return (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)


def test_minari_reads_the_export_and_recovers_the_gymnasium_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    data = collect(
        "gym:CartPole-v1",
        "py:tests.test_interop:balance",
        episodes=3,
        seed=0,
        out=tmp_path / "cartpole",
        env_kwargs={"max_episode_steps": 25},
        show_progress=False,
    )
    convert(data.path, tmp_path / "minari" / "cartpole-clonekit-v0", "minari")
    dataset = minari.load_dataset("cartpole-clonekit-v0")
    assert dataset.total_episodes == 3 and dataset.total_steps == data.num_steps
    env = dataset.recover_environment()
    try:
        assert env.spec is not None and env.spec.id == "CartPole-v1" and env.spec.max_episode_steps == 25
        first = next(dataset.iterate_episodes([0]))
        obs, _ = env.reset(seed=0)
        assert obs.shape == first.observations.shape[1:]
    finally:
        env.close()
    convert(tmp_path / "minari" / "cartpole-clonekit-v0", tmp_path / "back", "clonekit")
    assert Dataset.open(tmp_path / "back").fingerprint == data.fingerprint


def test_minari_data_collector_output_imports_and_exports_with_its_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """minari's own collector (it needs jax, from the [minari] extra) -> clonekit -> minari, env kept."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    env = minari.DataCollector(gymnasium.make("CartPole-v1", max_episode_steps=20))
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            obs, _, terminated, truncated, _ = env.step(int(balance(obs[None])[0]))
            done = terminated or truncated
    with pytest.warns(UserWarning):  # minari asks for a description and an eval env
        collected = env.create_dataset("cartpole/collected-v0", algorithm_name="balance")
    env.close()
    source = tmp_path / "minari" / "cartpole" / "collected-v0"
    convert(source, tmp_path / "ck", "clonekit")
    imported = Dataset.open(tmp_path / "ck")
    assert imported.num_steps == collected.total_steps and imported.num_episodes == 3
    convert(tmp_path / "ck", tmp_path / "minari" / "again-v0", "minari")
    recovered = minari.load_dataset("again-v0").recover_environment()
    assert recovered.spec is not None and recovered.spec.id == "CartPole-v1"
    assert recovered.spec.max_episode_steps == 20
    recovered.close()


CLONEKIT_GYM_IDS = sorted(env_id for env_id in gymnasium.registry if env_id.startswith("clonekit/"))


def test_the_registry_holds_clonekit_envs() -> None:
    assert "clonekit/Maze-v0" in CLONEKIT_GYM_IDS  # the parametrization below is not empty


@pytest.mark.parametrize("env_id", CLONEKIT_GYM_IDS)
def test_gymnasium_checker_and_make_vec_accept_every_registered_env(env_id: str) -> None:
    """gymnasium's ``check_env`` with its render check (tests/test_gym.py runs it without), then ``make_vec``."""
    env = gymnasium.make(env_id, render_mode="rgb_array")
    try:
        check_env(env.unwrapped)  # raises on any failed check
    finally:
        env.close()
    vec = gymnasium.make_vec(env_id, num_envs=2)
    try:
        obs, _ = vec.reset(seed=0)
        assert vec.num_envs == 2 and vec.observation_space.contains(obs)  # the batched space: both envs
        vec.action_space.seed(0)
        for _ in range(3):
            obs, reward, terminated, truncated, _ = vec.step(vec.action_space.sample())
            assert vec.observation_space.contains(obs)
            assert reward.shape == terminated.shape == truncated.shape == (2,)
    finally:
        vec.close()
