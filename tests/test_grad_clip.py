"""Gradient clipping in the training loop: clonekit's ``clip_grad_norm`` is torch's, op for op, and the norm
it logs is the norm before clipping."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from clonekit.data import Dataset
from clonekit.train import TrainConfig, clip_grad_norm, train


def _net_with_grads() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3), nn.Linear(3, 2))
    net[3].requires_grad_(False)  # a frozen layer has no gradient: skipped, as torch skips it
    (net(torch.randn(16, 5)) ** 2).sum().backward()
    return net


@pytest.mark.parametrize("max_norm", [1e-3, 1e3])
def test_clip_grad_norm_is_torchs_clipping_bit_for_bit(max_norm: float) -> None:
    net = _net_with_grads()
    reference = copy.deepcopy(net)  # parameters only: the gradients are copied over
    for ours, theirs in zip(net.parameters(), reference.parameters(), strict=True):
        theirs.grad = None if ours.grad is None else ours.grad.clone()
    before = [p.grad.clone() for p in net.parameters() if p.grad is not None]
    norm = clip_grad_norm(list(net.parameters()), max_norm)
    expected = torch.nn.utils.clip_grad_norm_(reference.parameters(), max_norm)
    assert torch.equal(norm, expected)
    assert 1e-3 < float(norm) < 1e3  # one max_norm clips, the other does not
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert len(grads) == 4
    for ours, theirs in zip(grads, [p.grad for p in reference.parameters() if p.grad is not None], strict=True):
        assert torch.equal(ours, theirs)
    after = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    if max_norm < float(norm):
        torch.testing.assert_close(float(after), max_norm, rtol=1e-5, atol=0)
    else:
        assert all(torch.equal(g, b) for g, b in zip(grads, before, strict=True))


def test_training_logs_the_norm_before_clipping(maze_data: Dataset, tmp_path: Path) -> None:
    config = TrainConfig(steps=4, batch_size=8, grad_clip=1e-4, log_every=2, tensorboard=False, seed=0)
    overrides = {"conv_channels": [4], "hidden_sizes": [8]}
    train("bc", maze_data, tmp_path / "run", config, policy_overrides=overrides, show_progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    assert all(r["grad_norm"] > 1e-4 for r in records)  # the unclipped norm, above the cap
