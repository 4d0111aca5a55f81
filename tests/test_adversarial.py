"""Adversarial imitation (GAIL, AIRL, GAIfO): the discriminator separates expert from other transitions, GAIL
learns a tiny task from demonstrations alone, a run resumes exactly, bad input is one error line, and the
adversarial-il experiment runs end to end on a tiny preset."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pytest
import torch

from clonekit.checkpoint import MODEL_FILE, load_policy, load_tensors
from clonekit.cli import main
from clonekit.data import Dataset
from clonekit.data.format import array_stream
from clonekit.data.observation_only import write_observation_only
from clonekit.data.writer import DatasetWriter
from clonekit.experiments import adversarial_il
from clonekit.policies.bc import BCPolicy
from clonekit.rl.adversarial import (
    DISCRIMINATOR_FILE,
    AdversarialConfig,
    AdversarialReward,
    Discriminator,
    expert_transitions,
    train_adversarial,
)
from clonekit.rl.agent import ActorCritic, new_actor
from clonekit.rl.ppo import Rollout
from tests.conftest import assert_one_error_line

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ENV_ID = "clonekit-test/SignTask-v0"
LENGTH = 2


class SignTask(gymnasium.Env[np.ndarray, np.int64]):
    """``LENGTH`` steps, each observing a fresh point in [-1, 1]^2; the expert's action is ``x[0] > 0``. The env's
    reward (1 for the expert's action) is never shown to the adversarial methods."""

    observation_space = gymnasium.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
    action_space = gymnasium.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        self.x = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return self.x, {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = float(int(action) == int(self.x[0] > 0))
        self.t += 1
        self.x = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return self.x, reward, self.t >= LENGTH, False, {}


if ENV_ID not in gymnasium.registry:
    gymnasium.register(ENV_ID, entry_point=SignTask)


@pytest.fixture(scope="module")
def sign_demos(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """48 expert episodes of the sign task (96 transitions)."""
    rng = np.random.default_rng(0)
    streams = [
        array_stream("obs", "float32", (2,)),
        array_stream("action", "int64"),
        array_stream("reward", "float32"),
        array_stream("terminated", "bool"),
        array_stream("truncated", "bool"),
    ]
    spaces = {"action": {"type": "Discrete", "n": 2, "start": 0}}
    path = tmp_path_factory.mktemp("adversarial") / "sign"
    with DatasetWriter(path, streams, spaces=spaces, env={"id": "gym", "kwargs": {"id": ENV_ID}}) as writer:
        for _ in range(48):
            obs = rng.uniform(-1, 1, (LENGTH, 2)).astype(np.float32)
            writer.add_episode(
                {
                    "obs": obs,
                    "action": (obs[:, 0] > 0).astype(np.int64),
                    "reward": np.ones(LENGTH, np.float32),
                    "terminated": np.arange(LENGTH) == LENGTH - 1,
                    "truncated": np.zeros(LENGTH, bool),
                }
            )
        return writer.close()


def _config(demos: Dataset, **changes: Any) -> AdversarialConfig:
    settings: dict[str, Any] = {
        "method": "gail",
        "demos": str(demos.path),
        "env": ENV_ID,
        "total_steps": 2048,
        "num_envs": 8,
        "num_steps": 16,
        "lr": 3e-3,
        "update_epochs": 4,
        "disc_lr": 3e-3,
        "disc_updates": 8,
        "disc_batch_size": 64,
        "hidden_sizes": (32,),
        "disc_hidden_sizes": (32,),
        "gamma": 0.5,
    }
    return AdversarialConfig(**(settings | changes))


def _agreement(policy: Any) -> float:
    """Share of a grid of points where the greedy policy acts as the expert."""
    grid = torch.cartesian_prod(torch.linspace(-0.95, 0.95, 20), torch.linspace(-0.95, 0.95, 5))
    with torch.no_grad():
        actions, _ = policy.act({"obs": grid})
    return float((actions == (grid[:, 0] > 0).long()).float().mean())


def test_the_discriminator_separates_expert_from_wrong_transitions(sign_demos: Dataset) -> None:
    config = _config(sign_demos, disc_updates=150)
    space = gymnasium.spaces.Discrete(2)
    expert = expert_transitions(sign_demos, "gail", space, 1, 0)
    assert len(expert.obs) == sign_demos.num_steps  # gail keeps every step
    torch.manual_seed(0)
    discriminator = Discriminator("gail", 2, 2, True, (32,), 0.5, expert.obs.mean(0), expert.obs.std(0))
    model = AdversarialReward(config, expert, discriminator)
    generator = torch.Generator().manual_seed(1)
    obs = torch.rand((16, 8, 2), generator=generator) * 2 - 1
    actions = torch.randint(2, (16, 8), generator=generator)  # a random policy: half its actions are wrong
    rollout = Rollout(obs, actions, torch.full((16, 8), -0.69), obs.clone(), torch.zeros((16, 8), dtype=torch.bool))
    agent = ActorCritic(new_actor(SignTask.observation_space, space, "mlp", (8,)), (8,), 0.0)
    rewards, info = model.rewards(rollout, agent)
    assert rewards.shape == (16, 8) and bool((rewards > 0).all())  # the positive form: -log(1 - D)
    right = actions == (obs[..., 0] > 0).long()
    # measured: mean reward 1.00 (right actions) vs 0.14 (wrong); held out, the expert's action outscores the
    # wrong one at 0.985 of the points and the wrong one is judged non-expert at 0.998
    assert float(rewards[right].mean()) > float(rewards[~right].mean()) + 0.5, (rewards[right].mean(), info)
    held_out = torch.rand((400, 2), generator=generator) * 2 - 1
    rule = (held_out[:, 0] > 0).long()
    none = torch.zeros(400, dtype=torch.bool)
    with torch.no_grad():
        expert_logit = discriminator(held_out, rule, held_out, none, None)
        wrong_logit = discriminator(held_out, 1 - rule, held_out, none, None)
    assert float((expert_logit > wrong_logit).float().mean()) >= 0.9
    assert float((wrong_logit < 0).float().mean()) >= 0.9


def test_gail_learns_the_sign_task_from_demonstrations_alone(sign_demos: Dataset, tmp_path: Path) -> None:
    actor = train_adversarial(_config(sign_demos), tmp_path / "run", show_progress=False)
    loaded = load_policy(tmp_path / "run")
    assert isinstance(loaded, BCPolicy)
    obs = torch.rand(32, 2) * 2 - 1
    assert torch.equal(loaded.act({"obs": obs})[0], actor.act({"obs": obs})[0])
    # measured: 0.97 after 2048 env steps (seeds 0-6: 0.97, 0.94, 0.97, 0.98, 0.92, 0.97, 0.94); a random
    # policy agrees on about half the grid
    assert _agreement(loaded) >= 0.85
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"disc_loss", "disc_expert_acc", "disc_policy_acc", "learned_reward"} <= set(lines[-1])
    assert (tmp_path / "run" / DISCRIMINATOR_FILE).is_file()


class _Interrupt(Exception):
    pass


def test_airl_resumes_exactly(sign_demos: Dataset, tmp_path: Path) -> None:
    config = _config(sign_demos, method="airl", total_steps=4 * 128, checkpoint_every=256)
    train_adversarial(config, tmp_path / "whole", show_progress=False)

    def stop_after_third(env_steps: int, actor: Any) -> None:
        if env_steps == 3 * 128:  # after the checkpoint at 256: iteration 3 is lost and runs again
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train_adversarial(config, tmp_path / "split", show_progress=False, on_update=stop_after_third)
    train_adversarial(config, tmp_path / "split", resume=True, show_progress=False)
    for name in (MODEL_FILE, DISCRIMINATOR_FILE):
        whole, split = load_tensors(tmp_path / "whole" / name), load_tensors(tmp_path / "split" / name)
        assert whole.keys() == split.keys() and all(torch.equal(whole[k], split[k]) for k in whole), name
    metrics = [(tmp_path / r / "metrics.jsonl").read_text().splitlines() for r in ("whole", "split")]
    strip = [[{k: v for k, v in json.loads(x).items() if k != "env_steps_per_s"} for x in m] for m in metrics]
    assert strip[0] == strip[1]
    with pytest.raises(Exception, match="disc_lr"):
        changed = _config(sign_demos, method="airl", total_steps=4 * 128, checkpoint_every=256, disc_lr=1e-3)
        train_adversarial(changed, tmp_path / "split", resume=True, show_progress=False)


def _run(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_runs_gaifo_without_actions_and_bad_input_is_one_error_line(
    sign_demos: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    observations = write_observation_only(sign_demos, tmp_path / "obs_only")
    common = ("--env", ENV_ID, "--demos", observations.path, "--steps", "128", "--quiet", "--set", "num_steps=16")
    code, out, err = _run(capsys, "rl", "gaifo", *common, "--out", tmp_path / "gaifo")
    assert code == 0, err
    assert "trained gaifo" in out and isinstance(load_policy(tmp_path / "gaifo"), BCPolicy)
    for method in ("gail", "airl"):
        code, _, err = _run(capsys, "rl", method, *common, "--out", tmp_path / method)
        assert_one_error_line(code, err, method, "'action'")
        assert not (tmp_path / method).exists()
    code, _, err = _run(capsys, "rl", "gaifo", *common, "--set", "disc_lr=-1", "--out", tmp_path / "x")
    assert_one_error_line(code, err, "disc_lr")
    code, _, err = _run(capsys, "rl", "gaifo", *common, "--out", tmp_path / "gaifo")
    assert_one_error_line(code, err, "already exists")


def test_adversarial_il_tiny_smoke(tmp_path: Path) -> None:
    config = replace(adversarial_il.QUICK, budget=1024, bc_steps=20, eval_every=1024, eval_episodes=2, final_episodes=3)
    results = adversarial_il.run(tmp_path / "exp", 0, True, show_progress=False, log=lambda _: None, config=config)
    assert set(results["metrics"]) == set(adversarial_il.KEYS)
    for key in adversarial_il.KEYS:
        assert {"return", "success"} <= set(results["metrics"][key]["test"])
    assert results["demos"]["kept_steps"] == 25  # one 500-step episode of the scripted expert, every 20th step
    assert (tmp_path / "exp" / "report.md").is_file() and (tmp_path / "exp" / f"{adversarial_il.NAME}.png").is_file()
    again = adversarial_il.run(tmp_path / "exp", 0, True, show_progress=False, log=lambda _: None, config=config)
    assert again["metrics"] == results["metrics"]  # finished runs are read back, not trained again
