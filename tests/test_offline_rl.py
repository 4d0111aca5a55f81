"""Offline RL policies ``iql`` (discrete and continuous actions) and ``td3bc``: they learn from mixed data where
behaviour cloning of all of it fails, and they keep the policy contract (save -> load, an unmutated batch,
exact resume, ONNX export, a one-line error on data they cannot use).

Two tiny datasets, made here:

* *Ridge* (continuous, 1-D): the agent starts on a ridge ``|x| <= 0.1`` where it moves by ``0.1 * a``; off the
  ridge it slides away from it by 0.2 per step whatever it does, to the goal (``x >= 1``: reward 1, terminated)
  on the right or into a pit (``x <= -1``: reward 0, terminated) on the left. So the move on the ridge decides
  the episode. Data: 10 expert episodes (``a ~ +0.8``), 30 wrong-way ones (``a ~ -0.8``), 10 uniformly random
  ones; BC of all of it averages to a leftward move and falls into the pit from most starts.
* *Maze mix* (discrete): 12 BFS-expert and 60 random-action episodes on two 7x7 mazes (0/1 success reward;
  most random episodes are truncated). BC of all of it mostly wanders.

Both are evaluated by playing every start (deterministic policies and envs: each start once).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file

from clonekit.checkpoint import MODEL_FILE, load_policy
from clonekit.cli import main
from clonekit.data import Dataset, DatasetWriter, array_stream
from clonekit.data.windows import sample_batch
from clonekit.envs.maze import MazeTask, MazeVecEnv, sample_tasks
from clonekit.experts.bfs import BFSExpert
from clonekit.export import export_policy_onnx
from clonekit.policies import Policy, build_policy
from clonekit.train import TrainConfig, policy_config_for, train
from tests.conftest import assert_one_error_line

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RIDGE, STEP, SLIDE, RIDGE_LIMIT = 0.1, 0.1, 0.2, 15
MAZE_SIZE = 7
STREAMS = ("obs", "action", "reward", "terminated", "truncated")

# Learning runs: the papers' settings except a faster target average (and, on the maze, gamma 0.9 and beta 10,
# so that one wasted move costs enough value to be seen), which these few hundred steps need.
LEARN = TrainConfig(steps=300, batch_size=128, seed=0, checkpoint_every=10**6, log_every=300, tensorboard=False)
RIDGE_SETTINGS: dict[str, dict[str, Any]] = {
    "continuous_bc": {"hidden_sizes": [64, 64]},
    "iql": {"hidden_sizes": [64, 64], "polyak": 0.1},
    "td3bc": {"hidden_sizes": [64, 64], "polyak": 0.1},
}
MAZE_SETTINGS: dict[str, dict[str, Any]] = {
    "bc": {"hidden_sizes": [64], "encoder": "mlp"},
    "iql": {"hidden_sizes": [64, 64], "polyak": 0.1, "gamma": 0.9, "beta": 10.0},
}
# Contract runs: tiny networks, a few steps.
SMALL = {"hidden_sizes": [16]}
CASES = {"iql_continuous": ("iql", "ridge"), "iql_discrete": ("iql", "maze"), "td3bc": ("td3bc", "ridge")}


def _ridge_move(x: np.ndarray, action: np.ndarray) -> np.ndarray:
    on_ridge = np.abs(x) <= RIDGE
    return np.where(on_ridge, x + STEP * np.clip(action, -1, 1), x + SLIDE * np.sign(x))


def _write(path: Path, obs_space: gymnasium.spaces.Box, action_space: gymnasium.spaces.Space) -> DatasetWriter:
    discrete = isinstance(action_space, gymnasium.spaces.Discrete)
    streams = [
        array_stream("obs", obs_space.dtype.name, obs_space.shape),
        array_stream("action", "int64" if discrete else "float32", () if discrete else action_space.shape),
        array_stream("reward", "float32", ()),
        array_stream("terminated", "bool", ()),
        array_stream("truncated", "bool", ()),
    ]
    return DatasetWriter(path, streams, spaces={"observation": obs_space, "action": action_space})


@pytest.fixture(scope="module")
def ridge_data(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    rng = np.random.default_rng(0)
    box = gymnasium.spaces.Box(-1, 1, (1,), np.float32)
    path = tmp_path_factory.mktemp("offline_rl") / "ridge"
    with _write(path, box, box) as writer:
        for kind in ["expert"] * 10 + ["wrong"] * 30 + ["random"] * 10:
            x = rng.uniform(-RIDGE, RIDGE)
            steps: dict[str, list[Any]] = {name: [] for name in STREAMS}
            for t in range(RIDGE_LIMIT):
                mean = {"expert": 0.8, "wrong": -0.8}.get(kind)
                a = float(np.clip(mean + 0.2 * rng.standard_normal() if mean else rng.uniform(-1, 1), -1, 1))
                steps["obs"].append([x])
                steps["action"].append([a])
                x = float(_ridge_move(np.array(x), np.array(a)))
                done = abs(x) >= 1
                steps["reward"].append(float(x >= 1))
                steps["terminated"].append(done)
                steps["truncated"].append(not done and t == RIDGE_LIMIT - 1)
                if done:
                    break
            writer.add_episode(
                {
                    name: np.array(values, dtype=np.float32 if name in ("obs", "action", "reward") else bool)
                    for name, values in steps.items()
                }
            )
    return Dataset.open(path)


def _ridge_success(policy: Policy) -> float:
    """Success rate from 19 starts spread over the ridge."""
    x = np.linspace(-0.09, 0.09, 19)
    alive, success = np.ones(len(x), dtype=bool), np.zeros(len(x), dtype=bool)
    with torch.inference_mode():
        for _ in range(RIDGE_LIMIT):
            action, _ = policy.act({"obs": torch.from_numpy(x[:, None].astype(np.float32))})
            x = np.where(alive, _ridge_move(x, action[:, 0].numpy()), x)
            success |= alive & (x >= 1)
            alive &= np.abs(x) < 1
    return float(success.mean())


@pytest.fixture(scope="module")
def maze_tasks() -> list[MazeTask]:
    return sample_tasks(0, "train", 2, size=MAZE_SIZE)


@pytest.fixture(scope="module")
def maze_mix(maze_tasks: list[MazeTask], tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    rng = np.random.default_rng(0)
    obs_space = gymnasium.spaces.Box(0, 1, (3, MAZE_SIZE, MAZE_SIZE), np.uint8)
    path = tmp_path_factory.mktemp("offline_rl") / "maze_mix"
    with _write(path, obs_space, gymnasium.spaces.Discrete(4)) as writer:
        for kind, count in (("expert", 12), ("random", 60)):
            vec = MazeVecEnv([maze_tasks[i % len(maze_tasks)] for i in range(count)])
            obs = vec.reset(seed=int(rng.integers(2**31)))
            expert = BFSExpert()
            expert.reset(vec)
            steps: dict[str, list[np.ndarray]] = {name: [] for name in STREAMS}
            active, length = np.ones(count, dtype=bool), np.zeros(count, dtype=np.int64)
            while active.any():
                action = expert.act(obs)[0] if kind == "expert" else rng.integers(0, 4, count)
                steps["obs"].append(obs)
                steps["action"].append(action)
                obs, reward, terminated, truncated = vec.step(action)
                steps["reward"].append(reward)
                steps["terminated"].append(terminated)
                steps["truncated"].append(truncated)
                length += active
                active &= ~(terminated | truncated)
            stacked = {name: np.stack(values, axis=1) for name, values in steps.items()}
            for i in range(count):
                writer.add_episode({name: values[i, : length[i]] for name, values in stacked.items()})
    return Dataset.open(path)


def _maze_success(policy: Policy, tasks: list[MazeTask]) -> float:
    """Success rate from every free start cell of ``tasks``."""
    wins, total = 0, 0
    for task in tasks:
        free = task.free_cells()
        free = free[(free[:, 0] != task.goal[0]) | (free[:, 1] != task.goal[1])]
        vec = MazeVecEnv([task] * len(free))
        obs = vec.reset(starts=free)
        done, won = np.zeros(len(free), dtype=bool), np.zeros(len(free), dtype=bool)
        with torch.inference_mode():
            while not done.all():
                action, _ = policy.act({"obs": torch.from_numpy(obs)})
                obs, _, terminated, truncated = vec.step(action.numpy())
                won |= terminated & ~done
                done |= terminated | truncated
        wins, total = wins + int(won.sum()), total + len(free)
    return wins / total


def test_iql_and_td3bc_pick_the_rewarded_move_where_bc_of_all_data_falls(ridge_data: Dataset, tmp_path: Path) -> None:
    success = {
        name: _ridge_success(train(name, ridge_data, tmp_path / name, LEARN, settings, show_progress=False))
        for name, settings in RIDGE_SETTINGS.items()
    }
    # Measured: continuous_bc 0.21, iql 0.79, td3bc 1.00 (data and training seeds 1, 2: bc 0.11-0.26, iql
    # 0.74-0.84, td3bc 1.00).
    assert success["continuous_bc"] <= 0.4, success
    assert success["iql"] >= 0.65 and success["iql"] >= success["continuous_bc"] + 0.35, success
    assert success["td3bc"] >= 0.75 and success["td3bc"] >= success["continuous_bc"] + 0.4, success


def test_discrete_iql_solves_the_train_mazes_from_mostly_random_data(
    maze_mix: Dataset, maze_tasks: list[MazeTask], tmp_path: Path
) -> None:
    success = {
        name: _maze_success(train(name, maze_mix, tmp_path / name, LEARN, settings, show_progress=False), maze_tasks)
        for name, settings in MAZE_SETTINGS.items()
    }
    # Measured: bc 0.15, iql 0.79 (34 starts).
    assert success["iql"] >= 0.65 and success["iql"] >= success["bc"] + 0.35, success


def _data(which: str, ridge_data: Dataset, maze_mix: Dataset) -> Dataset:
    return ridge_data if which == "ridge" else maze_mix


def _obs(data: Dataset, n: int) -> torch.Tensor:
    rows = np.linspace(0, data.num_steps - 1, n).astype(np.int64)
    return torch.from_numpy(data.gather(rows, ["obs"])["obs"])


def _contract_config(steps: int) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=16, seed=3, checkpoint_every=5, log_every=2, tensorboard=False)


@pytest.mark.parametrize("case", sorted(CASES))
def test_save_load_gives_identical_actions(case: str, ridge_data: Dataset, maze_mix: Dataset, tmp_path: Path) -> None:
    name, which = CASES[case]
    data = _data(which, ridge_data, maze_mix)
    policy = train(name, data, tmp_path / "run", _contract_config(6), SMALL, show_progress=False)
    loaded = load_policy(tmp_path / "run")
    assert loaded.deterministic
    obs = _obs(data, 7)
    with torch.inference_mode():
        a, _ = policy.act({"obs": obs}, policy.initial_state(7))
        b, _ = loaded.act({"obs": obs}, loaded.initial_state(7))
    assert a.shape == ((7,) if which == "maze" else (7, 1))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    for key, value in policy.state_dict().items():
        torch.testing.assert_close(value, loaded.state_dict()[key], rtol=0, atol=0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_compute_loss_does_not_mutate_the_batch(case: str, ridge_data: Dataset, maze_mix: Dataset) -> None:
    name, which = CASES[case]
    data = _data(which, ridge_data, maze_mix)
    policy = build_policy(name, policy_config_for(name, data, SMALL))
    policy.prepare(data)
    streams = [s for s in policy.required_streams if data.streams[s].kind == "array"]
    batch = sample_batch(data, 16, torch.Generator().manual_seed(0), streams, policy.sample_windows())
    assert batch["obs"].shape[:2] == (16, 2)  # the step and the next one
    before = {k: v.clone() for k, v in batch.items()}
    loss, info = policy.compute_loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and info
    for key in before:
        torch.testing.assert_close(batch[key], before[key], rtol=0, atol=0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_resume_reproduces_the_uninterrupted_weights(
    case: str, ridge_data: Dataset, maze_mix: Dataset, tmp_path: Path
) -> None:
    name, which = CASES[case]
    data = _data(which, ridge_data, maze_mix)
    train(name, data, tmp_path / "whole", _contract_config(12), SMALL, show_progress=False)
    train(name, data, tmp_path / "cut", _contract_config(5), SMALL, show_progress=False)  # td3bc: cut mid-rhythm
    (tmp_path / "cut" / MODEL_FILE).unlink()  # as if the process died before finishing
    train(name, data, tmp_path / "cut", _contract_config(12), resume=True, show_progress=False)
    whole, cut = load_file(str(tmp_path / "whole" / MODEL_FILE)), load_file(str(tmp_path / "cut" / MODEL_FILE))
    assert whole.keys() == cut.keys()
    assert any("q_target" in key for key in whole)  # the target networks are saved and resumed too
    for key in whole:
        assert torch.equal(whole[key], cut[key]), key


def test_td3bc_updates_its_actor_and_targets_every_second_step(ridge_data: Dataset, tmp_path: Path) -> None:
    torch.manual_seed(0)
    initial = build_policy("td3bc", policy_config_for("td3bc", ridge_data, SMALL)).state_dict()
    after: dict[int, dict[str, torch.Tensor]] = {}
    for steps in (1, 2):
        config = TrainConfig(steps=steps, batch_size=16, seed=0, tensorboard=False)  # seeds the same init
        after[steps] = train(
            "td3bc", ridge_data, tmp_path / str(steps), config, SMALL, show_progress=False
        ).state_dict()

    def changed(state: dict[str, torch.Tensor], prefix: str) -> bool:
        return any(not torch.equal(state[k], initial[k]) for k in initial if k.startswith(prefix))

    assert changed(after[1], "critic.q.") and not changed(after[1], "actor.")  # step 1: critic only
    assert not changed(after[1], "critic.q_target.") and not changed(after[1], "actor_target.")
    assert changed(after[2], "actor.") and changed(after[2], "critic.q_target.") and changed(after[2], "actor_target.")
    assert int(after[2]["optimizer_steps"]) == 2


def test_td3bc_on_discrete_actions_is_one_error_line(
    maze_mix: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", "td3bc", "--data", str(maze_mix.path), "--out", str(tmp_path / "run"), "--steps", "2"])
    err = capsys.readouterr().err
    assert_one_error_line(code, err, "policy 'td3bc'", "expected a Box action space", "Discrete(4)", "iql")


@pytest.mark.parametrize("case", sorted(CASES))
def test_onnx_acts_like_torch(case: str, ridge_data: Dataset, maze_mix: Dataset, tmp_path: Path) -> None:
    name, which = CASES[case]
    data = _data(which, ridge_data, maze_mix)
    torch.manual_seed(0)  # untrained, but with fitted normalization and action scaling
    policy = build_policy(name, policy_config_for(name, data, SMALL))
    policy.prepare(data)
    if which == "ridge":
        policy.action_low.mul_(3).sub_(0.5)  # type: ignore[operator]  # a range whose scaling shows in the graph
    policy.eval()
    obs_dtype = torch.uint8 if which == "maze" else torch.float32
    path = export_policy_onnx(policy, tmp_path / f"{case}.onnx", obs_dtype)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    obs = _obs(data, 9)
    outputs = session.run(None, {"obs": obs.numpy()})
    with torch.inference_mode():
        action, _ = policy.act({"obs": obs})
    if which == "maze":
        np.testing.assert_array_equal(outputs[0], action.numpy())
    else:
        np.testing.assert_allclose(outputs[0], action.numpy(), rtol=0, atol=1e-5)
