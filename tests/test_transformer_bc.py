"""transformer_bc (ACT-style transformer over an observation history with action chunks) and its goal variant:
learning on mazes, on Avoiding and on a task that needs the previous observation; the policy contract."""

from __future__ import annotations

from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from clonekit.checkpoint import MODEL_FILE, load_policy
from clonekit.data import Dataset, DatasetWriter, array_stream
from clonekit.data.windows import sample_batch
from clonekit.envs import get_env_family
from clonekit.errors import ConfigError, DatasetError
from clonekit.evaluation import rollout, split_tasks
from clonekit.experts.collect import collect
from clonekit.policies import build_policy
from clonekit.policies.transformer_bc import TransformerBCConfig
from clonekit.train import TrainConfig, policy_config_for, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {"hidden_sizes": [64], "d_model": 64, "num_layers": 1, "feedforward": 64}
MAZE_SMALL = {**SMALL, "conv_channels": [8, 16]}
PIXEL_MAZE = {"obs": "pixels", "size": 7, "cell_pixels": 2}  # 14x14 pictures


def _config(steps: int, seed: int = 0, checkpoint_every: int | None = None) -> TrainConfig:
    return TrainConfig(
        steps=steps, batch_size=64, seed=seed, checkpoint_every=checkpoint_every or steps, tensorboard=False
    )


def test_transformer_bc_learns_the_training_mazes(maze_data: Dataset, tmp_path: Path) -> None:
    overrides = {**MAZE_SMALL, "history": 1, "chunk": 4}
    policy = train("transformer_bc", maze_data, tmp_path / "run", _config(300), overrides, show_progress=False)
    tasks = split_tasks(maze_data.env, "train", seed=11, num_tasks=20)
    success = rollout(policy, get_env_family("maze"), tasks, episodes=60, seed=11).success.mean()
    # Measured 0.68-0.77 (training seeds 0-2; bc reaches 0.77 at 600 steps, an untrained network about 0.05).
    assert success >= 0.55, success


def test_transformer_bc_learns_to_avoid_the_obstacles(avoiding_data: Dataset, tmp_path: Path) -> None:
    overrides = {**SMALL, "history": 2, "chunk": 4}  # temporal ensembling, L1 loss: the defaults
    policy = train("transformer_bc", avoiding_data, tmp_path / "run", _config(400), overrides, show_progress=False)
    assert policy.config.execution == "ensemble" and policy.config.continuous_loss == "l1"
    tasks = split_tasks(avoiding_data.env, "test", seed=5, num_tasks=40)
    success = rollout(policy, get_env_family("avoiding"), tasks, episodes=40, seed=5).success.mean()
    # Unseen start states. Measured 0.70-0.90 (training seeds 0-2); continuous_bc with the MSE head, which
    # averages the 8 paths, scored 0.25-0.45 at 300 steps.
    assert success >= 0.6, success


def _cue_data(path: Path, episodes: int, seed: int) -> Dataset:
    """Episodes of 6 steps observing a random sign ``x_t`` (shape (1,)); the right action is the sign seen one
    step before, ``a_t = [x_{t-1} > 0]`` (``x_0`` itself at the first step), so it needs the previous frame."""
    rng = np.random.default_rng(seed)
    streams = [
        array_stream("obs", "float32", (1,)),
        array_stream("action", "int64"),
        array_stream("reward", "float32"),
        array_stream("terminated", "bool"),
        array_stream("truncated", "bool"),
    ]
    spaces = {"observation": gymnasium.spaces.Box(-1, 1, (1,), np.float32), "action": gymnasium.spaces.Discrete(2)}
    with DatasetWriter(path, streams, spaces=spaces) as writer:
        for _ in range(episodes):
            signs = rng.choice([-1.0, 1.0], size=6).astype(np.float32)
            previous = np.concatenate([signs[:1], signs[:-1]])
            writer.add_episode(
                {
                    "obs": signs[:, None],
                    "action": (previous > 0).astype(np.int64),
                    "reward": np.zeros(6, np.float32),
                    "terminated": np.arange(6) == 5,
                    "truncated": np.zeros(6, bool),
                }
            )
    return Dataset.open(path)


def _episode_accuracy(policy: torch.nn.Module, data: Dataset) -> float:
    """Accuracy of ``act`` stepping through every episode of ``data`` (6 steps each), all episodes at once."""
    obs = torch.from_numpy(np.array(data.column("obs"))).view(data.num_episodes, 6, 1)
    labels = torch.from_numpy(np.array(data.column("action"))).view(data.num_episodes, 6)
    state = policy.initial_state(data.num_episodes)
    correct = []
    with torch.inference_mode():
        for t in range(6):
            action, state = policy.act({"obs": obs[:, t]}, state)
            correct.append(action == labels[:, t])
    return float(torch.stack(correct).float().mean())


def test_a_history_of_two_frames_solves_what_one_frame_cannot(tmp_path: Path) -> None:
    data = _cue_data(tmp_path / "cue", episodes=100, seed=0)
    unseen = _cue_data(tmp_path / "unseen", episodes=200, seed=1)
    accuracy = {}
    for history in (1, 2):
        # chunk 1: with longer chunks ensembled, the chunk predicted one step earlier saw x_{t-1} and carries it
        # (a one-frame policy with chunk 2 scored 0.91), so the history would not be what is tested.
        overrides = {**SMALL, "history": history, "chunk": 1}
        policy = train("transformer_bc", data, tmp_path / f"h{history}", _config(150), overrides, show_progress=False)
        accuracy[history] = _episode_accuracy(policy, unseen)
    # One frame can only guess the 5 later steps of 6: about (1 + 5 / 2) / 6 = 0.58. Measured: 1.00 and 0.58.
    assert accuracy[2] >= 0.95 and accuracy[1] <= 0.7, accuracy


def _rollout_actions(policy: torch.nn.Module, frames: torch.Tensor) -> list[torch.Tensor]:
    """Actions of ``act`` over ``frames`` ``(T, B, *obs_shape)``, the state carried from step to step."""
    state, actions = policy.initial_state(frames.shape[1]), []
    with torch.inference_mode():
        for step in frames:
            action, state = policy.act({"obs": step}, state)
            actions.append(action)
    return actions


@pytest.mark.parametrize("execution", ["ensemble", "receding"])
def test_save_load_gives_identical_actions_over_steps(execution: str, avoiding_data: Dataset, tmp_path: Path) -> None:
    overrides = {**SMALL, "history": 3, "chunk": 3, "execution": execution}
    policy = train("transformer_bc", avoiding_data, tmp_path / "run", _config(5), overrides, show_progress=False)
    loaded = load_policy(tmp_path / "run")
    frames = torch.from_numpy(np.array(avoiding_data.column("obs")[:20])).view(4, 5, 2)
    for a, b in zip(_rollout_actions(policy, frames), _rollout_actions(loaded, frames), strict=True):
        assert a.shape == (5, 2)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for key, value in policy.state_dict().items():
        torch.testing.assert_close(value, loaded.state_dict()[key], rtol=0, atol=0)


@pytest.mark.parametrize("data_name", ["maze_data", "avoiding_data"])
def test_compute_loss_does_not_mutate_the_batch(data_name: str, request: pytest.FixtureRequest) -> None:
    data: Dataset = request.getfixturevalue(data_name)
    policy = build_policy("transformer_bc", policy_config_for("transformer_bc", data, {**MAZE_SMALL, "history": 3}))
    batch = sample_batch(data, 16, torch.Generator().manual_seed(0), ["obs", "action"], policy.sample_windows())
    assert batch["obs"].shape[1] == 3 and batch["action"].shape[1] == 4  # history and chunk windows
    before = {k: v.clone() for k, v in batch.items()}
    loss, info = policy.compute_loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and info
    for key in before:
        torch.testing.assert_close(batch[key], before[key], rtol=0, atol=0)


def test_act_is_batched_and_keeps_a_history_per_slot(maze_data: Dataset) -> None:
    torch.manual_seed(0)
    config = policy_config_for("transformer_bc", maze_data, {**MAZE_SMALL, "history": 2})
    policy = build_policy("transformer_bc", config).eval()
    assert policy.config.num_actions == 4 and policy.config.action_shape == ()
    frames = torch.from_numpy(np.array(maze_data.column("obs")[:12])).view(3, 4, 3, 16, 16)
    together = _rollout_actions(policy, frames)
    for slot in range(4):
        alone = _rollout_actions(policy, frames[:, slot : slot + 1])
        for step in range(3):
            assert together[step].dtype == torch.int64
            torch.testing.assert_close(together[step][slot : slot + 1], alone[step], rtol=0, atol=0)


def test_resume_reproduces_the_uninterrupted_weights(avoiding_data: Dataset, tmp_path: Path) -> None:
    overrides = {**SMALL, "history": 2, "chunk": 3, "dropout": 0.1}  # dropout: noise drawn inside the loss
    train("transformer_bc", avoiding_data, tmp_path / "whole", _config(12, 3, 5), overrides, show_progress=False)
    train("transformer_bc", avoiding_data, tmp_path / "cut", _config(5, 3, 5), overrides, show_progress=False)
    (tmp_path / "cut" / MODEL_FILE).unlink()  # as if the process died after the checkpoint at step 5
    train("transformer_bc", avoiding_data, tmp_path / "cut", _config(12, 3, 5), resume=True, show_progress=False)
    whole, cut = load_file(str(tmp_path / "whole" / MODEL_FILE)), load_file(str(tmp_path / "cut" / MODEL_FILE))
    assert whole.keys() == cut.keys()
    for key in whole:
        assert torch.equal(whole[key], cut[key]), key


def test_pixel_observations_train_and_act(tmp_path: Path) -> None:
    data = collect(
        "maze", "bfs", episodes=20, seed=0, out=tmp_path / "d", num_tasks=2, env_kwargs=PIXEL_MAZE, show_progress=False
    )
    assert data.streams["obs"].shape == (3, 14, 14)
    overrides = {**SMALL, "encoder": "cnn", "conv_channels": [8, 16], "random_shift": 1, "history": 2}
    policy = train("transformer_bc", data, tmp_path / "run", _config(4), overrides, show_progress=False)
    tasks = split_tasks(data.env, "train", seed=0, num_tasks=2)
    results = rollout(policy, get_env_family("maze"), tasks, episodes=4, seed=0, env_kwargs=PIXEL_MAZE)
    assert len(results.success) >= 2 and (results.lengths >= 1).all()
    loaded = load_policy(tmp_path / "run")
    frames = torch.from_numpy(np.array(data.column("obs")[:9])).view(3, 3, 3, 14, 14)
    for a, b in zip(_rollout_actions(policy, frames), _rollout_actions(loaded, frames), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_goal_variant_reads_the_goal_and_needs_it(avoiding_data: Dataset, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="'goal'"):
        train("transformer_goal_bc", avoiding_data, tmp_path / "x", _config(1), show_progress=False)
    data = collect("avoiding-goal", "paths", episodes=8, seed=0, out=tmp_path / "d", num_tasks=4, show_progress=False)
    policy = train("transformer_goal_bc", data, tmp_path / "run", _config(4), SMALL, show_progress=False)
    assert policy.config.goal_shape == (2,)
    obs = torch.zeros(2, 2)
    goals = torch.tensor([[-0.9, 1.0], [0.9, 1.0]])
    with torch.inference_mode():
        left, _ = policy.act({"obs": obs, "goal": goals[:1].expand(2, 2)})
        right, _ = policy.act({"obs": obs, "goal": goals[1:].expand(2, 2)})
        assert not torch.equal(left, right)  # the goal token changes the prediction
        with pytest.raises(ConfigError, match="'goal' input"):
            policy.act({"obs": obs})


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="num_actions, action_shape"):
        TransformerBCConfig(obs_shape=(2,), num_actions=4, action_shape=(2,))
    with pytest.raises(ConfigError, match="num_heads: expected a divisor of d_model=64"):
        TransformerBCConfig(obs_shape=(2,), num_actions=4, num_heads=5)
    with pytest.raises(ConfigError, match="goal_shape: transformer_bc reads no goal"):
        build_policy("transformer_bc", {"obs_shape": [2], "action_shape": [2], "goal_shape": [2]})
