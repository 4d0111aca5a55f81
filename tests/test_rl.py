"""Online RL: PPO learns (discrete and continuous), resumes exactly, its actor is a clonekit policy, the BC
prior pulls it, bad input is one error line, and the demo-rl experiment runs end to end on a tiny preset."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pytest
import torch

from clonekit.checkpoint import MODEL_FILE, RUN_FORMAT, load_policy, load_tensors, save_policy
from clonekit.cli import main
from clonekit.config import config_to_json
from clonekit.evaluation import evaluate_run
from clonekit.experiments import demo_rl
from clonekit.policies.bc import BCConfig, BCPolicy
from clonekit.policies.continuous_bc import ContinuousBCConfig, ContinuousBCPolicy
from clonekit.rl import PPOConfig, train_ppo
from clonekit.rl.agent import Actor
from tests.conftest import assert_one_error_line

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CARTPOLE = PPOConfig(
    env="CartPole-v1",
    num_envs=8,
    num_steps=32,
    num_minibatches=4,
    update_epochs=10,
    lr=1e-3,
    gamma=0.98,
    gae_lambda=0.8,
)


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


REACH = PPOConfig(env="reach-target", num_envs=8, num_steps=16, num_minibatches=4, update_epochs=10, lr=3e-3, gamma=0.9)
TARGETS = torch.linspace(-0.9, 0.9, 19)[:, None]


def _train_reach(config: PPOConfig, out: Path) -> Actor:
    return train_ppo(config, out, show_progress=False, env_factories=[ReachTarget] * config.num_envs)


def _reach_error(actor: Actor) -> float:
    with torch.no_grad():
        return float((actor.act({"obs": TARGETS})[0] - TARGETS).square().mean())


def test_ppo_learns_cartpole_and_its_actor_is_a_clonekit_policy(tmp_path: Path) -> None:
    actor = train_ppo(replace(CARTPOLE, total_steps=8192), tmp_path / "run", show_progress=False)
    loaded = load_policy(tmp_path / "run")
    assert isinstance(loaded, BCPolicy)
    obs = torch.randn(16, 4)
    assert torch.equal(loaded.act({"obs": obs})[0], actor.act({"obs": obs})[0])
    # clonekit's own evaluation plays the run on the env it records (a random policy scores about 22)
    returns = evaluate_run(tmp_path / "run", "test", episodes=10, seed=0).returns
    assert returns.mean() >= 150, returns
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [256 * (i + 1) for i in range(len(lines))]
    assert {"policy_loss", "value_loss", "entropy", "approx_kl", "env_steps_per_s"} <= set(lines[-1])


def test_continuous_ppo_improves_on_a_tiny_env(tmp_path: Path) -> None:
    after = _reach_error(_train_reach(replace(REACH, total_steps=2048), tmp_path / "run"))
    assert isinstance(load_policy(tmp_path / "run"), ContinuousBCPolicy)
    first = float(TARGETS.square().mean())  # the first policy acts about 0: error 0.3
    assert after < 0.1 * first, (first, after)


class _Interrupt(Exception):
    pass


def test_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    config = replace(CARTPOLE, total_steps=4 * 256, checkpoint_every=512, update_epochs=2)
    train_ppo(config, tmp_path / "whole", show_progress=False)

    def stop_after_third(env_steps: int, actor: Actor) -> None:
        if env_steps == 3 * 256:  # after the checkpoint at 512: iteration 3 is lost and runs again
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train_ppo(config, tmp_path / "split", show_progress=False, on_update=stop_after_third)
    assert not (tmp_path / "split" / MODEL_FILE).exists()
    with pytest.raises(Exception, match="already exists"):
        train_ppo(config, tmp_path / "split", show_progress=False)
    train_ppo(config, tmp_path / "split", resume=True, show_progress=False)
    whole, split = load_tensors(tmp_path / "whole" / MODEL_FILE), load_tensors(tmp_path / "split" / MODEL_FILE)
    assert all(torch.equal(whole[k], split[k]) for k in whole)
    metrics = [(tmp_path / r / "metrics.jsonl").read_text().splitlines() for r in ("whole", "split")]
    strip = [[{k: v for k, v in json.loads(x).items() if k != "env_steps_per_s"} for x in m] for m in metrics]
    assert strip[0] == strip[1]


def _save_prior(policy: Any, name: str, out: Path) -> Path:
    out.mkdir()
    save_policy(policy, out, {"format": RUN_FORMAT, "policy": name, "policy_config": config_to_json(policy.config)})
    return out


def test_the_bc_prior_pulls_the_policy_towards_it(tmp_path: Path) -> None:
    # Discrete: a prior that pushes CartPole's cart right (action 1) in 95% of the draws, whatever it sees.
    prior = BCPolicy(BCConfig((4,), 2, hidden_sizes=(8,), normalize_obs="none"))
    with torch.no_grad():
        prior.head.linear.weight.zero_()
        prior.head.linear.bias.copy_(torch.tensor([0.0, 3.0]))
    prior_dir = _save_prior(prior, "bc", tmp_path / "prior")
    config = replace(CARTPOLE, total_steps=1024, update_epochs=4, lr=1e-2)
    obs = torch.randn(256, 4) * 0.1

    def right(actor: Actor) -> float:
        with torch.no_grad():
            return float(torch.softmax(actor.head(actor.features(obs)), -1)[:, 1].mean())  # type: ignore[union-attr]

    free = right(train_ppo(config, tmp_path / "free", show_progress=False))
    pulled = right(
        train_ppo(replace(config, prior=str(prior_dir), prior_coef=2.0), tmp_path / "pulled", show_progress=False)
    )
    assert free < 0.7 and pulled > 0.85, (free, pulled)

    # Continuous: a prior that always acts 1.5, against a reward that wants the target in [-1, 1].
    cprior = ContinuousBCPolicy(ContinuousBCConfig((1,), (1,), hidden_sizes=(8,), normalize_obs="none"))
    with torch.no_grad():
        cprior.head.linear.weight.zero_()
        cprior.head.linear.bias.fill_(0.75)  # [-1, 1] units of its range [-2, 2]
        cprior.action_low.fill_(-2.0)
        cprior.action_high.fill_(2.0)
    cprior_dir = _save_prior(cprior, "continuous_bc", tmp_path / "cprior")
    reach = replace(REACH, total_steps=1536)
    pulled_actor = _train_reach(replace(reach, prior=str(cprior_dir), prior_coef=5.0), tmp_path / "cpulled")
    free_actor = _train_reach(reach, tmp_path / "cfree")
    with torch.no_grad():
        pulled_action = float(pulled_actor.act({"obs": TARGETS})[0].mean())
        free_action = float(free_actor.act({"obs": TARGETS})[0].mean())
    assert abs(free_action) < 0.3 and pulled_action > 0.8, (free_action, pulled_action)


def _run(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_trains_ppo_and_bad_input_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    base = ("rl", "ppo", "--env", "CartPole-v1", "--steps", "64", "--quiet", "--set", "num_steps=8")
    code, out, err = _run(capsys, *base, "--out", run)
    assert code == 0, err
    assert "trained ppo" in out and isinstance(load_policy(run), BCPolicy)
    assert_one_error_line(*_run(capsys, *base, "--out", run)[::2], "already exists")
    assert_one_error_line(*_run(capsys, *base, "--out", run, "--resume", "--set", "lr=0.1")[::2], "lr")
    bad_env = ("rl", "ppo", "--env", "NoSuchEnv-v0", "--steps", "64", "--out", tmp_path / "x")
    assert_one_error_line(*_run(capsys, *bad_env)[::2], "NoSuchEnv-v0")
    assert_one_error_line(
        *_run(capsys, *base[:-2], "--out", tmp_path / "y", "--set", "num_minibatch=2")[::2], "num_minibatch"
    )
    code, _, err = _run(capsys, "rl", "ppo", "--env", "CartPole-v1", "--steps", "0", "--out", tmp_path / "z")
    assert_one_error_line(code, err, "total_steps")
    prior = _save_prior(BCPolicy(BCConfig((4,), 3, hidden_sizes=(8,))), "bc", tmp_path / "prior3")
    code, _, err = _run(capsys, *base, "--out", tmp_path / "w", "--prior", prior)
    assert_one_error_line(code, err, "prior", "2 actions")
    assert not (tmp_path / "x").exists() and not (tmp_path / "z").exists()


def test_demo_rl_tiny_smoke(tmp_path: Path) -> None:
    config = replace(
        demo_rl.QUICK,
        maze_size=5,
        train_mazes=2,
        demo_episodes=2,
        seeds=2,
        budget=256,
        eval_every=128,
        eval_episodes=4,
        bc_steps=10,
        num_envs=2,
        num_steps=64,
        hidden_sizes=(16,),
        prior_decay_steps=128,
    )
    results = demo_rl.run(tmp_path, 0, True, show_progress=False, log=lambda *_: None, config=config)
    for key in demo_rl.KEYS:
        cell = results["metrics"][key]["train"]
        steps = cell["steps_to_threshold"]
        assert steps["n"] == 2 and 0 <= steps["median"] <= 256 and 0 <= steps["censored"] <= 2
        assert 0 <= cell["success"]["mean"] <= 1
    assert [s for s, _ in results["curves"]["rl"][0]] == [0, 128, 256]
    assert (tmp_path / "report.md").read_text().count("| rl") == 2
    assert (tmp_path / "demo-rl.png").stat().st_size > 0
    assert isinstance(load_policy(tmp_path / "runs" / "rl_demo_0"), BCPolicy)
    # a rerun reads the finished runs back
    again = demo_rl.run(tmp_path, 0, True, show_progress=False, log=lambda *_: None, config=config)
    assert again["metrics"] == results["metrics"]


class _FirstPolicy(Exception):
    pass


def _first_actor(config: PPOConfig, out: Path, factories: list[Any] | None = None) -> dict[str, torch.Tensor]:
    """The actor's state PPO starts from: taken by ``on_update``'s call before the first update, which then stops
    the run (no env step is taken)."""
    seen: dict[str, torch.Tensor] = {}

    def stop_at_start(env_steps: int, actor: Actor) -> None:
        assert env_steps == 0
        seen.update({k: v.detach().clone() for k, v in actor.state_dict().items()})
        raise _FirstPolicy

    with pytest.raises(_FirstPolicy):
        train_ppo(config, out, show_progress=False, env_factories=factories, on_update=stop_at_start)
    return seen


def test_init_from_prior_starts_the_actor_from_the_priors_weights(tmp_path: Path) -> None:
    torch.manual_seed(123)  # priors unlike anything PPO's own seeded initialization draws
    prior = BCPolicy(BCConfig((4,), 2, hidden_sizes=(8, 8), normalize_obs="per_feature"))
    cprior = ContinuousBCPolicy(
        ContinuousBCConfig((1,), (1,), head="mse", hidden_sizes=(8,), normalize_obs="per_feature")
    )
    with torch.no_grad():  # fitted-looking statistics and bounds: the buffers must come along too
        prior.normalizer.mean.copy_(torch.tensor([0.1, -0.2, 0.3, -0.4]))
        prior.normalizer.std.copy_(torch.tensor([0.5, 2.0, 0.25, 3.0]))
        cprior.normalizer.std.fill_(0.5)
        cprior.action_low.fill_(-2.0)
        cprior.action_high.fill_(2.0)
    cases = [
        (replace(CARTPOLE, hidden_sizes=(8, 8)), None, _save_prior(prior, "bc", tmp_path / "prior"), prior),
        (
            replace(REACH, hidden_sizes=(8,)),
            [ReachTarget] * 8,
            _save_prior(cprior, "continuous_bc", tmp_path / "cprior"),
            cprior,
        ),
    ]
    for i, (base, factories, prior_dir, policy) in enumerate(cases):
        expected = load_tensors(prior_dir / MODEL_FILE)  # what the prior run holds on disk
        assert expected.keys() == policy.state_dict().keys()
        config = replace(base, total_steps=base.batch_size, prior=str(prior_dir))
        started = _first_actor(replace(config, init_from_prior=True), tmp_path / f"init_{i}", factories)
        assert started.keys() == expected.keys()
        assert all(torch.equal(started[k], expected[k]) for k in expected), [
            k for k in expected if not torch.equal(started[k], expected[k])
        ]
        # Without it (same widths, the prior only pulling): PPO's own orthogonal initialization, no weight shared.
        fresh = _first_actor(replace(config, init_from_prior=False), tmp_path / f"fresh_{i}", factories)
        weights = {k for k in expected if k.endswith(("weight", "bias")) and "normalizer" not in k}
        assert len(weights) >= 4 and weights == {k for k in fresh if k.endswith(("weight", "bias"))}
        assert not any(torch.equal(fresh[k], expected[k]) for k in weights if k.endswith("weight"))
        assert not torch.equal(fresh["normalizer.std"], expected["normalizer.std"])
    # A finished run's actor keeps the prior's architecture and normalization (its config is the prior's).
    train_ppo(
        replace(cases[0][0], total_steps=256, prior=str(cases[0][2]), init_from_prior=True),
        tmp_path / "run",
        show_progress=False,
    )
    assert load_policy(tmp_path / "run").config == prior.config
