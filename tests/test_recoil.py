"""ReCOIL (policy ``recoil``): it learns from a few marked expert episodes among random ones where BC on all the
data fails; the policy contract (save/load, batch untouched, exact resume, discrete actions); clear errors for
a missing or empty expert stream; and the ``avoiding-mixed`` experiment end to end on a tiny preset."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import onnxruntime as ort
import pytest
import torch

from clonekit.checkpoint import load_policy
from clonekit.data import Dataset, DatasetWriter, array_stream
from clonekit.data.spaces import space_to_json
from clonekit.envs import get_env_family
from clonekit.errors import DatasetError
from clonekit.evaluation import rollout, split_tasks
from clonekit.experiments import avoiding_mixed
from clonekit.experiments.avoiding_mixed import write_mixture
from clonekit.export import export_policy_onnx
from clonekit.policies import build_policy
from clonekit.policies.recoil.policy import chi2_conjugate
from clonekit.train import TrainConfig, policy_config_for, train
from tests.conftest import assert_one_error_line, tree_hash

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {"hidden_sizes": [64, 64]}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """6 expert episodes (marked) and 40 uniform-random ones (unmarked) from 6 Avoiding start states."""
    path = tmp_path_factory.mktemp("recoil") / "mixed"
    return write_mixture(path, seed=3, train_starts=6, counts={"expert": 6, "noisy": 0, "random": 40}, noise_prob=0.5)


def _config(steps: int, **kwargs: object) -> TrainConfig:
    settings: dict = dict(steps=steps, batch_size=128, lr=3e-3, seed=0, tensorboard=False, val_fraction=0.0)
    return TrainConfig(**{**settings, **kwargs})  # type: ignore[arg-type]


def test_recoil_imitates_the_marked_expert_where_bc_on_all_data_fails(mixed: Dataset, tmp_path: Path) -> None:
    tasks = split_tasks(mixed.env, "test", 3, 40)
    family = get_env_family("avoiding")
    success = {}
    sharp = {"temperature": 10.0, "beta": 0.8}  # weights that single out the expert's actions within 500 steps
    for name, overrides in (("continuous_bc", SMALL), ("recoil", {**SMALL, **sharp})):
        policy = train(name, mixed, tmp_path / name, _config(500), policy_overrides=overrides, show_progress=False)
        success[name] = float(rollout(policy, family, tasks, 40, seed=3).success.mean())
    # Random steps outnumber the expert's 8 to 1 near the start: BC averages them into a crawl.
    assert success["continuous_bc"] <= 0.1, success
    assert success["recoil"] >= 0.35, success  # 0.525 when written; BC on the 6 expert episodes alone: 0.55


def test_chi2_conjugate_is_the_conjugate_of_pearson_chi2_over_nonnegative_ratios() -> None:
    y = torch.linspace(-5, 5, 101)
    x = torch.linspace(0, 10, 20001)[None]  # sup over x >= 0 of x y - (x - 1)^2, by brute force
    brute = (x * y[:, None] - (x - 1) ** 2).max(dim=1).values
    assert torch.allclose(chi2_conjugate(y), brute, atol=1e-3)


def test_save_load_batch_untouched_and_exact_resume(mixed: Dataset, tmp_path: Path) -> None:
    whole = train("recoil", mixed, tmp_path / "whole", _config(8, checkpoint_every=4), SMALL, show_progress=False)
    loaded = load_policy(tmp_path / "whole")
    obs = {"obs": torch.from_numpy(np.array(mixed.column("obs")[:50]))}
    assert torch.equal(whole.act(obs)[0], loaded.act(obs)[0])
    assert loaded.act(obs)[0].shape == (50, 2)
    expected_fraction = np.asarray(mixed.column("expert")).mean()
    assert loaded.expert_fraction.item() == pytest.approx(expected_fraction)

    # compute_loss leaves the batch alone.
    generator = torch.Generator().manual_seed(0)
    from clonekit.data.windows import sample_batch

    batch = sample_batch(mixed, 32, generator, list(loaded.batch_streams()), loaded.sample_windows())
    before = {k: v.clone() for k, v in batch.items()}
    loss, info = loaded.compute_loss(batch)
    assert torch.isfinite(loss) and {"q_loss", "v_loss", "actor_loss"} <= set(info)
    assert all(torch.equal(batch[k], before[k]) for k in before)

    # Stopped at step 4 and resumed to 8: the same weights (targets included) as 8 steps in one go.
    train("recoil", mixed, tmp_path / "split", _config(4, checkpoint_every=4), SMALL, show_progress=False)
    train("recoil", mixed, tmp_path / "split", _config(8), resume=True, show_progress=False)
    first, second = load_policy(tmp_path / "whole").state_dict(), load_policy(tmp_path / "split").state_dict()
    assert first.keys() == second.keys() and any("q_target" in k for k in first)
    assert all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize("head", ["mse", "gmm"])
def test_onnx_acts_like_torch(head: str, mixed: Dataset, tmp_path: Path) -> None:
    torch.manual_seed(0)  # untrained, with fitted normalization and action scaling
    policy = build_policy("recoil", policy_config_for("recoil", mixed, {**SMALL, "head": head}))
    policy.prepare(mixed)
    policy.eval()
    path = export_policy_onnx(policy, tmp_path / "recoil.onnx", torch.float32)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    obs = np.array(mixed.column("obs")[::97])
    (action,) = session.run(None, {"obs": obs})
    with torch.inference_mode():
        expected, _ = policy.act({"obs": torch.from_numpy(obs)})
    np.testing.assert_allclose(action, expected.numpy(), rtol=0, atol=1e-5)


def test_discrete_actions(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    writer = DatasetWriter(
        tmp_path / "discrete",
        [
            array_stream("obs", "float32", (3,)),
            array_stream("action", "int64", ()),
            array_stream("reward", "float32", ()),
            array_stream("terminated", "bool", ()),
            array_stream("truncated", "bool", ()),
            array_stream("demo", "int64", (), "1 on expert steps"),
        ],
        spaces={
            "observation": space_to_json(gym.spaces.Box(-1, 1, (3,))),
            "action": space_to_json(gym.spaces.Discrete(3)),
        },
    )
    with writer:
        for k in range(6):
            n = 10
            obs = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
            writer.add_episode(
                {
                    "obs": obs,
                    "action": (obs[:, 0] > 0).astype(np.int64) if k < 2 else rng.integers(3, size=n),
                    "reward": np.zeros(n, np.float32),
                    "terminated": np.arange(n) == n - 1,
                    "truncated": np.zeros(n, bool),
                    "demo": np.full(n, int(k < 2)),
                }
            )
        data = writer.close()
    overrides = {**SMALL, "expert_stream": "demo"}
    policy = train("recoil", data, tmp_path / "run", _config(20), overrides, show_progress=False)
    assert policy.config.num_actions == 3 and policy.config.action_shape == ()
    action, _ = policy.act({"obs": torch.zeros(5, 3)})
    assert action.shape == (5,) and action.dtype == torch.int64
    logits = policy.action_logits({"obs": torch.zeros(5, 3)})
    assert logits is not None and logits[0].shape == (5, 3)


def test_missing_or_empty_expert_stream_is_a_clear_error(mixed: Dataset, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="'marks'"):
        train("recoil", mixed, tmp_path / "a", _config(2), {"expert_stream": "marks"}, show_progress=False)
    counts = {"expert": 0, "noisy": 0, "random": 2}
    no_expert = write_mixture(tmp_path / "none", seed=1, train_starts=2, counts=counts, noise_prob=0.0)
    with pytest.raises(DatasetError, match=r"'expert'.*expected some expert steps"):
        build_policy("recoil", policy_config_for("recoil", no_expert)).prepare(no_expert)
    with pytest.raises(DatasetError, match=r"'obs'.*expected one number per step"):
        build_policy("recoil", policy_config_for("recoil", mixed, {"expert_stream": "obs"})).prepare(mixed)


def test_avoiding_mixed_tiny_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from clonekit.cli import main

    settings = [
        "train_starts=3",
        "expert_episodes=3",
        "noisy_episodes=3",
        "random_episodes=3",
        "test_starts=4",
        "val_starts=3",
        "recoil_temperatures=[0.5, 3]",
        "steps=4",
        "batch_size=16",
        "hidden_sizes=[16]",
        "dt_steps=2",
        "dt_batch_size=4",
        "dt_context=3",
    ]
    out = tmp_path / "exp"
    args = ["run", "avoiding-mixed", "--quick", "--seed", "2", "--out", str(out), "--json"]
    assert main([*args, *(f"--set={s}" for s in settings)]) == 0
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert results["experiment"] == "avoiding-mixed" and results["config"]["steps"] == 4
    assert list(results["metrics"]) == list(avoiding_mixed.KEYS)
    for splits in results["metrics"].values():
        success = splits["test"]["success"]
        assert success["n"] == 4 and 0 <= success["ci95"][0] <= success["mean"] <= success["ci95"][1] <= 1
    # recoil's temperature is chosen on the val split, never on test.
    chosen = results["selection"]["recoil"]
    assert set(chosen["val_success"]) == {"0.5", "3"} and chosen["temperature"] in (0.5, 3)
    best = max(v["mean"] for v in chosen["val_success"].values())
    assert chosen["val_success"][f"{chosen['temperature']:g}"]["mean"] == best
    assert chosen["val_success"]["3"]["n"] == 3 and set(results["metrics"]["recoil"]) == {"test"}
    assert (out / "runs" / "recoil_t0.5").is_dir() and (out / "runs" / "recoil_t3").is_dir()
    composition = results["data"]["composition"]
    assert [composition[k]["episodes"] for k in ("expert", "noisy", "random")] == [3, 3, 3]
    assert (out / "success.png").stat().st_size > 1000 and "recoil" in (out / "report.md").read_text()
    data = Dataset.open(out / "data" / "all")
    marked = np.asarray(data.column("expert"))
    behaviour = np.repeat(np.asarray(data.episode_info("behaviour")), data.episode_lengths)
    assert np.array_equal(marked, behaviour == "expert")

    # A rerun reuses data and runs; other settings on the same OUT are refused.
    before = tree_hash(out / "runs")
    assert main([*args, *(f"--set={s}" for s in settings)]) == 0
    assert tree_hash(out / "runs") == before
    capsys.readouterr()
    code = main([*args, *(f"--set={s}" for s in settings), "--set=noise_prob=0.9"])
    assert_one_error_line(code, capsys.readouterr().err, "other settings")


def test_avoiding_mixed_refuses_unregistered_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from clonekit.cli import main
    from clonekit.policies import POLICIES

    monkeypatch.delitem(POLICIES, "dt")
    code = main(["run", "avoiding-mixed", "--quick", "--seed", "0", "--out", str(tmp_path / "x")])
    assert_one_error_line(code, capsys.readouterr().err, "dt (policy 'dt') not registered", "policies=")
    assert not (tmp_path / "x").exists()
