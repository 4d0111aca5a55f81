"""The training loop's device settings that a CPU can check (``benchmarks/device_check.py`` runs the CUDA side:
exact repeat and resume with deterministic kernels, speed against the CPU)."""

from __future__ import annotations

import torch

from clonekit.train import TrainConfig, deterministic_kernels


def test_deterministic_kernels_are_switched_on_in_the_block_and_restored_after() -> None:
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    torch.backends.cudnn.benchmark = True
    try:
        with deterministic_kernels(True):
            assert torch.are_deterministic_algorithms_enabled()
            assert torch.is_deterministic_algorithms_warn_only_enabled()
            assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert torch.are_deterministic_algorithms_enabled() == before[0]
        assert torch.backends.cudnn.benchmark
        with deterministic_kernels(False):
            assert torch.are_deterministic_algorithms_enabled() == before[0]
            assert torch.backends.cudnn.benchmark
    finally:
        torch.backends.cudnn.benchmark = before[1]


def test_runs_use_deterministic_kernels_by_default() -> None:
    assert TrainConfig().deterministic is True
