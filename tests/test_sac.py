"""SAC: learns a tiny continuous task, resumes exactly (networks, Adam, replay buffer, RNGs), its actor is a
clonekit policy that loads with identical actions and plays through ``clonekit eval``, and bad input is one
error line."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pytest
import torch

from clonekit.checkpoint import (
    MODEL_FILE,
    OPTIMIZER_FILE,
    RUN_FORMAT,
    checkpoint_dirs,
    load_policy,
    load_tensors,
    save_policy,
)
from clonekit.cli import main
from clonekit.config import config_to_json
from clonekit.errors import ConfigError
from clonekit.evaluation import evaluate_run
from clonekit.policies.continuous_bc import ContinuousBCConfig, ContinuousBCPolicy
from clonekit.policies.td3bc import TD3BCPolicy
from clonekit.rl import SACConfig, train_sac
from tests.conftest import assert_one_error_line

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class ReachTarget(gymnasium.Env[np.ndarray, np.ndarray]):
    """One-step continuous task: observe a target in [-1, 1], act in [-2, 2]; reward ``-(action - target)^2``."""

    observation_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
    action_space = gymnasium.spaces.Box(-2.0, 2.0, (1,), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.target = self.np_random.uniform(-1, 1, (1,)).astype(np.float32)
        return self.target, {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = -float(np.square(np.asarray(action) - self.target).sum())
        return self.target, reward, True, False, {}


REACH = SACConfig(
    env="reach-target", num_envs=2, learning_starts=64, batch_size=64, hidden_sizes=(32, 32), lr=3e-3, log_every=80
)
TARGETS = torch.linspace(-0.9, 0.9, 19)[:, None]
# Pendulum with 10-step episodes: runs go through time limits (truncation, the final observation) and resets.
PENDULUM = SACConfig(
    env="gym:Pendulum-v1",
    env_kwargs={"max_episode_steps": 10},
    total_steps=60,
    num_envs=2,
    learning_starts=10,
    batch_size=16,
    hidden_sizes=(16,),
    checkpoint_every=20,
    log_every=10,
)


def _reach_error(actor: TD3BCPolicy) -> float:
    with torch.no_grad():
        return float((actor.act({"obs": TARGETS})[0] - TARGETS).square().mean())


def _save_prior(out: Path) -> Path:
    """A frozen continuous_bc prior that always acts 1.5, on ReachTarget's spaces."""
    prior = ContinuousBCPolicy(ContinuousBCConfig((1,), (1,), hidden_sizes=(8,), normalize_obs="none"))
    with torch.no_grad():
        prior.head.linear.weight.zero_()
        prior.head.linear.bias.fill_(0.75)  # [-1, 1] units of its range [-2, 2]
        prior.action_low.fill_(-2.0)
        prior.action_high.fill_(2.0)
    out.mkdir()
    save_policy(prior, out, {"format": RUN_FORMAT, "policy": prior.name, "policy_config": config_to_json(prior.config)})
    return out


def test_sac_learns_a_tiny_continuous_task_and_a_bc_prior_pulls_it(tmp_path: Path) -> None:
    config = replace(REACH, total_steps=240)
    actor = train_sac(config, tmp_path / "run", show_progress=False, env_factories=[ReachTarget] * 2)
    first = float(TARGETS.square().mean())  # acting about 0 scores 0.3; seeds 0-2 reach 0.005-0.019 here
    assert _reach_error(actor) < 0.1 * first, (first, _reach_error(actor))
    loaded = load_policy(tmp_path / "run")
    assert isinstance(loaded, TD3BCPolicy)
    obs = torch.rand(32, 1) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded.act({"obs": obs})[0], actor.act({"obs": obs})[0])
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [80, 160, 240]
    assert {"critic_loss", "actor_loss", "alpha", "entropy", "episode_return", "env_steps_per_s"} <= set(lines[-1])
    assert lines[-1]["alpha"] < 1.0  # the temperature was tuned down from its start

    # demonstration-regularized: a prior that always acts 1.5, against a reward that wants the target in [-1, 1]
    pulled_config = replace(config, prior=str(_save_prior(tmp_path / "prior")), prior_coef=20.0)
    pulled = train_sac(pulled_config, tmp_path / "pulled", show_progress=False, env_factories=[ReachTarget] * 2)
    with torch.no_grad():
        free_action = float(actor.act({"obs": TARGETS})[0].mean())
        pulled_action = float(pulled.act({"obs": TARGETS})[0].mean())
    assert abs(free_action) < 0.3 and pulled_action > 0.8, (free_action, pulled_action)


class _Interrupt(Exception):
    pass


def test_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    train_sac(PENDULUM, tmp_path / "whole", show_progress=False)

    def stop(env_steps: int, actor: TD3BCPolicy) -> None:
        if env_steps == 30:  # after the checkpoint at 20: steps 21-30 are lost and run again
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train_sac(PENDULUM, tmp_path / "split", show_progress=False, on_step=stop)
    assert not (tmp_path / "split" / MODEL_FILE).exists()
    with pytest.raises(Exception, match="already exists"):
        train_sac(PENDULUM, tmp_path / "split", show_progress=False)
    with pytest.raises(Exception, match="lr"):
        train_sac(replace(PENDULUM, lr=0.1), tmp_path / "split", resume=True, show_progress=False)
    train_sac(PENDULUM, tmp_path / "split", resume=True, show_progress=False)
    whole, split = load_tensors(tmp_path / "whole" / MODEL_FILE), load_tensors(tmp_path / "split" / MODEL_FILE)
    assert all(torch.equal(whole[k], split[k]) for k in whole)
    # the last checkpoints hold the same agent, Adam states and replay buffer
    (last_whole, *_), (last_split, *_) = (checkpoint_dirs(tmp_path / r)[::-1] for r in ("whole", "split"))
    for name in (MODEL_FILE, OPTIMIZER_FILE):
        a, b = load_tensors(last_whole / name), load_tensors(last_split / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert len(load_tensors(last_whole / OPTIMIZER_FILE)["replay.obs"]) == 60
    metrics = [(tmp_path / r / "metrics.jsonl").read_text().splitlines() for r in ("whole", "split")]
    strip = [[{k: v for k, v in json.loads(x).items() if k != "env_steps_per_s"} for x in m] for m in metrics]
    assert strip[0] == strip[1] and len(strip[0]) == 6


def test_config_errors_are_one_line_config_errors() -> None:
    for field, value in (("batch_size", 0), ("gamma", 1.0), ("tau", 0.0), ("lr", float("nan")), ("num_envs", 0)):
        with pytest.raises(ConfigError, match=field) as err:
            SACConfig(**{field: value})
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="buffer_size"):
        SACConfig(num_envs=8, buffer_size=4)


def _run(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_trains_sac_which_clonekit_eval_plays_and_bad_input_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    base = ("rl", "sac", "--env", "Pendulum-v1", "--steps", "12", "--quiet", "--set", "learning_starts=4")
    small = ("--set", "batch_size=4", "--set", "hidden_sizes=[8]")
    code, out, err = _run(capsys, *base, *small, "--out", run)
    assert code == 0, err
    assert "trained sac" in out and isinstance(load_policy(run), TD3BCPolicy)
    returns = evaluate_run(run, "test", episodes=2, seed=0).returns
    assert returns.shape == (2,) and np.all(returns < 0)  # Pendulum's rewards are never positive
    assert_one_error_line(*_run(capsys, *base, *small, "--out", run)[::2], "already exists")
    assert_one_error_line(*_run(capsys, *base, "--out", run, "--resume")[::2], "batch_size")
    discrete = ("rl", "sac", "--env", "CartPole-v1", "--steps", "8", "--out", tmp_path / "x")
    assert_one_error_line(*_run(capsys, *discrete)[::2], "Box", "Discrete")
    assert_one_error_line(*_run(capsys, *base, "--out", tmp_path / "y", "--set", "batch=4")[::2], "batch")
    code, _, err = _run(capsys, "rl", "sac", "--env", "Pendulum-v1", "--steps", "0", "--out", tmp_path / "z")
    assert_one_error_line(code, err, "total_steps")
    assert not (tmp_path / "y").exists() and not (tmp_path / "z").exists()
