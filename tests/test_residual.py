"""Residual RL (ResiP): a zero residual is the base exactly, PPO's residual fixes an imprecise base on a tiny
precision task, the run saves/loads and resumes exactly, and a base that is not continuous is one error line."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from clonekit.checkpoint import MODEL_FILE, RUN_FORMAT, atomic_save_tensors, load_policy, load_tensors, save_policy
from clonekit.cli import main
from clonekit.config import config_to_json
from clonekit.envs import ENVS
from clonekit.errors import CheckpointError
from clonekit.evaluation import rollout
from clonekit.policies.bc import BCConfig, BCPolicy
from clonekit.policies.continuous_bc import ContinuousBCConfig, ContinuousBCPolicy
from clonekit.policies.residual import ResidualPolicy
from clonekit.rl.agent import new_actor
from clonekit.rl.residual import ResidualRLConfig, ResidualVecEnv, residual_policy, train_residual, zero_last_layer
from tests.conftest import assert_one_error_line

TARGET, GATE, HORIZON, SPEED = 0.5, 0.04, 10, 0.1


class _LineVec:
    """A point on a line moves by ``SPEED * action`` for ``HORIZON`` steps; success: ending within ``GATE`` of
    ``TARGET``. Observation ``(x, t / HORIZON)``."""

    def __init__(self, starts: list[float]) -> None:
        self.starts = np.array(starts, dtype=np.float64)
        self.num_envs = len(starts)
        self.x, self.t = self.starts.copy(), np.zeros(self.num_envs, dtype=np.int64)

    def _obs(self) -> np.ndarray:
        return np.stack([self.x, self.t / HORIZON], axis=1).astype(np.float32)

    def reset(self, seed: int | None = None) -> np.ndarray:
        self.x, self.t = self.starts.copy(), np.zeros(self.num_envs, dtype=np.int64)
        return self._obs()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        self.x = self.x + SPEED * np.clip(np.asarray(actions, dtype=np.float64)[:, 0], -1, 1)
        self.t += 1
        ended = self.t >= HORIZON
        success = ended & (np.abs(self.x - TARGET) <= GATE)
        return self._obs(), success.astype(np.float32), ended, np.zeros(self.num_envs, dtype=bool)


class _LineFamily:
    name = "line"
    deterministic_tasks = True

    def sample_tasks(self, seed: int, split: str, count: int, exclude: set[str], **kwargs: Any) -> list[float]:
        return [0.3 + 0.01 * i for i in range(count)]

    def task_to_json(self, task: float) -> dict[str, Any]:
        return {"x": task}

    def task_from_json(self, data: dict[str, Any], **kwargs: Any) -> float:
        return float(data["x"])

    def task_key(self, task: float) -> str:
        return f"{task:.4f}"

    def make_vec(self, tasks: list[float], **kwargs: Any) -> _LineVec:
        return _LineVec(tasks)


# Constant action 0.35 moves 0.35 in 10 steps: the starts end at 0.40 and 0.42, both outside the gate; moving
# 0.06 to 0.12 further (a residual delta of about +0.2 with scale 0.5) passes it from both.
STARTS = (0.05, 0.07)


@pytest.fixture
def line_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ENVS, "line", _LineFamily())  # type: ignore[arg-type]


def _constant_base(out: Path, action: float = 0.35, chunk: int = 2) -> Path:
    """A chunked ``continuous_bc`` run whose action is ``action`` whatever it sees, on the line tasks."""
    base = ContinuousBCPolicy(
        ContinuousBCConfig((2,), (1,), hidden_sizes=(8,), normalize_obs="none", head="mse", chunk=chunk)
    )
    with torch.no_grad():
        for parameter in base.parameters():
            parameter.zero_()
        base.head.linear.bias.fill_(action)  # type: ignore[union-attr]
    out.mkdir()
    tasks = [{"x": x} for x in STARTS]
    config = {"format": RUN_FORMAT, "policy": "continuous_bc", "policy_config": config_to_json(base.config)}
    save_policy(
        base, out, {**config, "dataset": {"fingerprint": "", "env": {"id": "line", "kwargs": {}, "tasks": tasks}}}
    )
    return out


def _config(base: Path, **changes: Any) -> ResidualRLConfig:
    settings: dict[str, Any] = {
        "base": str(base),
        "env": "line",
        "total_steps": 3072,
        "scale": 0.5,
        "hidden_sizes": (32, 32),
        "init_log_std": -0.5,
        "num_envs": 8,
        "num_steps": 64,
        "lr": 3e-3,
        "num_minibatches": 2,
        "checkpoint_every": 2048,
    }
    return ResidualRLConfig(**(settings | changes))


def _success(policy: Any) -> float:
    return float(rollout(policy, _LineFamily(), [float(x) for x in STARTS], 2, seed=0).success.mean())


def test_a_zero_residual_reproduces_the_base_actions_exactly() -> None:
    torch.manual_seed(0)
    config = ContinuousBCConfig((2,), (2,), hidden_sizes=(16,), head="diffusion", chunk=4, execute_steps=2)
    base = ContinuousBCPolicy(config).eval()
    base.action_low.copy_(torch.tensor([-0.5, -1.0]))
    base.action_high.copy_(torch.tensor([1.0, 0.25]))
    envs = ResidualVecEnv(_LineFamily(), {}, [0.0], base, 0.2, num_envs=1)
    actor = new_actor(envs.observation_space, envs.action_space, "mlp", (16,))
    zero_last_layer(actor)
    policy = residual_policy(base, actor, 0.2)
    obs = {"obs": torch.randn(5, 2)}
    played = []
    for model in (base, policy):
        torch.manual_seed(1)
        state, actions = model.initial_state(5), []
        with torch.no_grad():
            for _ in range(6):  # three chunks, executed step by step
                action, state = model.act(obs, state)
                actions.append(action)
        played.append(torch.stack(actions))
    assert torch.equal(played[0], played[1])


def test_residual_ppo_fixes_an_imprecise_base_and_saves_loads_and_evaluates(
    line_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = _constant_base(tmp_path / "base")
    before = _success(load_policy(base))
    assert before == 0.0
    policy = train_residual(_config(base), tmp_path / "residual", show_progress=False)
    after = _success(policy)
    assert after >= 0.9, after  # 1.0 measured; the base alone: 0.5
    loaded = load_policy(tmp_path / "residual")
    obs = {"obs": torch.tensor([[0.05, 0.0], [0.2, 0.5], [0.4, 0.9]])}
    with torch.no_grad():
        a, _ = policy.act(obs, policy.initial_state(3))
        b, _ = loaded.act(obs, loaded.initial_state(3))
    assert torch.equal(a, b)
    capsys.readouterr()
    code = main(["eval", str(tmp_path / "residual"), "--split", "train", "--episodes", "2", "--json", "--quiet"])
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert code == 0 and json.loads(printed)["metrics"]["success"]["mean"] == after  # eval plays base + residual


class _Interrupt(Exception):
    pass


def test_an_interrupted_residual_run_resumes_exactly(line_env: None, tmp_path: Path) -> None:
    base = _constant_base(tmp_path / "base")
    config = _config(base, total_steps=4 * 128, num_envs=4, num_steps=32, checkpoint_every=256)
    train_residual(config, tmp_path / "whole", show_progress=False)

    def stop(env_steps: int, actor: Any) -> None:
        if env_steps == 3 * 128:  # after the checkpoint at 256
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train_residual(config, tmp_path / "split", show_progress=False, on_update=stop)
    train_residual(config, tmp_path / "split", resume=True, show_progress=False)
    whole, split = (load_tensors(tmp_path / run / MODEL_FILE) for run in ("whole", "split"))
    assert whole.keys() == split.keys() and all(torch.equal(whole[k], split[k]) for k in whole)


def test_a_base_run_that_is_not_continuous_is_one_error_line(
    line_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = BCPolicy(BCConfig((2,), 3, hidden_sizes=(8,)))
    save_policy(
        policy, tmp_path / "bc", {"format": RUN_FORMAT, "policy": "bc", "policy_config": config_to_json(policy.config)}
    )
    code = main(
        [
            "finetune",
            "residual",
            "--base",
            str(tmp_path / "bc"),
            "--env",
            "line",
            "--steps",
            "64",
            "--out",
            str(tmp_path / "out"),
            "--quiet",
        ]
    )
    assert_one_error_line(code, capsys.readouterr().err, "--base", "continuous_bc", "'bc'")


def test_the_precision_avoiding_variant_gates_the_finish_and_drifts() -> None:
    from clonekit.envs.avoiding import AvoidingTask, AvoidingVecEnv

    tasks = [AvoidingTask((0.3, 0.98)), AvoidingTask((0.36, 0.98))]  # just below the finish, above exit 0.3
    up = np.array([[0.0, 1.0], [0.0, 1.0]], dtype=np.float32)
    for kwargs, expected in (
        ({}, [1, 1]),
        ({"finish_gate": 0.05}, [1, 0]),
        ({"finish_gate": 0.05, "drift": -0.04}, [1, 1]),  # the wind moves 0.36 into the gate around 0.3
    ):
        vec = ENVS["avoiding"].make_vec(tasks, **kwargs)
        vec.reset()
        _, reward, terminated, _ = vec.step(up)
        assert reward.tolist() == expected and terminated.all(), kwargs
    plain = AvoidingVecEnv(tasks)
    assert plain.finish_gate is None and plain.drift == 0.0  # the defaults: today's env


# The README's claims for a residual run RUN2: `load_policy(RUN2)` needs no base run (the base's weights are copied
# into RUN2), and `residual.json` records the base's path and the SHA-256 of its weights file, which a resume checks.
TINY = {"total_steps": 4 * 128, "num_envs": 4, "num_steps": 32, "checkpoint_every": 256}


def _rewrite_base_weights(base: Path, change: dict[str, float], seed: int = 0) -> None:
    """Rewrite ``base``'s weights file with noise of standard deviation ``change[name]`` added to those tensors."""
    tensors = load_tensors(base / MODEL_FILE)
    generator = torch.Generator().manual_seed(seed)
    for name, std in change.items():
        tensors[name] = tensors[name] + std * torch.randn(tensors[name].shape, generator=generator)
    atomic_save_tensors(tensors, base / MODEL_FILE)


def _play(policy: Any, obs: torch.Tensor, steps: int = 4) -> torch.Tensor:
    """``policy``'s actions on ``obs`` for ``steps`` consecutive steps (a chunked base plays its queue), stacked."""
    state, actions = policy.initial_state(len(obs)), []
    with torch.no_grad():
        for _ in range(steps):
            action, state = policy.act({"obs": obs}, state)
            actions.append(action)
    return torch.stack(actions)


def test_a_finished_residual_run_loads_and_acts_identically_without_its_base_run(
    line_env: None, tmp_path: Path
) -> None:
    base = _constant_base(tmp_path / "base")
    # Observation-dependent base weights, so a base missing from RUN2 (or rebuilt from scratch) would act otherwise.
    _rewrite_base_weights(base, {"encoder.net.0.weight": 1.0, "encoder.net.0.bias": 0.5, "head.linear.weight": 0.5})
    base_sha = hashlib.sha256((base / MODEL_FILE).read_bytes()).hexdigest()
    run = tmp_path / "residual"
    trained = train_residual(_config(base, **(TINY | {"total_steps": 128})), run, show_progress=False)
    recorded = json.loads((run / "residual.json").read_text())
    assert recorded["base"] == str(base) and recorded["base_sha256"] == base_sha
    obs = torch.tensor([[0.05, 0.0], [0.2, 0.5], [0.4, 0.9], [-0.3, 0.2]])
    before = _play(load_policy(run), obs)
    assert torch.equal(before, _play(trained, obs))
    assert not torch.equal(before, _play(load_policy(base), obs))  # the residual moved the base's actions
    shutil.rmtree(base)
    assert not base.exists()
    loaded = load_policy(run)
    assert isinstance(loaded, ResidualPolicy)
    assert torch.equal(_play(loaded, obs), before)


def test_resuming_a_residual_run_whose_base_weights_changed_is_refused_with_one_error_line(
    line_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = _constant_base(tmp_path / "base")
    original = (base / MODEL_FILE).read_bytes()
    config = _config(base, **TINY)
    run = tmp_path / "residual"

    def stop(env_steps: int, actor: Any) -> None:
        if env_steps == 3 * 128:  # after the checkpoint at 256
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train_residual(config, run, show_progress=False, on_update=stop)
    provenance = (run / "residual.json").read_text()
    started_sha = hashlib.sha256(original).hexdigest()
    assert json.loads(provenance)["base_sha256"] == started_sha

    _rewrite_base_weights(base, {"head.linear.bias": 0.01})  # one tensor of the base moved a little
    changed_sha = hashlib.sha256((base / MODEL_FILE).read_bytes()).hexdigest()
    assert changed_sha != started_sha
    with pytest.raises(CheckpointError) as refused:
        train_residual(config, run, resume=True, show_progress=False)
    message = str(refused.value)
    assert "\n" not in message
    for needle in ("residual.json", str(base), started_sha, changed_sha):
        assert needle in message, (needle, message)
    assert (run / "residual.json").read_text() == provenance  # the refusal leaves the run as it was
    assert not (run / MODEL_FILE).exists()

    settings = ["scale=0.5", "hidden_sizes=[32, 32]", "init_log_std=-0.5", "lr=0.003", "num_minibatches=2"]
    settings += [f"{key}={value}" for key, value in TINY.items() if key != "total_steps"]
    capsys.readouterr()
    code = main(
        ["finetune", "residual", "--base", str(base), "--env", "line", "--steps", str(TINY["total_steps"])]
        + ["--out", str(run), "--resume", "--quiet"]
        + [arg for setting in settings for arg in ("--set", setting)]
    )
    assert_one_error_line(code, capsys.readouterr().err, "residual.json", started_sha, changed_sha)
    assert (run / "residual.json").read_text() == provenance

    (base / MODEL_FILE).write_bytes(original)  # the base as the run started from it: the resume goes through
    train_residual(config, run, resume=True, show_progress=False)
    assert isinstance(load_policy(run), ResidualPolicy)
