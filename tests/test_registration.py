"""The public registration API (``clonekit.register_env/register_expert/register_policy``) and plugins found
through the ``clonekit.plugins`` entry-point group in every process, a Ray worker included."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import clonekit
from clonekit import registry
from clonekit.checkpoint import load_policy
from clonekit.data import Dataset
from clonekit.envs import ENVS, get_env_family
from clonekit.errors import ConfigError, UnknownNameError
from clonekit.experts import EXPERTS, make_expert
from clonekit.experts.collect import collect
from clonekit.policies import POLICIES, policy_classes
from clonekit.policies.bc import BCConfig, BCPolicy
from clonekit.train import TrainConfig, train
from tests.test_gym import write_walk_module

PLUGIN_SOURCE = '''
"""A clonekit plugin: the 1-D walk as its own env family, with an oracle expert."""
import numpy as np

import clonekit
from clonekit.envs.gym import GymFamily


class WalkFamily(GymFamily):
    """The 1-D walk (walk1d:Walk1D-v0) as an env family of its own."""

    name = "walk"

    def options(self, kwargs):
        return super().options({**kwargs, "id": "walk1d:Walk1D-v0"})


class Oracle:
    """Steps towards the goal."""

    name = "oracle"

    def streams(self, observation_shape):
        return []

    def reset(self, env, seed=None):
        pass

    def act(self, obs):
        return (obs[:, 1] > obs[:, 0]).astype(np.int64), {}


def register():
    clonekit.register_env("walk", WalkFamily())
    clonekit.register_expert("walk", "oracle", Oracle)
'''


def write_plugin(directory: Path) -> Path:
    """The plugin module, the walk env it uses and a dist-info declaring its entry point, in ``directory``."""
    write_walk_module(directory)
    (directory / "ck_walk_plugin.py").write_text(PLUGIN_SOURCE)
    info = directory / "ck_walk_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ck-walk-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[clonekit.plugins]\nwalk = ck_walk_plugin:register\n")
    return directory


def test_an_entry_point_plugin_is_seen_by_the_cli_and_inside_a_ray_worker(tmp_path: Path) -> None:
    """A fresh process (the CLI) finds the plugin through its entry point; with --ray, each batch is collected in a
    Ray worker that looks the env family and expert up itself, so the worker must have loaded the plugin too."""
    plugin = write_plugin(tmp_path / "plugin")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "data"
    args = ["collect", "walk", "--expert", "oracle", "--episodes", "6", "--batch-size", "3", "--out", str(out)]
    command = [sys.executable, "-m", "clonekit", *args, "--quiet", "--ray", "--workers", "1"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    data = Dataset.open(out)
    assert data.num_episodes == 6 and data.env["id"] == "walk" and data.env["kwargs"]["id"] == "walk1d:Walk1D-v0"
    obs = np.asarray(data.column("obs"))
    np.testing.assert_array_equal(data.column("action"), (obs[:, 1] > obs[:, 0]).astype(np.int64))
    with pytest.raises(UnknownNameError, match="unknown env 'walk'"):  # this process has no such plugin
        get_env_family("walk")


@pytest.fixture
def clean_registries() -> Iterator[None]:
    """Registrations made by a test are undone after it."""
    snapshots: list[tuple[dict[Any, Any], dict[Any, Any]]] = [(d, dict(d)) for d in (ENVS, EXPERTS, POLICIES)]
    yield
    for registry_dict, snapshot in snapshots:
        registry_dict.clear()
        registry_dict.update(snapshot)


class _Oracle:
    name = "oracle"

    def streams(self, observation_shape: tuple[int, ...]) -> list[Any]:
        return []

    def reset(self, env: Any, seed: int | None = None) -> None:
        pass

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return np.zeros(len(obs), dtype=np.int64), {}


class TinyBC(BCPolicy):
    """BC under another name (a registered policy)."""

    name = "tiny_bc"


def test_register_env_expert_and_policy(clean_registries: None, tmp_path: Path) -> None:
    family = get_env_family("maze")
    clonekit.register_env("maze-copy", family)
    assert get_env_family("maze-copy") is family
    with pytest.raises(ConfigError, match="already registered"):
        clonekit.register_env("maze", get_env_family("avoiding"))
    with pytest.raises(ConfigError, match="lacks method"):
        clonekit.register_env("broken", object())
    with pytest.raises(ConfigError, match="name: expected"):
        clonekit.register_env("gym:x", family)

    clonekit.register_expert("maze-copy", "zeros", _Oracle)
    assert isinstance(make_expert("maze-copy", "zeros"), _Oracle)
    with pytest.raises(UnknownNameError, match="zeros"):
        make_expert("maze", "zeros")
    with pytest.raises(ConfigError, match="factory"):
        clonekit.register_expert("maze", "bad", 3)  # type: ignore[arg-type]

    clonekit.register_policy("tiny_bc", BCConfig, TinyBC)
    assert policy_classes("tiny_bc") == (BCConfig, TinyBC)
    with pytest.raises(ConfigError, match="already registered"):
        clonekit.register_policy("bc", BCConfig, TinyBC)
    data = collect("maze-copy", "zeros", episodes=2, seed=0, out=tmp_path / "d", num_tasks=1, show_progress=False)
    train("tiny_bc", data, tmp_path / "run", TrainConfig(steps=2, batch_size=8, tensorboard=False), show_progress=False)
    assert type(load_policy(tmp_path / "run")) is TinyBC


def test_a_failing_plugin_is_a_one_line_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = EntryPoint(name="broken", value="no_such_plugin_module:register", group=registry.PLUGIN_GROUP)
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "entry_points", lambda group: [broken])
    with pytest.raises(ConfigError, match=r"clonekit plugin 'broken' \(no_such_plugin_module:register.*ModuleNotFound"):
        get_env_family("maze")
    assert registry.load_plugins() == []  # tried once per process
