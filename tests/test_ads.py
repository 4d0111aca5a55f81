"""ADS (automatic discount scheduling): the progress measure on hand-made sequences, the discount rising with
progress, PPO unchanged when no schedule is given, exact resume of GAIfO + ADS, one-line config errors, and
the lfo-ads experiment end to end on a tiny preset."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from clonekit.checkpoint import MODEL_FILE, load_tensors
from clonekit.data import Dataset
from clonekit.data.format import array_stream
from clonekit.data.writer import DatasetWriter
from clonekit.errors import ConfigError
from clonekit.experiments import lfo_ads
from clonekit.rl.ads import ScheduledDiscount, ads_discount, matched_prefix
from clonekit.rl.adversarial import DISCRIMINATOR_FILE, AdversarialConfig, train_adversarial
from clonekit.rl.config import PPOConfig
from clonekit.rl.ppo import Rollout, train_ppo
from tests.test_adversarial import ENV_ID, LENGTH

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LINE = np.arange(5, dtype=np.float64)[:, None]  # an expert walking 0, 1, 2, 3, 4 along a line


def test_matched_prefix_on_hand_made_sequences() -> None:
    def prefix(agent: list[float], tolerance: float = 0.1, window: int = 1) -> int:
        return matched_prefix(np.asarray(agent)[:, None], LINE, tolerance, window)

    assert prefix([0, 1, 2, 3, 4]) == 5  # the expert itself
    assert prefix([0, 0, 1, 1, 9, 2]) == 3  # waiting is fine, a detour does not count, order does
    assert prefix([4, 3, 2, 1, 0]) == 1  # backwards: only the first expert state, at the end
    assert prefix([0, 2, 3]) == 1  # a skipped expert state stops the match without look-ahead...
    assert prefix([0, 2, 3], window=2) == 4  # ...and is passed over with a window of 2
    assert prefix([0.5], tolerance=0.6, window=3) == 2  # one agent state near two expert states matches both
    assert prefix([]) == 0


def test_the_discount_rises_with_progress_and_is_capped() -> None:
    assert ads_discount(0, 0.2, 0.99) == pytest.approx(0.2)
    assert ads_discount(4, 0.0625, 0.99) == pytest.approx(0.5)  # 0.0625 ** (1 / 4)
    values = [ads_discount(k, 0.2, 0.99) for k in range(0, 400, 10)]
    assert all(b >= a for a, b in itertools.pairwise(values)) and values[-1] == 0.99


class _ZeroReward:
    def rewards(self, rollout: Rollout, agent: Any) -> tuple[torch.Tensor, dict[str, float]]:
        return torch.zeros(rollout.log_prob.shape), {}

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {}, {}

    def load_state(self, tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> None:
        pass


def _rollout(obs: list[list[float]], ended: list[list[bool]]) -> Rollout:
    """``obs``/``ended`` ``(T, N)`` of 1-D observations."""
    o = torch.tensor(obs, dtype=torch.float32)[..., None]
    t_len, n = o.shape[:2]
    done = torch.tensor(ended)
    return Rollout(o, torch.zeros((t_len, n), dtype=torch.int64), torch.zeros((t_len, n)), o, done, done)


def test_scheduled_discount_tracks_progress_across_rollouts() -> None:
    model = ScheduledDiscount(_ZeroReward(), [LINE, LINE[:2]], np.zeros(1), np.ones(1), 2, 0.2, 0.99, 0.1, 1)
    assert model.discount() == pytest.approx(0.2)
    # env 0 follows the expert for 3 steps and goes on into the next rollout; env 1 matches 1 state and ends
    _, info = model.rewards(_rollout([[0, 0], [1, 7], [2, 7]], [[False, False], [False, False], [False, True]]), None)  # type: ignore[arg-type]
    assert info["ads_episode_progress"] == 1.0 and model.progress == 1.0
    _, info = model.rewards(_rollout([[3, 0], [9, 1], [9, 7]], [[False, False], [True, False], [False, True]]), None)  # type: ignore[arg-type]
    assert info["ads_episode_progress"] == 3.0  # env 0 ended with 4 matched, env 1 with 2 (the second expert's)
    assert model.progress == 3.0 and model.discount() == pytest.approx(0.2 ** (1 / 3))
    tensors, rest = model.state()
    copy = ScheduledDiscount(_ZeroReward(), [LINE, LINE[:2]], np.zeros(1), np.ones(1), 2, 0.2, 0.99, 0.1, 1)
    copy.load_state(tensors, json.loads(json.dumps(rest)))
    assert copy.progress == model.progress and np.array_equal(copy.pointers, model.pointers)


def test_ppo_discount_hook_off_is_bit_identical(tmp_path: Path) -> None:
    """``discount=None`` and a schedule that returns ``config.gamma`` give the same weights, bit for bit."""
    config = PPOConfig(env=ENV_ID, total_steps=2 * 32, num_envs=2, num_steps=16, hidden_sizes=(8,), gamma=0.9)
    train_ppo(config, tmp_path / "none", show_progress=False)
    train_ppo(config, tmp_path / "same", show_progress=False, discount=lambda: 0.9)
    train_ppo(config, tmp_path / "other", show_progress=False, discount=lambda: 0.5)
    none, same, other = (load_tensors(tmp_path / r / MODEL_FILE) for r in ("none", "same", "other"))
    assert all(torch.equal(none[k], same[k]) for k in none)
    assert not all(torch.equal(none[k], other[k]) for k in none)  # the hook does reach the update


@pytest.fixture(scope="module")
def walk_demos(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """24 observation-only episodes (no ``action`` stream) of the sign task's env (random points)."""
    rng = np.random.default_rng(0)
    streams = [
        array_stream("obs", "float32", (2,)),
        array_stream("reward", "float32"),
        array_stream("terminated", "bool"),
        array_stream("truncated", "bool"),
    ]
    path = tmp_path_factory.mktemp("ads") / "obs_only"
    with DatasetWriter(path, streams, env={"id": "gym", "kwargs": {"id": ENV_ID}}) as writer:
        for _ in range(24):
            writer.add_episode(
                {
                    "obs": rng.uniform(-1, 1, (LENGTH, 2)).astype(np.float32),
                    "reward": np.ones(LENGTH, np.float32),
                    "terminated": np.arange(LENGTH) == LENGTH - 1,
                    "truncated": np.zeros(LENGTH, bool),
                }
            )
        return writer.close()


class _Interrupt(Exception):
    pass


def test_gaifo_with_ads_resumes_exactly(walk_demos: Dataset, tmp_path: Path) -> None:
    config = AdversarialConfig(
        method="gaifo",
        demos=str(walk_demos.path),
        env=ENV_ID,
        total_steps=4 * 128,
        num_envs=8,
        num_steps=16,
        hidden_sizes=(16,),
        disc_hidden_sizes=(16,),
        disc_batch_size=32,
        checkpoint_every=256,
        discount_schedule="ads",
        ads_tolerance=1.5,  # random points: loose enough that some steps match
        ads_window=2,
    )
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
    lines = [
        [{k: v for k, v in json.loads(x).items() if k != "env_steps_per_s"} for x in p.read_text().splitlines()]
        for p in (tmp_path / "whole" / "metrics.jsonl", tmp_path / "split" / "metrics.jsonl")
    ]
    assert lines[0] == lines[1]
    gammas = [line["gamma"] for line in lines[0]]
    assert gammas[0] == pytest.approx(0.2) and gammas[-1] > gammas[0] and lines[0][-1]["ads_progress"] > 0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"discount_schedule": "ads", "method": "gail"}, "discount_schedule"),
        ({"discount_schedule": "sometimes"}, "discount_schedule"),
        ({"ads_alpha": 1.5}, "ads_alpha"),
        ({"ads_tolerance": 0.0}, "ads_tolerance"),
        ({"ads_window": 0}, "ads_window"),
    ],
)
def test_bad_ads_settings_are_one_line_errors(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field) as err:
        AdversarialConfig(**({"method": "gaifo", "demos": "d"} | changes))
    assert "\n" not in str(err.value)


def test_lfo_ads_tiny_smoke(tmp_path: Path) -> None:
    config = replace(
        lfo_ads.QUICK,
        budget=256,
        num_envs=2,
        num_steps=128,
        demo_episodes=1,
        eval_every=256,
        eval_episodes=2,
        final_episodes=2,
        hidden_sizes=(16,),
    )
    results = lfo_ads.run(tmp_path / "exp", 0, True, show_progress=False, log=lambda _: None, config=config)
    assert set(results["metrics"]) == set(lfo_ads.KEYS)
    assert all("success" in results["metrics"][k]["test"] for k in lfo_ads.KEYS)
    assert results["discounts"]["lfo_fixed"][-1][1] == config.gamma
    assert results["discounts"]["lfo_ads"][0][1] == pytest.approx(config.ads_alpha)  # the first iteration's
    assert "action" not in Dataset.open(tmp_path / "exp" / "data" / "demos").streams
    assert (tmp_path / "exp" / "report.md").is_file() and (tmp_path / "exp" / f"{lfo_ads.NAME}.png").is_file()
