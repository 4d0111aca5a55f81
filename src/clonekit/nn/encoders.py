"""Observation encoders: a small conv net for grid maps and an MLP for vectors."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int | None = None) -> nn.Sequential:
    """Linear+ReLU layers of sizes ``hidden``, then an optional linear output layer of ``out_dim``."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        in_dim = width
    if out_dim is not None:
        layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


def flatten_features(x: Tensor) -> Tensor:
    """``(B, ...) -> (B, F)``."""
    return x.flatten(1)


class MLPEncoder(nn.Module):
    """Flattens ``(B, *obs_shape)`` and maps it through an MLP to ``(B, out_dim)``."""

    def __init__(self, obs_shape: Sequence[int], hidden: Sequence[int]) -> None:
        super().__init__()
        self.net = mlp(math.prod(obs_shape), hidden)
        self.out_dim = hidden[-1] if hidden else math.prod(obs_shape)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs.flatten(1))

    def layers(self) -> tuple[Callable[[Tensor], Tensor], ...]:
        """The encoder as a flat sequence: applying these in turn computes exactly ``forward``."""
        return (flatten_features, *self.net)


class ConvEncoder(nn.Module):
    """3x3 convolutions (the second and later with stride 2), then an MLP: ``(B, C, H, W) -> (B, out_dim)``."""

    def __init__(self, obs_shape: Sequence[int], channels: Sequence[int], hidden: Sequence[int]) -> None:
        super().__init__()
        if len(obs_shape) != 3:
            raise ValueError(f"ConvEncoder: expected obs_shape (C, H, W), got {tuple(obs_shape)}")
        layers: list[nn.Module] = []
        in_ch = obs_shape[0]
        for i, out_ch in enumerate(channels):
            layers += [nn.Conv2d(in_ch, out_ch, 3, stride=1 if i == 0 else 2, padding=1), nn.ReLU()]
            in_ch = out_ch
        self.conv = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, *obs_shape)).numel()
        self.head = mlp(flat, hidden)
        self.out_dim = hidden[-1] if hidden else flat

    def forward(self, obs: Tensor) -> Tensor:
        return self.head(self.conv(obs).flatten(1))

    def layers(self) -> tuple[Callable[[Tensor], Tensor], ...]:
        """The encoder as a flat sequence: applying these in turn computes exactly ``forward``."""
        return (*self.conv, flatten_features, *self.head)
