"""Experts from outside clonekit drive ``collect``: a py callable (batched or per observation), an object with
``predict``, a Stable-Baselines3 zip, an ONNX model from ``clonekit export`` and a clonekit run directory.

Each check replays the recorded observations through the expert itself and compares the recorded actions.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gymnasium
import numpy as np
import pytest
import torch

from clonekit.checkpoint import load_policy
from clonekit.data import Dataset
from clonekit.errors import ClonekitError, ConfigError
from clonekit.experts import Expert, OutsideExpert, make_expert
from clonekit.experts.collect import collect
from clonekit.experts.outside import FrameStack
from clonekit.export import export_onnx
from clonekit.train import TrainConfig, train
from tests.test_gym import WALK_ID, write_walk_module

ENV = f"gym:{WALK_ID}"


@pytest.fixture(scope="module", autouse=True)
def walk_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    import sys

    path = write_walk_module(tmp_path_factory.mktemp("walk_module"))
    sys.path.insert(0, str(path))
    yield
    sys.path.remove(str(path))


def _collect(expert: str, out: Path, **kwargs: object) -> Dataset:
    return collect(ENV, expert, episodes=12, seed=0, out=out, show_progress=False, **kwargs)  # type: ignore[arg-type]


def _oracle(obs: np.ndarray) -> np.ndarray:
    return (obs[:, 1] > obs[:, 0]).astype(np.int64)


@pytest.fixture(scope="module")
def walk_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BC policy trained on oracle demonstrations of the walk (20 steps: good enough as a teacher to replay)."""
    root = tmp_path_factory.mktemp("outside")
    data = _collect("py:walk1d:oracle", root / "data")
    config = TrainConfig(steps=20, batch_size=64, tensorboard=False)
    overrides = {"encoder": "mlp", "normalize_obs": "per_feature", "hidden_sizes": [16]}
    train("bc", data, root / "run", config, policy_overrides=overrides, show_progress=False)
    return root / "run"


@pytest.mark.parametrize(
    ("spec", "kwargs"),
    [("py:walk1d:oracle", {}), ("py:walk1d:one_oracle", {"batched": False}), ("py:walk1d:Predictor", {})],
)
def test_python_experts(spec: str, kwargs: dict[str, object], tmp_path: Path) -> None:
    data = _collect(spec, tmp_path / "d", expert_kwargs=kwargs)
    obs, actions = data.column("obs"), data.column("action")
    np.testing.assert_array_equal(actions, _oracle(np.asarray(obs)))
    assert data.env["expert"] == spec and data.env["expert_source"]["kind"] == "python"
    assert isinstance(make_expert(ENV, spec, **kwargs), Expert)  # the protocol, checked at run time


def test_a_per_observation_callable_called_batched_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ClonekitError, match='batched": false'):
        _collect("py:walk1d:one_oracle", tmp_path / "d")
    assert not (tmp_path / "d").exists()


def _untrained_cartpole_ppo(path: Path) -> Any:
    """An untrained SB3 PPO on CartPole, saved at ``path``."""
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, seed=0, device="cpu")
    model.save(path)
    return model


def _collect_cartpole(expert: Path, out: Path, **expert_kwargs: object) -> Dataset:
    """4 CartPole episodes of at most 20 steps with ``expert``."""
    return collect(
        "gym:CartPole-v1",
        str(expert),
        episodes=4,
        seed=0,
        out=out,
        show_progress=False,
        env_kwargs={"max_episode_steps": 20},
        expert_kwargs=expert_kwargs,
    )


def test_sb3_zip_expert(tmp_path: Path) -> None:
    model = _untrained_cartpole_ppo(tmp_path / "ppo.zip")
    data = _collect_cartpole(tmp_path / "ppo.zip", tmp_path / "d")
    obs = np.asarray(data.column("obs"))
    expected, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(data.column("action"), expected)
    assert data.env["expert_source"]["kind"] == "sb3" and len(data.env["expert_source"]["sha256"]) == 64


def test_sb3_expert_acts_on_observations_normalized_by_its_vec_normalize_statistics(tmp_path: Path) -> None:
    import pickle

    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    model = _untrained_cartpole_ppo(tmp_path / "ppo.zip")
    stats = VecNormalize(make_vec_env("CartPole-v1", n_envs=1), norm_reward=False)
    mean, var = np.array([1.0, -0.5, 0.1, 0.3]), np.array([0.01, 4.0, 0.02, 9.0])
    stats.obs_rms.mean, stats.obs_rms.var = mean, var
    stats.save(tmp_path / "vecnormalize.pkl")
    data = _collect_cartpole(tmp_path / "ppo.zip", tmp_path / "d", vec_normalize=str(tmp_path / "vecnormalize.pkl"))
    obs = np.asarray(data.column("obs"))
    normalized = np.clip((obs - mean) / np.sqrt(var + stats.epsilon), -stats.clip_obs, stats.clip_obs)
    expected, _ = model.predict(normalized.astype(np.float32), deterministic=True)
    np.testing.assert_array_equal(data.column("action"), expected)
    unnormalized, _ = model.predict(obs, deterministic=True)
    assert (unnormalized != expected).any()  # the statistics change the actions on these observations
    assert len(data.env["expert_source"]["vec_normalize_sha256"]) == 64
    zip_spec = str(tmp_path / "ppo.zip")
    with pytest.raises(ConfigError, match=r"vec_normalize of .*: expected the path of a file VecNormalize\.save wrote"):
        make_expert("gym:CartPole-v1", zip_spec, vec_normalize=str(tmp_path / "missing.pkl"))
    (tmp_path / "other.pkl").write_bytes(pickle.dumps({"mean": 0}))
    with pytest.raises(ConfigError, match="expected a pickled VecNormalize, found dict"):
        make_expert("gym:CartPole-v1", zip_spec, vec_normalize=str(tmp_path / "other.pkl"))
    accepted = r"takes no options \(a .zip takes vec_normalize and frame_stack\), got \['norm'\]"
    with pytest.raises(ConfigError, match=accepted):
        make_expert("gym:CartPole-v1", zip_spec, norm=True)
    with pytest.raises(ConfigError, match=r"frame_stack of .*: expected an integer >= 1, found 0"):
        make_expert("gym:CartPole-v1", zip_spec, frame_stack=0)


def test_sb3_expert_trained_on_stacked_frames_acts_on_them_stacked(tmp_path: Path) -> None:
    """A model trained inside VecFrameStack(env, 3): without frame_stack a one-line error that says so; with it, the
    actions are the model's on each episode's last 3 observations, zeros before its first (SB3's own stacking)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecFrameStack

    env = VecFrameStack(make_vec_env("CartPole-v1", n_envs=1), 3)
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=32, seed=0, device="cpu")  # untrained
    model.save(tmp_path / "ppo.zip")
    hint = r"""\(a VecFrameStack of 3\? pass --expert-kwargs '\{"frame_stack": 3\}'\)"""
    with pytest.raises(ConfigError, match=r"reads observations of shape \(12,\), the env gives \(4,\) " + hint):
        _collect_cartpole(tmp_path / "ppo.zip", tmp_path / "unstacked")
    data = _collect_cartpole(tmp_path / "ppo.zip", tmp_path / "d", frame_stack=3)
    assert data.env["expert_source"]["frame_stack"] == 3
    for i in range(data.num_episodes):
        episode = data.episode(i)
        history, stacked = np.zeros((3, 4), np.float32), []
        for obs in np.asarray(episode["obs"]):
            history = np.roll(history, -1, axis=0)
            history[-1] = obs
            stacked.append(history.ravel())
        expected, _ = model.predict(np.array(stacked), deterministic=True)
        np.testing.assert_array_equal(episode["action"], expected)


@pytest.mark.parametrize("shape", [(4,), (3, 8, 8), (8, 8, 3)], ids=["vector", "channel_first", "channel_last"])
def test_frame_stack_stacks_as_sb3_does(shape: tuple[int, ...]) -> None:
    """Against SB3's own StackedObservations, frame by frame after a reset (vectors, both picture layouts)."""
    from stable_baselines3.common.vec_env.stacked_observations import StackedObservations

    space = gymnasium.spaces.Box(0, 255, shape, np.uint8)
    space.seed(0)
    frames = [np.stack([space.sample(), space.sample()]) for _ in range(5)]
    sb3, ours = StackedObservations(2, 3, space), FrameStack(3)
    np.testing.assert_array_equal(ours(frames[0]), sb3.reset(frames[0]))
    for obs in frames[1:]:
        np.testing.assert_array_equal(ours(obs), sb3.update(obs, np.zeros(2, bool), [{}, {}])[0])
    ours.reset()
    np.testing.assert_array_equal(ours(frames[0]), StackedObservations(2, 3, space).reset(frames[0]))


def test_onnx_and_run_directory_experts(walk_run: Path, tmp_path: Path) -> None:
    policy = load_policy(walk_run)
    onnx = export_onnx(walk_run, tmp_path / "walk.onnx")
    for spec, kind in ((str(onnx), "onnx"), (str(walk_run), "run")):
        data = _collect(spec, tmp_path / kind)
        obs = torch.from_numpy(np.array(data.column("obs")))
        with torch.inference_mode():
            expected, _ = policy.act({"obs": obs})
        np.testing.assert_array_equal(data.column("action"), expected.numpy())
        assert data.env["expert_source"]["kind"] == kind


def test_bad_specs_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot import module 'no_such_module'"):
        make_expert(ENV, "py:no_such_module:f")
    with pytest.raises(ConfigError, match="has no attribute 'missing'"):
        make_expert(ENV, "py:walk1d:missing")
    with pytest.raises(ConfigError, match="expected a callable"):
        make_expert(ENV, "py:numpy:pi")
    with pytest.raises(ConfigError, match="file not found"):
        make_expert(ENV, str(tmp_path / "none.zip"))
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="not a loadable Stable-Baselines3 model"):
        make_expert(ENV, str(tmp_path / "bad.zip"))
    assert isinstance(make_expert(ENV, "py:walk1d:oracle"), OutsideExpert)


def test_non_finite_actions_are_one_line_errors() -> None:
    """A NaN action names the expert and the observation, not the env's observation it would have spoiled."""
    expert = OutsideExpert("py:m:f", lambda obs: np.array([[0.5], [np.nan]], np.float32), {"kind": "python"})
    expert.reset(SimpleNamespace(action_space=gymnasium.spaces.Box(-1.0, 1.0, (1,))))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"expert py:m:f: expected finite actions, found \[nan\] for observation 1"):
        expert.act(np.zeros((2, 3), np.float32))
