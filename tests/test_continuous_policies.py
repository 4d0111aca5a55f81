"""Policy contracts for ``continuous_bc`` with every continuous action head, chunked or not.

The same contracts as test_policies.py (save -> load gives identical actions, a batch is not mutated,
``act`` is batched, resume is exact), on Avoiding data with Box actions. Stochastic heads draw from torch's
global generator, so identical actions are checked under the same ``torch.manual_seed``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from clonekit.checkpoint import MODEL_FILE, load_policy
from clonekit.data import Dataset
from clonekit.data.windows import sample_batch
from clonekit.policies import build_policy
from clonekit.train import TrainConfig, policy_config_for, train

SMALL: dict[str, Any] = {
    "hidden_sizes": [16],
    "diffusion_hidden_sizes": [16],
    "diffusion_steps": 2,
    "gmm_components": 2,
}
HEADS: dict[str, dict[str, Any]] = {
    "mse": {"head": "mse"},
    "gaussian": {"head": "gaussian"},
    "gmm": {"head": "gmm"},
    "binned": {"head": "binned"},
    "diffusion": {"head": "diffusion"},
    "diffusion_chunked": {"head": "diffusion", "chunk": 3, "execute_steps": 2},
    "mse_ensembled": {"head": "mse", "chunk": 3, "execution": "ensemble"},
}
DETERMINISTIC = ("mse", "mse_ensembled")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(steps: int) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=16, seed=3, checkpoint_every=5, log_every=4, tensorboard=False)


def _obs(data: Dataset, n: int) -> dict[str, torch.Tensor]:
    rows = np.linspace(0, data.num_steps - 1, n).astype(np.int64)
    return {"obs": torch.from_numpy(data.gather(rows, ["obs"])["obs"])}


def _rollout_actions(policy: torch.nn.Module, obs: dict[str, torch.Tensor], steps: int = 4) -> torch.Tensor:
    """Actions ``(steps, B, A)`` from acting ``steps`` times on the same observations, from seed 0."""
    torch.manual_seed(0)
    state, actions = policy.initial_state(len(obs["obs"])), []
    with torch.inference_mode():
        for _ in range(steps):
            action, state = policy.act(obs, state)
            actions.append(action)
    return torch.stack(actions)


@pytest.mark.parametrize("head", sorted(HEADS))
def test_save_load_gives_identical_actions(head: str, avoiding_data: Dataset, tmp_path: Path) -> None:
    overrides = {**SMALL, **HEADS[head]}
    policy = train("continuous_bc", avoiding_data, tmp_path / "run", _config(6), overrides, show_progress=False)
    loaded = load_policy(tmp_path / "run")
    obs = _obs(avoiding_data, 7)
    a, b = _rollout_actions(policy, obs), _rollout_actions(loaded, obs)
    assert a.shape == (4, 7, 2) and a.dtype == torch.float32
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    low, high = policy.action_low, policy.action_high  # type: ignore[union-attr]
    assert ((a >= low - 1e-6) & (a <= high + 1e-6)).all()  # clipped to the demonstrated range


@pytest.mark.parametrize("head", sorted(HEADS))
def test_compute_loss_does_not_mutate_the_batch(head: str, avoiding_data: Dataset) -> None:
    policy = build_policy("continuous_bc", policy_config_for("continuous_bc", avoiding_data, {**SMALL, **HEADS[head]}))
    policy.prepare(avoiding_data)
    batch = sample_batch(
        avoiding_data, 16, torch.Generator().manual_seed(0), ["obs", "action"], policy.sample_windows()
    )
    chunk = HEADS[head].get("chunk", 1)
    assert batch["action"].shape == ((16, chunk, 2) if chunk > 1 else (16, 2))
    before = {k: v.clone() for k, v in batch.items()}
    loss, info = policy.compute_loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and info
    for key in before:
        torch.testing.assert_close(batch[key], before[key], rtol=0, atol=0)


@pytest.mark.parametrize("head", sorted(HEADS))
def test_act_is_batched_and_seeded(head: str, avoiding_data: Dataset) -> None:
    torch.manual_seed(0)
    policy = build_policy("continuous_bc", policy_config_for("continuous_bc", avoiding_data, {**SMALL, **HEADS[head]}))
    policy.prepare(avoiding_data)
    policy.eval()
    obs = _obs(avoiding_data, 5)
    together = _rollout_actions(policy, obs)
    torch.testing.assert_close(together, _rollout_actions(policy, obs), rtol=0, atol=0)
    if head in DETERMINISTIC:  # noise-free heads give each slot the same actions whatever the batch
        alone = torch.cat([_rollout_actions(policy, {"obs": obs["obs"][i : i + 1]}) for i in range(5)], dim=1)
        torch.testing.assert_close(together, alone)  # up to float rounding: matmul kernels vary with batch size
    else:
        torch.manual_seed(1)
        state = policy.initial_state(5)
        with torch.inference_mode():
            other, _ = policy.act(obs, state)
        assert not torch.equal(other, together[0])  # the noise matters


@pytest.mark.parametrize("head", ["diffusion_chunked"])
def test_resume_reproduces_the_uninterrupted_weights(head: str, avoiding_data: Dataset, tmp_path: Path) -> None:
    overrides = {**SMALL, **HEADS[head]}
    train("continuous_bc", avoiding_data, tmp_path / "whole", _config(12), overrides, show_progress=False)
    train("continuous_bc", avoiding_data, tmp_path / "cut", _config(5), overrides, show_progress=False)
    (tmp_path / "cut" / MODEL_FILE).unlink()  # as if the process died before finishing
    train("continuous_bc", avoiding_data, tmp_path / "cut", _config(12), resume=True, show_progress=False)
    whole, cut = load_file(str(tmp_path / "whole" / MODEL_FILE)), load_file(str(tmp_path / "cut" / MODEL_FILE))
    assert whole.keys() == cut.keys()
    for key in whole:
        assert torch.equal(whole[key], cut[key]), key


def test_action_windows_stay_inside_their_episode(avoiding_data: Dataset) -> None:
    from clonekit.data.windows import window_indices

    last = avoiding_data.episode_starts + avoiding_data.episode_lengths - 1
    rows = window_indices(avoiding_data, last, 4)
    assert (rows == last[:, None]).all()  # the final step's window repeats it
    first = avoiding_data.episode_starts
    np.testing.assert_array_equal(window_indices(avoiding_data, first, 3), first[:, None] + np.arange(3))
