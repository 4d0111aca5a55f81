"""Policy defaults that follow the data, and one-line errors when a policy does not fit the data.

A new user's path: a Minari CartPole dataset (made with minari's own API, as elsewhere) trains with
``clonekit train bc`` and no ``--set``; every policy either trains on a vector dataset with no settings or
says in one line why it cannot (its name and the space or stream that does not fit).
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch

from clonekit.checkpoint import load_policy
from clonekit.cli import main
from clonekit.config import config_to_json
from clonekit.data import Dataset, DatasetWriter, array_stream
from clonekit.errors import ConfigError
from clonekit.policies import POLICIES
from clonekit.policies.bc.config import BCConfig
from clonekit.policies.continuous_bc.config import ContinuousBCConfig
from clonekit.policies.goal_bc.config import GoalBCConfig
from clonekit.train import TrainConfig, train
from tests.conftest import assert_one_error_line
from tests.foreign_data import write_cartpole_minari

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = TrainConfig(steps=2, batch_size=8, checkpoint_every=2, tensorboard=False)


def _write(path: Path, obs_space: gymnasium.spaces.Box, action_space: gymnasium.spaces.Space, goal: bool) -> Dataset:
    """3 episodes of 6 random steps with ``obs_space`` observations and ``action_space`` actions."""
    discrete = isinstance(action_space, gymnasium.spaces.Discrete)
    streams = [
        array_stream("obs", obs_space.dtype.name, obs_space.shape),
        array_stream("action", "int64" if discrete else "float32", () if discrete else action_space.shape),
        array_stream("reward", "float32"),
        array_stream("terminated", "bool"),
        array_stream("truncated", "bool"),
    ]
    if goal:
        streams.append(array_stream("goal", "float32", (2,)))
    obs_space.seed(0)
    action_space.seed(0)
    with DatasetWriter(path, streams, spaces={"observation": obs_space, "action": action_space}) as writer:
        for _ in range(3):
            steps = {
                "obs": np.stack([obs_space.sample() for _ in range(6)]),
                "action": np.stack([np.asarray(action_space.sample()) for _ in range(6)]),
                "reward": np.zeros(6, np.float32),
                "terminated": np.arange(6) == 5,
                "truncated": np.zeros(6, bool),
            }
            if goal:
                steps["goal"] = np.ones((6, 2), np.float32)
            writer.add_episode(steps)
    return Dataset.open(path)


VECTOR_OBS = gymnasium.spaces.Box(-5.0, 5.0, (4,), np.float32)
IMAGE_OBS = gymnasium.spaces.Box(0, 255, (3, 8, 8), np.uint8)
DISCRETE = gymnasium.spaces.Discrete(2)
BOX = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)


@pytest.fixture(scope="module")
def vector_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Dataset]:
    """Vector observations (4,) with Discrete(2) actions, and with Box (2,) actions and a goal stream."""
    root = tmp_path_factory.mktemp("vectors")
    return {
        "Discrete": _write(root / "discrete", VECTOR_OBS, DISCRETE, goal=False),
        "Box": _write(root / "box", VECTOR_OBS, BOX, goal=True),
    }


def _cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def test_minari_cartpole_trains_bc_with_no_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_cartpole_minari(tmp_path / "minari", episodes=6, max_steps=100)
    data, run = tmp_path / "cartpole", tmp_path / "run"
    code, err = _cli(capsys, "convert", source, data)
    assert code == 0, err
    code, err = _cli(capsys, "train", "bc", "--data", data, "--out", run, "--steps", 150, "--quiet")
    assert code == 0, err
    recorded = json.loads((run / "config.json").read_text())["policy_config"]
    assert (recorded["encoder"], recorded["normalize_obs"]) == ("mlp", "per_feature")  # resolved, not "auto"
    # The controller is a linear rule of the observation: the reloaded policy must have learned it.
    policy, dataset = load_policy(run), Dataset.open(data)
    with torch.no_grad():
        actions = policy.act({"obs": torch.as_tensor(np.array(dataset.column("obs")))})[0].numpy()
    accuracy = float((actions == np.asarray(dataset.column("action"))).mean())
    assert accuracy >= 0.85, accuracy  # 0.92 measured at 150 steps; chance is about 0.5


# policy -> the action space type it accepts; on the other one it fails in one line naming both.
ACTIONS = {
    "bc": "Discrete",
    "continuous_bc": "Box",
    "goal_bc": "Box",
    "procedure_cloning": "Discrete",
    "weighted_procedure_cloning": "Discrete",
    "recurrent_bc": "Discrete",
    "thought_cloning": "Discrete",
    "transformer_bc": "Discrete|Box",  # both: the action field that fits is filled in
    "transformer_goal_bc": "Discrete|Box",
    "dt": "Discrete|Box",
    "iql": "Discrete|Box",
    "td3bc": "Box",
    "recoil": "Discrete|Box",  # needs an expert-marking stream, which the plain vector data lacks
    "style_bc": "Box",  # needs a style stream, which the plain vector data lacks
    "hilp": "Box",  # goals are states of the same episodes (hindsight), so plain vector data is enough
    "play_lmp": "Box",
}
# Policies that read plain vectors (the others need maps with a procedure, or BabyAI observations).
VECTOR_POLICIES = ("bc", "continuous_bc", "goal_bc", "transformer_bc", "transformer_goal_bc", "dt", "iql", "td3bc")
VECTOR_POLICIES += ("hilp", "play_lmp")


def test_every_registered_policy_is_covered_here() -> None:
    # residual is trained by PPO on a base run (`clonekit finetune residual`), not from data: test_residual.py;
    # relic by PPO over multi-trial episodes (clonekit.rl.incontext): test_incontext.py
    assert set(ACTIONS) == set(POLICIES) - {"residual", "relic"}


@pytest.mark.parametrize("kind", ["Discrete", "Box"])
@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_every_policy_trains_on_vectors_with_no_settings_or_says_why_not_in_one_line(
    name: str, kind: str, vector_data: dict[str, Dataset], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = vector_data[kind]
    code, err = _cli(capsys, "train", name, "--data", data.path, "--out", tmp_path / "run", "--steps", 2, "--quiet")
    if kind not in ACTIONS[name].split("|"):
        space = str(data.space("action"))
        assert_one_error_line(code, err, f"policy {name!r}", f"expected a {ACTIONS[name]} action space", space)
    elif name in VECTOR_POLICIES and set(POLICIES[name][1].required_streams) <= set(data.streams):
        assert code == 0, err
        recorded = json.loads((tmp_path / "run" / "config.json").read_text())["policy_config"]
        # iql and td3bc have no encoder field: their networks are MLPs over the flattened observation; hilp and
        # play_lmp have neither field (MLPs over per-feature standardized vectors, always).
        fields = (recorded.get("encoder", "mlp"), recorded.get("normalize_obs", "per_feature"))
        assert fields == ("mlp", "per_feature")
        assert "normalize_obs" in recorded or name in ("hilp", "play_lmp")
    else:  # the actions fit, the data does not: the missing stream or the observation shape is named
        assert_one_error_line(code, err, repr(name))
        assert "needs stream" in err or ("obs_shape" in err and "(4,)" in err), err


@pytest.mark.parametrize(
    ("name", "setting", "needle"),
    [
        ("bc", 'encoder="conv"', "encoder: expected 'mlp' or 'auto' for observations of shape (4,)"),
        ("bc", 'normalize_obs="per_channel"', "normalize_obs: expected 'per_feature', 'none' or 'auto'"),
        ("continuous_bc", 'encoder="cnn"', "encoder: expected 'mlp' or 'auto' for observations of shape (4,)"),
    ],
)
def test_an_explicit_setting_that_does_not_fit_names_the_policy_setting_and_shape(
    name: str,
    setting: str,
    needle: str,
    vector_data: dict[str, Dataset],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = vector_data[ACTIONS[name]]
    args = ("train", name, "--data", data.path, "--out", tmp_path / "run", "--steps", 2, "--set", setting)
    code, err = _cli(capsys, *args)
    assert_one_error_line(code, err, f"policy {name!r}", needle)


def test_auto_resolves_from_the_observation_shape_and_explicit_settings_win() -> None:
    image = BCConfig(obs_shape=(3, 8, 8), num_actions=4)
    vector = BCConfig(obs_shape=(4,), num_actions=2)
    assert (image.encoder, image.normalize_obs) == ("conv", "per_channel")
    assert (vector.encoder, vector.normalize_obs) == ("mlp", "per_feature")
    assert "auto" not in config_to_json(image).values() and "auto" not in config_to_json(vector).values()
    explicit = BCConfig(obs_shape=(3, 8, 8), num_actions=4, encoder="mlp", normalize_obs="none")
    assert (explicit.encoder, explicit.normalize_obs) == ("mlp", "none")
    pictures = ContinuousBCConfig(obs_shape=(3, 8, 8), action_shape=(2,))
    assert (pictures.encoder, pictures.normalize_obs) == ("conv", "per_channel")
    # A goal joins the flattened observation, which only the MLP encoder reads.
    with_goal = GoalBCConfig(obs_shape=(3, 8, 8), action_shape=(2,), goal_shape=(2,))
    assert (with_goal.encoder, with_goal.normalize_obs) == ("mlp", "per_channel")
    with pytest.raises(ConfigError, match="encoder: expected 'mlp' or 'auto' with a goal input"):
        GoalBCConfig(obs_shape=(3, 8, 8), action_shape=(2,), goal_shape=(2,), encoder="conv")


@pytest.mark.parametrize("name", ["bc", "continuous_bc"])
def test_image_data_gets_conv_and_per_channel_and_the_run_reloads_identically(name: str, tmp_path: Path) -> None:
    action_space = DISCRETE if name == "bc" else BOX
    data = _write(tmp_path / "images", IMAGE_OBS, action_space, goal=False)
    trained = train(name, data, tmp_path / "run", TINY, show_progress=False).eval()
    assert (trained.config.encoder, trained.config.normalize_obs) == ("conv", "per_channel")
    reloaded = load_policy(tmp_path / "run")
    assert reloaded.config == trained.config
    obs = {"obs": torch.as_tensor(np.array(data.column("obs")))}
    with torch.no_grad():
        torch.testing.assert_close(reloaded.act(obs)[0], trained.act(obs)[0], rtol=0, atol=0)
