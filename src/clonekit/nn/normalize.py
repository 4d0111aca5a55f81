"""Observation normalization whose statistics live in the model (so a checkpoint is self-contained)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

CHUNK_ROWS = 65536


class Normalizer(nn.Module):
    """``(x - mean) / std`` with statistics stored as buffers.

    ``mode`` is ``"none"``, ``"per_feature"`` (one statistic per element of the observation) or
    ``"per_channel"`` (for ``(C, H, W)`` maps: one per channel, shared over positions, so a map with walls
    in new places is not pushed off-scale).
    """

    MODES = ("none", "per_feature", "per_channel")
    mean: Tensor
    std: Tensor

    def __init__(self, obs_shape: Sequence[int], mode: str, min_std: float = 1e-2) -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"normalize mode: expected one of {self.MODES}, got {mode!r}")
        self.mode = mode
        self.min_std = min_std
        stat_shape = (obs_shape[0], 1, 1) if mode == "per_channel" else tuple(obs_shape)
        self.register_buffer("mean", torch.zeros(stat_shape))
        self.register_buffer("std", torch.ones(stat_shape))

    def fit(self, observations: np.ndarray) -> None:
        """Set the statistics from ``(N, *obs_shape)`` observations, reading them in chunks."""
        if self.mode == "none":
            return
        axes = (0, 2, 3) if self.mode == "per_channel" else (0,)
        total = 0
        s1 = np.zeros(self.mean.shape, dtype=np.float64)
        s2 = np.zeros(self.mean.shape, dtype=np.float64)
        for start in range(0, len(observations), CHUNK_ROWS):
            chunk = np.asarray(observations[start : start + CHUNK_ROWS], dtype=np.float64)
            s1 += chunk.sum(axis=axes).reshape(s1.shape)
            s2 += np.square(chunk).sum(axis=axes).reshape(s2.shape)
            total += chunk.size // s1.size
        mean = s1 / max(total, 1)
        std = np.sqrt(np.maximum(s2 / max(total, 1) - mean**2, 0.0))
        self.mean.copy_(torch.from_numpy(mean))
        self.std.copy_(torch.from_numpy(np.maximum(std, self.min_std)))

    def forward(self, obs: Tensor) -> Tensor:
        x = obs.float()
        if self.mode == "none":
            return x
        return (x - self.mean) / self.std
