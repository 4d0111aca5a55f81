"""The ``gym`` env family: any gymnasium env, including one that lives outside clonekit, end to end.

The outside env is a tiny 1-D walk to a goal written by the test into a temp dir that goes on ``sys.path``
(``walk1d:Walk1D-v0``, gymnasium's ``module:ID`` form), with ``info["is_success"]`` and an oracle expert.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from importlib import import_module
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import clonekit.envs
from clonekit.cli import main
from clonekit.data import Dataset
from clonekit.envs import env_block_for_eval, resolve_env
from clonekit.envs.gym import GymFamily, GymTask, action_space, env_actions, recorded_actions
from clonekit.errors import ConfigError
from clonekit.evaluation import split_tasks
from clonekit.rl.vector import VectorEnv, gym_env_factories
from tests.conftest import assert_one_error_line
from tests.foreign_data import write_cartpole_minari

WALK_SOURCE = '''
"""A 1-D walk to a goal: an env that lives outside clonekit, plus its oracle."""
import gymnasium as gym
import numpy as np


class Walk1D(gym.Env):
    """Cells 0..size-1; start and goal drawn at reset; actions 0 left, 1 right; success on reaching the goal."""

    def __init__(self, size=10):
        self.size = size
        self.observation_space = gym.spaces.Box(0.0, 1.0, (2,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def _obs(self):
        return np.array([self.pos / self.size, self.goal / self.size], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos, self.goal = (int(v) for v in self.np_random.choice(self.size, 2, replace=False))
        return self._obs(), {"is_success": False}

    def step(self, action):
        self.pos = int(np.clip(self.pos + (1 if action == 1 else -1), 0, self.size - 1))
        done = self.pos == self.goal
        return self._obs(), float(done), done, False, {"is_success": done}


class WalkDict(Walk1D):
    """The same walk with a Dict observation (keys in non-sorted order, one nested)."""

    def __init__(self, size=10):
        super().__init__(size)
        box = gym.spaces.Box(0.0, 1.0, (1,), dtype=np.float32)
        self.observation_space = gym.spaces.Dict({"pos": box, "extra": gym.spaces.Dict({"goal": box})})

    def _obs(self):
        flat = super()._obs()
        return {"pos": flat[:1], "extra": {"goal": flat[1:]}}


class WalkTuple(Walk1D):
    """The same walk with a Tuple observation: (pos, {"goal": goal}, [pos < goal, pos > goal]) as Discrete, a
    nested Dict and a MultiBinary."""

    def __init__(self, size=10):
        super().__init__(size)
        cell = gym.spaces.Discrete(size)
        self.observation_space = gym.spaces.Tuple((cell, gym.spaces.Dict({"goal": cell}), gym.spaces.MultiBinary(2)))

    def _obs(self):
        return (self.pos, {"goal": self.goal}, np.array([self.pos < self.goal, self.pos > self.goal], np.int8))


class WalkBroken(Walk1D):
    """Fails on its third step."""

    def step(self, action):
        self.steps = getattr(self, "steps", 0) + 1
        if self.steps == 3:
            raise ValueError("the third step breaks")
        return super().step(action)


class WalkShifted(Walk1D):
    """The same walk with actions Discrete(2, start=-1): -1 left, 0 right."""

    def __init__(self, size=10):
        super().__init__(size)
        self.action_space = gym.spaces.Discrete(2, start=-1)

    def step(self, action):
        assert self.action_space.contains(np.int64(action)), action
        return super().step(int(action) + 1)


class Plane(gym.Env):
    """A point on the unit square moving towards a goal; actions Box(-1, 1, (1, 2)): one mover, two coordinates."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(0.0, 1.0, (4,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1, 2), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos, self.goal = self.np_random.uniform(0.0, 1.0, 2), self.np_random.uniform(0.0, 1.0, 2)
        return np.concatenate([self.pos, self.goal]).astype(np.float32), {}

    def step(self, action):
        assert self.action_space.contains(action), action  # the env's own shape, (1, 2)
        self.pos = np.clip(self.pos + 0.2 * action[0], 0.0, 1.0)
        done = bool(np.linalg.norm(self.pos - self.goal) < 0.1)
        return np.concatenate([self.pos, self.goal]).astype(np.float32), float(done), done, False, {"is_success": done}


class PixWalk(Walk1D):
    """The walk drawn as a channel-last picture (size, size, 3): red column the agent, green column the goal."""

    def __init__(self, size=12):
        super().__init__(size)
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), dtype=np.uint8)

    def _obs(self):
        picture = np.zeros((self.size, self.size, 3), dtype=np.uint8)
        picture[:, self.pos, 0] = 255
        picture[:, self.goal, 1] = 255
        return picture


def pix_oracle(obs):
    """Batched, on pictures as clonekit records them: channel-first (B, 3, H, W)."""
    return (obs[:, 1, 0].argmax(-1) > obs[:, 0, 0].argmax(-1)).astype(np.int64)


def plane_oracle(obs):
    """Batched, in the env's own action shape (B, 1, 2)."""
    return np.clip(5.0 * (obs[:, 2:] - obs[:, :2]), -1.0, 1.0)[:, None, :]


class WalkJump(Walk1D):
    """The walk with MultiDiscrete([2, 3]) actions: (direction, cells - 1), so a move covers 1 to 3 cells."""

    def __init__(self, size=10):
        super().__init__(size)
        self.action_space = gym.spaces.MultiDiscrete([2, 3])

    def step(self, action):
        assert self.action_space.contains(action), action  # the env's own form
        step = (1 if action[0] == 1 else -1) * (int(action[1]) + 1)
        self.pos = int(np.clip(self.pos + step, 0, self.size - 1))
        done = self.pos == self.goal
        return self._obs(), float(done), done, False, {"is_success": done}


def jump_oracle(obs):
    """Batched, in the env's own form (B, 2): towards the goal, as far as it is (at most 3 cells)."""
    cells = np.rint(obs * 10).astype(np.int64)
    gap = cells[:, 1] - cells[:, 0]
    return np.stack([(gap > 0).astype(np.int64), np.clip(np.abs(gap), 1, 3) - 1], axis=1)


def jump_too_far(obs):
    return np.full((len(obs), 2), 3, dtype=np.int64)  # 3 is outside the second component's 0..2


def shifted_oracle(obs):
    return (obs[:, 1] > obs[:, 0]).astype(np.int64) - 1


def oracle(obs):
    """Batched: step towards the goal."""
    return (obs[:, 1] > obs[:, 0]).astype(np.int64)


def one_oracle(obs):
    """Per observation."""
    return int(obs[1] > obs[0])


class Predictor:
    """An object with an SB3-style predict."""

    def predict(self, obs, deterministic=True):
        return oracle(obs), None


gym.register("Walk1D-v0", entry_point=Walk1D, max_episode_steps=30)
gym.register("WalkDict-v0", entry_point=WalkDict, max_episode_steps=30)
gym.register("WalkBroken-v0", entry_point=WalkBroken, max_episode_steps=30)
gym.register("WalkTuple-v0", entry_point=WalkTuple, max_episode_steps=30)
gym.register("WalkShifted-v0", entry_point=WalkShifted, max_episode_steps=30)
gym.register("Plane-v0", entry_point=Plane, max_episode_steps=30)
gym.register("PixWalk-v0", entry_point=PixWalk, max_episode_steps=30)
gym.register("WalkJump-v0", entry_point=WalkJump, max_episode_steps=30)
'''
WALK_ID = "walk1d:Walk1D-v0"
MLP = ["--set", 'encoder="mlp"', "--set", 'normalize_obs="per_feature"', "--set", "hidden_sizes=[32]"]


def write_walk_module(directory: Path) -> Path:
    """Write the ``walk1d`` module into ``directory``; returns the directory (for sys.path / PYTHONPATH)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "walk1d.py").write_text(WALK_SOURCE)
    return directory


@pytest.fixture(scope="session")
def walk_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The walk1d module importable in this process (and, through PYTHONPATH, in the ones it starts)."""
    path = write_walk_module(tmp_path_factory.mktemp("walk_module"))
    sys.path.insert(0, str(path))
    yield path
    sys.path.remove(str(path))


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _collect(capsys: pytest.CaptureFixture[str], env: str, expert: str, episodes: int, out: Path) -> None:
    code, _, err = _run(capsys, "collect", env, "--expert", expert, "--episodes", episodes, "--out", out, "--quiet")
    assert code == 0, err


def _short_ppo(capsys: pytest.CaptureFixture[str], env: str, out: Path) -> None:
    """128 steps of `clonekit rl ppo` on ``env`` (2 envs): RL's vector env takes the recorded actions too."""
    code, _, err = _run(
        capsys, "rl", "ppo", "--env", env, "--steps", 128, "--set", "num_envs=2", "--set", "num_steps=64",
        "--set", "num_minibatches=2", "--out", out, "--quiet",
    )  # fmt: skip
    assert code == 0, err


def _test_success(capsys: pytest.CaptureFixture[str], run: Path, episodes: int) -> float:
    """The run's success rate on ``episodes`` unseen seeds (``clonekit eval --split test``, seed 1)."""
    code, out, err = _run(capsys, "eval", run, "--episodes", episodes, "--seed", 1, "--split", "test", "--json")
    assert code == 0, err
    return float(json.loads(out.strip().splitlines()[-1])["metrics"]["success"]["mean"])


CLONEKIT_GYM_IDS = sorted(i for i in gymnasium.registry if i.startswith("clonekit/"))


def test_every_clonekit_env_is_registered_with_gymnasium() -> None:
    assert clonekit.envs.ENVS  # importing clonekit.envs registers them
    assert {"clonekit/Maze-v0", "clonekit/Avoiding-v0", "clonekit/AvoidingGoal-v0"} <= set(CLONEKIT_GYM_IDS)


@pytest.mark.parametrize("env_id", CLONEKIT_GYM_IDS)
def test_gymnasium_check_env_passes(env_id: str) -> None:
    env = gymnasium.make(env_id)
    try:
        check_env(env.unwrapped, skip_render_check=True)  # raises on any failed check
    finally:
        env.close()


def test_train_and_test_seeds_are_disjoint_recorded_and_depend_on_the_seed(walk_path: Path) -> None:
    family, kwargs = resolve_env(f"gym:{WALK_ID}")
    ranges = kwargs["seed_ranges"]
    assert ranges["train"][1] <= ranges["test"][0]  # recorded, disjoint
    train = family.sample_tasks(0, "train", 50, set(), **kwargs)
    env = {"id": "gym", "kwargs": kwargs, "tasks": [family.task_to_json(t) for t in train]}
    test0 = split_tasks(env, "test", 0, 50)
    test1 = split_tasks(env, "test", 1, 50)
    assert split_tasks(env, "train", 0, 50) == train
    assert all(ranges["train"][0] <= t.seed < ranges["train"][1] for t in train)
    assert all(ranges["test"][0] <= t.seed < ranges["test"][1] for t in test0 + test1)
    assert not {t.seed for t in train} & {t.seed for t in test0 + test1}
    assert len({t.seed for t in test0}) == 50 and {t.seed for t in test0} != {t.seed for t in test1}
    assert split_tasks(env, "test", 0, 50) == test0  # the same seed gives the same test seeds
    with pytest.raises(ConfigError, match="must not overlap"):
        resolve_env(f"gym:{WALK_ID}", {"seed_ranges": {"train": [0, 10], "test": [5, 20]}})


def test_vec_env_freezes_finished_slots_and_reports_success(walk_path: Path) -> None:
    family, kwargs = resolve_env(f"gym:{WALK_ID}")
    vec = family.make_vec([GymTask(3), GymTask(3), GymTask(8)], **kwargs)
    obs = vec.reset()
    np.testing.assert_array_equal(obs[0], obs[1])  # a task is a reset seed
    towards = (obs[:, 1] > obs[:, 0]).astype(np.int64)
    away = 1 - towards
    obs, reward, terminated, truncated = vec.step(np.array([towards[0], away[1], towards[2]]))
    for _ in range(40):
        if vec.done.all():
            break
        before = obs.copy()
        act = (obs[:, 1] > obs[:, 0]).astype(np.int64)
        obs, reward, terminated, truncated = vec.step(act)
        finished_before = vec.done & ~(terminated | truncated)
        assert not (reward[finished_before] != 0).any() and not terminated[finished_before].any()
        np.testing.assert_array_equal(obs[finished_before], before[finished_before])  # frozen slots
        assert (vec.step_success() == terminated).all()  # is_success is true exactly at the goal
    assert vec.done.all() and (vec.returns == 1.0).all()
    vec.close()


def test_dict_observations_are_flattened_in_sorted_key_order(walk_path: Path) -> None:
    family, kwargs = resolve_env("gym:walk1d:WalkDict-v0")
    assert kwargs["obs_keys"] == ["extra.goal", "pos"]
    obs_space, _ = family.spaces(**kwargs)
    assert obs_space.shape == (2,) and obs_space.dtype == np.float32
    plain_family, plain_kwargs = resolve_env(f"gym:{WALK_ID}")
    tasks = [GymTask(5), GymTask(6)]
    flat = family.make_vec(tasks, **kwargs).reset()
    plain = plain_family.make_vec(tasks, **plain_kwargs).reset()
    np.testing.assert_array_equal(flat, plain[:, ::-1])  # (goal, pos) vs the plain env's (pos, goal)


def test_tuple_observations_are_flattened_in_index_order(walk_path: Path) -> None:
    family, kwargs = resolve_env("gym:walk1d:WalkTuple-v0")
    assert kwargs["obs_keys"] == ["0", "1.goal", "2"]
    obs_space, _ = family.spaces(**kwargs)
    assert obs_space.shape == (4,) and obs_space.dtype == np.float32
    np.testing.assert_array_equal(obs_space.high, [9, 9, 1, 1])
    plain_family, plain_kwargs = resolve_env(f"gym:{WALK_ID}")
    tasks = [GymTask(5), GymTask(6)]
    flat = family.make_vec(tasks, **kwargs).reset()
    cells = plain_family.make_vec(tasks, **plain_kwargs).reset() * 10  # the plain walk observes (pos, goal) / size
    np.testing.assert_allclose(flat[:, :2], cells, atol=1e-5)
    np.testing.assert_array_equal(flat[:, 2:], np.stack([cells[:, 0] < cells[:, 1], cells[:, 0] > cells[:, 1]], 1))
    factories, block = gym_env_factories("gym:walk1d:WalkTuple-v0", {}, 2)
    rl_envs = VectorEnv.for_block(factories, block)  # RL's batched Tuple observations, flattened the same way
    try:
        np.testing.assert_array_equal(rl_envs.reset(seed=5), flat)
    finally:
        rl_envs.close()
    blackjack, blackjack_kwargs = resolve_env("gym:Blackjack-v1")  # gymnasium's own Tuple env
    assert blackjack.spaces(**blackjack_kwargs)[0].shape == (3,)


@pytest.mark.parametrize("env_id", [WALK_ID, "walk1d:WalkDict-v0", "walk1d:WalkTuple-v0"])
def test_worker_processes_play_the_same_episodes(walk_path: Path, env_id: str) -> None:
    tasks = [GymTask(s) for s in (1, 2, 3, 4, 5)]
    outcomes = []
    for options in ({"vector": "sync"}, {"vector": "async", "workers": 2}):
        family, kwargs = resolve_env(f"gym:{env_id}", options)
        vec = family.make_vec(tasks, **kwargs)
        trace = [(vec.reset(), vec.done.copy(), vec.step_success())]
        while not vec.done.all():
            obs = vec.step(np.ones(5, dtype=np.int64))[0]
            trace.append((obs, vec.done.copy(), vec.step_success()))
        vec.close()
        outcomes.append([np.concatenate([o.ravel(), d, s]) for o, d, s in trace])
    assert len(outcomes[0]) == len(outcomes[1]) > 2
    np.testing.assert_array_equal(np.stack(outcomes[0]), np.stack(outcomes[1]))


def test_halted_and_finished_slots_are_not_stepped(walk_path: Path) -> None:
    family, kwargs = resolve_env(f"gym:{WALK_ID}")
    vec = family.make_vec([GymTask(1), GymTask(2)], **kwargs)
    vec.reset()
    envs = vec.slots.envs
    vec.halt(np.array([True, False]))
    live_steps = 0
    for _ in range(40):  # slot 1 walks left until its episode ends (goal or the 30-step limit)
        live_steps += int(not vec.done[1])
        vec.step(np.array([0, 0]))
    assert vec.done.all() and 0 < live_steps <= 30
    # the gymnasium envs saw exactly the steps of the live slot: none after its end, none for the halted one
    assert [env.get_wrapper_attr("_elapsed_steps") for env in envs] == [0, live_steps]
    vec.close()


@pytest.mark.parametrize("halt_local", [True, False])
def test_an_env_error_stops_every_worker(walk_path: Path, halt_local: bool) -> None:
    family, kwargs = resolve_env("gym:walk1d:WalkBroken-v0", {"vector": "async", "workers": 2})
    vec = family.make_vec([GymTask(s) for s in (1, 2, 3)], **kwargs)
    vec.reset()  # slots 0-1 step in this process, slot 2 in a worker
    if halt_local:  # only the worker's env steps: its error comes back as one line
        vec.halt(np.array([True, True, False]))
    # the worker's error comes back as one line; one in this process's own block is raised as it is
    error, message = (RuntimeError, "^env worker: ValueError: ") if halt_local else (ValueError, "^")
    with pytest.raises(error, match=message + "the third step breaks$"):
        for _ in range(3):
            vec.step(np.zeros(3, dtype=np.int64))
    assert len(vec.slots.processes) == 1 and not vec.slots.processes[0].is_alive()


def test_outside_env_collect_train_eval_through_the_cli(
    walk_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_torch_thread: None
) -> None:
    data, run = tmp_path / "data", tmp_path / "run"
    code, _, err = _run(
        capsys,
        "collect",
        f"gym:{WALK_ID}",
        "--expert",
        "py:walk1d:oracle",
        "--episodes",
        60,
        "--seed",
        0,
        "--out",
        data,
        "--quiet",
    )
    assert code == 0, err
    meta = json.loads((data / "meta.json").read_text())
    env = meta["env"]
    assert env["id"] == "gym" and env["kwargs"]["id"] == WALK_ID and len(env["tasks"]) == 60
    assert env["expert"] == "py:walk1d:oracle" and env["expert_source"]["kind"] == "python"
    code, _, err = _run(capsys, "train", "bc", "--data", data, "--out", run, "--steps", 300, *MLP, "--quiet")
    assert code == 0, err
    for split in ("test", "train"):
        code, out, err = _run(capsys, "eval", run, "--episodes", 50, "--seed", 1, "--split", split, "--json")
        assert code == 0, err
        success = json.loads(out.strip().splitlines()[-1])["metrics"]["success"]
        assert success["n"] == 50 and success["mean"] >= 0.9, (split, success)
    code, _, err = _run(capsys, "eval", run, "--episodes", 5, "--env", "gym:NoSuchEnv-v0")
    assert code == 2 and "NoSuchEnv-v0" in err and len(err.strip().splitlines()) == 1


def test_minari_cartpole_run_evaluates_on_the_gymnasium_env(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], one_torch_thread: None
) -> None:
    source = write_cartpole_minari(tmp_path / "minari", episodes=10, max_steps=200)
    data, run = tmp_path / "cartpole", tmp_path / "run"
    code, _, err = _run(capsys, "convert", source, data)
    assert code == 0, err
    code, _, err = _run(capsys, "train", "bc", "--data", data, "--out", run, "--steps", 300, *MLP, "--quiet")
    assert code == 0, err
    code, out, err = _run(capsys, "eval", run, "--episodes", 16, "--seed", 0, "--env", "gym:CartPole-v1", "--json")
    assert code == 0, err
    metrics = json.loads(out.strip().splitlines()[-1])["metrics"]
    # CartPole-v1 (500 steps) counts an episode a success at its registered reward_threshold, 475.
    assert metrics["return"]["mean"] >= 400 and metrics["success"]["mean"] >= 0.75, metrics
    assert metrics["success"]["n"] == 16
    # The Minari import names CartPole-v1 (with the 200-step limit it was recorded with): found without --env.
    env = env_block_for_eval(json.loads((run / "config.json").read_text())["dataset"]["env"])
    assert env["kwargs"]["id"] == "CartPole-v1" and env["kwargs"]["make_kwargs"]["max_episode_steps"] == 200
    code, out, err = _run(capsys, "eval", run, "--episodes", 8, "--seed", 0, "--json")
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["metrics"]["return"]["mean"] >= 160
    code, _, err = _run(capsys, "eval", run, "--episodes", 8, "--split", "train")
    assert code == 2 and "no training tasks" in err


def test_discrete_actions_not_starting_at_0_are_one_line_errors(
    walk_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Discrete(n, start != 0): the expert's actions are recorded as the env takes them, but the discrete policies
    act in 0..n-1, so training on them and RL on the env are refused in one line (not a traceback or wrong moves)."""
    data = tmp_path / "data"
    code, _, err = _run(
        capsys, "collect", "gym:walk1d:WalkShifted-v0", "--expert", "py:walk1d:shifted_oracle", "--episodes", 2,
        "--out", data, "--quiet",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = _run(capsys, "train", "bc", "--data", data, "--out", tmp_path / "run", "--steps", 5, *MLP)
    assert_one_error_line(code, err, str(data / "meta.json"), "spaces.action", "Discrete(2, start=-1)", "0..n-1")
    code, _, err = _run(
        capsys, "rl", "ppo", "--env", "gym:walk1d:WalkShifted-v0", "--steps", 64, "--out", tmp_path / "ppo"
    )
    assert_one_error_line(code, err, "action space", "Discrete(2, start=-1)", "0..n-1")


def test_box_actions_of_more_than_one_dimension_are_recorded_flat_and_reshaped_for_the_env(
    walk_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_torch_thread: None
) -> None:
    """Box(-1, 1, (1, 2)): the expert answers in the env's shape, the dataset holds (2,) actions, continuous_bc
    trains on them and its flat actions reach the env as (1, 2) (the env asserts its shape at every step), in
    evaluation and in RL."""
    data, run = tmp_path / "data", tmp_path / "run"
    _collect(capsys, "gym:walk1d:Plane-v0", "py:walk1d:plane_oracle", 40, data)
    dataset = Dataset.open(data)
    assert dataset.meta["spaces"]["action"]["shape"] == [2]
    episode = dataset.episode(0)
    np.testing.assert_allclose(episode["action"], import_module("walk1d").plane_oracle(episode["obs"])[:, 0])
    settings = ["--set", "hidden_sizes=[64, 64]", "--steps", 600, "--quiet"]
    code, _, err = _run(capsys, "train", "continuous_bc", "--data", data, "--out", run, *settings)
    assert code == 0, err
    assert _test_success(capsys, run, 40) >= 0.9
    _short_ppo(capsys, "gym:walk1d:Plane-v0", tmp_path / "ppo")


def test_multi_discrete_actions_are_recorded_as_one_joint_discrete_and_decoded_for_the_env(
    walk_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_torch_thread: None
) -> None:
    """MultiDiscrete([2, 3]): the expert answers (direction, cells - 1), the dataset holds Discrete(6) actions
    (direction * 3 + cells - 1), `bc` learns them and its joint actions reach the env in its own form (the env asserts
    it at every step), in evaluation and in RL."""
    data, run = tmp_path / "data", tmp_path / "run"
    _collect(capsys, "gym:walk1d:WalkJump-v0", "py:walk1d:jump_oracle", 150, data)
    dataset = Dataset.open(data)
    assert dataset.meta["spaces"]["action"] == {"type": "Discrete", "n": 6, "start": 0}
    episode = dataset.episode(0)
    pairs = import_module("walk1d").jump_oracle(episode["obs"])
    np.testing.assert_array_equal(episode["action"], pairs[:, 0] * 3 + pairs[:, 1])
    wider = [*MLP, "--set", "hidden_sizes=[64, 64]"]  # 1.00 on training seeds 0-2 (0.72 with [32], 300 steps)
    code, _, err = _run(capsys, "train", "bc", "--data", data, "--out", run, "--steps", 500, *wider, "--quiet")
    assert code == 0, err
    assert _test_success(capsys, run, 50) >= 0.9
    _short_ppo(capsys, "gym:walk1d:WalkJump-v0", tmp_path / "ppo")
    code, _, err = _run(
        capsys, "collect", "gym:walk1d:WalkJump-v0", "--expert", "py:walk1d:jump_too_far", "--episodes", 2,
        "--out", tmp_path / "bad", "--quiet",
    )  # fmt: skip
    assert_one_error_line(code, err, "py:walk1d:jump_too_far", "actions outside MultiDiscrete([2 3])")


@pytest.mark.parametrize(
    "space",
    [
        gymnasium.spaces.MultiDiscrete([[2, 3], [4, 1]], start=[[-1, 0], [5, 2]]),
        gymnasium.spaces.MultiBinary(3),
        gymnasium.spaces.Box(-1.0, 1.0, (2, 3)),
    ],
    ids=["multidiscrete_2d_with_start", "multibinary", "box_2d"],
)
def test_every_env_action_round_trips_through_its_recorded_form(space: gymnasium.Space) -> None:
    space.seed(0)
    raw = np.stack([space.sample() for _ in range(20)])
    recorded = recorded_actions(raw, space)
    assert action_space(space).contains(recorded[0])
    np.testing.assert_array_equal(env_actions(recorded, space), raw)
    assert all(space.contains(action) for action in env_actions(recorded, space))


def test_a_joint_action_space_too_large_is_a_one_line_error() -> None:
    with pytest.raises(
        ConfigError, match=r"expected at most 4096 joint actions \(recorded as one Discrete\), found 8192"
    ):
        action_space(gymnasium.spaces.MultiBinary(13))


def test_channel_last_pictures_are_recorded_channel_first_and_learned_by_the_conv_encoder(
    walk_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_torch_thread: None
) -> None:
    """An env observing (H, W, 3) uint8 pictures: recorded (3, H, W) (the decision recorded in the env block), the
    expert sees them so, `bc` picks its conv encoder and learns the walk; RL's vector env observes the same arrays;
    a run evaluated on an env with other observations is a one-line error."""
    data, run = tmp_path / "data", tmp_path / "run"
    _collect(capsys, "gym:walk1d:PixWalk-v0", "py:walk1d:pix_oracle", 60, data)
    meta = json.loads((data / "meta.json").read_text())
    assert meta["spaces"]["observation"]["shape"] == [3, 12, 12] and meta["env"]["kwargs"]["transpose_images"] is True
    small = ["--set", "conv_channels=[16, 32]", "--set", "batch_size=64"]  # 0.94 on training seeds 0-2
    code, _, err = _run(capsys, "train", "bc", "--data", data, "--out", run, "--steps", 150, *small, "--quiet")
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["policy_config"]["encoder"] == "conv"
    assert _test_success(capsys, run, 50) >= 0.9
    family, kwargs = resolve_env("gym:walk1d:PixWalk-v0")
    vec = family.make_vec([GymTask(5), GymTask(6)], **kwargs)
    factories, block = gym_env_factories("gym:walk1d:PixWalk-v0", {}, 2)
    rl_envs = VectorEnv.for_block(factories, block)
    try:
        np.testing.assert_array_equal(rl_envs.reset(seed=5), vec.reset())  # RL resets env i with seed 5 + i
        assert rl_envs.observation_space.shape == vec.observation_space.shape == (3, 12, 12)
    finally:
        rl_envs.close()
        vec.close()
    code, _, err = _run(capsys, "eval", run, "--episodes", 5, "--env", "gym:CartPole-v1")
    assert_one_error_line(code, err, str(run / "config.json"), "obs_shape", "(3, 12, 12)", "(4,)")


def test_bad_gym_options_are_one_line_errors(walk_path: Path) -> None:
    with pytest.raises(ConfigError, match="vector: expected one of"):
        resolve_env(f"gym:{WALK_ID}", {"vector": "threads"})
    with pytest.raises(ConfigError, match="cannot make gymnasium env 'NoSuchEnv-v0'"):
        resolve_env("gym:NoSuchEnv-v0")
    with pytest.raises(ConfigError, match="FAMILY:ID"):
        resolve_env("maze:x")
    with pytest.raises(ConfigError, match="success_threshold"):
        GymFamily().options({"id": WALK_ID, "success_threshold": "high"})
    with pytest.raises(ConfigError, match="transpose_images: expected true, false or 'auto'"):
        GymFamily().options({"id": WALK_ID, "transpose_images": "yes"})
    with pytest.raises(ConfigError, match=r"transpose_images: expected a 3-dimensional Box .* found Box"):
        GymFamily().options({"id": WALK_ID, "transpose_images": True})


def test_an_observation_key_of_another_kind_names_the_keys_that_can_be_recorded() -> None:
    """MiniGrid observes a Dict with a text `mission`: the error names the keys that can be recorded, and recording
    those works."""
    hint = r"""found MissionSpace; choose the keys to record with """
    hint += r"""--env-kwargs '\{"obs_keys": \["direction", "image"\]\}'"""
    family, kwargs = resolve_env("gym:minigrid:MiniGrid-Empty-5x5-v0")
    with pytest.raises(ConfigError, match=r"observation key 'mission': expected a Box, .*" + hint):
        family.spaces(**kwargs)
    family, kwargs = resolve_env("gym:minigrid:MiniGrid-Empty-5x5-v0", {"obs_keys": ["direction", "image"]})
    assert family.spaces(**kwargs)[0].shape == (1 + 7 * 7 * 3,)
