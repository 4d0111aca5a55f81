"""Observation normalization whose statistics live in the model (so a checkpoint is self-contained).

Statistics are computed by streaming over the data: one array, or the consecutive pieces of a column
(``Dataset.column_chunks``), read in float64 blocks of bounded size, so a large memory-mapped column (e.g.
pictures) is never copied whole.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

# Rows read at once: at most CHUNK_ROWS, and at most FIT_BLOCK_BYTES once converted to float64. Blocks are
# cut at the same rows however the data is split into pieces, so the sums (and statistics) do not depend on
# the file's chunking.
CHUNK_ROWS = 65536
FIT_BLOCK_BYTES = 64 << 20


def row_blocks(pieces: Iterable[np.ndarray], max_rows: int) -> Iterator[np.ndarray]:
    """The rows of consecutive ``pieces`` (each ``(n_i, *shape)``) in blocks of ``max_rows`` rows (the last one
    shorter): a view when a block lies within one piece, else a copy of its at most ``max_rows`` rows."""
    held: list[np.ndarray] = []
    rows = 0
    for piece in pieces:
        start = 0
        while start < len(piece):
            take = min(max_rows - rows, len(piece) - start)
            held.append(piece[start : start + take])
            rows += take
            start += take
            if rows == max_rows:
                yield held[0] if len(held) == 1 else np.concatenate(held)
                held, rows = [], 0
    if rows:
        yield held[0] if len(held) == 1 else np.concatenate(held)


def _block_rows(row_shape: Sequence[int]) -> int:
    """Rows per float64 block for rows of ``row_shape`` (see ``CHUNK_ROWS`` and ``FIT_BLOCK_BYTES``)."""
    return max(1, min(CHUNK_ROWS, FIT_BLOCK_BYTES // (8 * max(math.prod(row_shape), 1))))


def _pieces(values: np.ndarray | Iterable[np.ndarray]) -> Iterable[np.ndarray]:
    return [values] if isinstance(values, np.ndarray) else values


def feature_range(values: np.ndarray | Iterable[np.ndarray], row_shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-element minimum and maximum ``(*row_shape)`` (float64) over the rows of ``(N, *row_shape)`` values,
    given whole or as consecutive pieces (``Dataset.column_chunks``); ``ValueError`` when there are no rows."""
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    for block in row_blocks(_pieces(values), _block_rows(row_shape)):
        rows = np.asarray(block, dtype=np.float64).reshape(-1, *row_shape)
        low = rows.min(axis=0) if low is None else np.minimum(low, rows.min(axis=0))
        high = rows.max(axis=0) if high is None else np.maximum(high, rows.max(axis=0))
    if low is None or high is None:
        raise ValueError("feature_range: expected at least one row, found none")
    return low, high


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
        self.obs_shape = tuple(obs_shape)
        stat_shape = (obs_shape[0], 1, 1) if mode == "per_channel" else tuple(obs_shape)
        self.register_buffer("mean", torch.zeros(stat_shape))
        self.register_buffer("std", torch.ones(stat_shape))

    def fit(self, observations: np.ndarray | Iterable[np.ndarray]) -> None:
        """Set the statistics from ``(N, *obs_shape)`` observations, given whole or as consecutive pieces
        (``Dataset.column_chunks("obs")``), read in float64 blocks of bounded size (see ``CHUNK_ROWS``)."""
        if self.mode == "none":
            return
        axes = (0, 2, 3) if self.mode == "per_channel" else (0,)
        total = 0
        s1 = np.zeros(self.mean.shape, dtype=np.float64)
        s2 = np.zeros(self.mean.shape, dtype=np.float64)
        for block in row_blocks(_pieces(observations), _block_rows(self.obs_shape)):
            chunk = np.array(block, dtype=np.float64)  # a copy, squared in place: one block in memory
            s1 += chunk.sum(axis=axes).reshape(s1.shape)
            total += chunk.size // s1.size
            s2 += np.square(chunk, out=chunk).sum(axis=axes).reshape(s2.shape)
            del chunk  # freed before the next block is allocated
        mean = s1 / max(total, 1)
        std = np.sqrt(np.maximum(s2 / max(total, 1) - mean**2, 0.0))
        self.mean.copy_(torch.from_numpy(mean))
        self.std.copy_(torch.from_numpy(np.maximum(std, self.min_std)))

    def forward(self, obs: Tensor) -> Tensor:
        x = obs.float()
        if self.mode == "none":
            return x
        return (x - self.mean) / self.std


# Smallest half-range of an action dimension (a constant dimension in the data maps to 0, not to inf).
MIN_ACTION_RANGE = 1e-6


def actions_to_unit(actions: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Continuous actions ``(..., A)`` mapped to [-1, 1] by the per-dimension range ``[low, high]`` ``(A,)``."""
    half = ((high - low) / 2).clamp_min(MIN_ACTION_RANGE)
    return (actions.float() - (high + low) / 2) / half


def actions_from_unit(unit: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`actions_to_unit`, after clipping ``unit`` to [-1, 1]."""
    half = ((high - low) / 2).clamp_min(MIN_ACTION_RANGE)
    return unit.clamp(-1, 1) * half + (high + low) / 2
