"""Observation encoders (a small conv net for grid maps, a CNN for pictures, an MLP for vectors) and the
inputs they take: random-shift augmentation and frame stacking."""

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

    # Stride of the first convolution (the later ones have stride 2).
    first_stride = 1

    def __init__(self, obs_shape: Sequence[int], channels: Sequence[int], hidden: Sequence[int]) -> None:
        super().__init__()
        if len(obs_shape) != 3:
            raise ValueError(f"{type(self).__name__}: expected obs_shape (C, H, W), got {tuple(obs_shape)}")
        layers: list[nn.Module] = []
        in_ch = obs_shape[0]
        for i, out_ch in enumerate(channels):
            layers += [nn.Conv2d(in_ch, out_ch, 3, stride=self.first_stride if i == 0 else 2, padding=1), nn.ReLU()]
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


class CNNEncoder(ConvEncoder):
    """An image encoder: 3x3 convolutions that each halve the resolution, then an MLP.

    ``(B, C, H, W) -> (B, out_dim)``. Every layer has stride 2 (``ConvEncoder`` keeps the first layer at full
    resolution, which suits small grid maps but costs too much on pictures of 64x64 and more).
    """

    first_stride = 2


def random_shift(images: Tensor, pad: int, generator: torch.Generator | None = None) -> Tensor:
    """Shift each sample's pictures by up to ``pad`` pixels (DrQ's augmentation): a new tensor, same shape.

    ``images`` ``(B, ..., H, W)``: every sample is padded by ``pad`` pixels on each side, repeating its
    border pixels, and cropped back to ``H x W`` at an offset drawn uniformly from ``[0, 2 * pad]`` in each
    direction (torch's global generator unless ``generator``). All pictures of a sample (its channels and
    stacked frames) move together. The shift is a whole number of pixels, so no pixel is interpolated.
    """
    if pad == 0:
        return images
    b, h, w = images.shape[0], images.shape[-2], images.shape[-1]
    flat = images.reshape(b, -1, h, w)
    padded = nn.functional.pad(flat.float(), (pad, pad, pad, pad), mode="replicate").to(images.dtype)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=images.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=images.device)
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]  # (B, 1, 1, W)
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    channel = torch.arange(flat.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, cols].reshape(images.shape)


def stacked_shape(obs_shape: Sequence[int], frames: int) -> tuple[int, ...]:
    """The encoder's input shape for ``frames`` stacked observations: channels (or features) times ``frames``."""
    return (obs_shape[0] * frames, *obs_shape[1:])


def push_frame(history: Tensor | None, obs: Tensor, frames: int) -> Tensor:
    """The last ``frames`` observations ``(B, frames, *obs_shape)`` once ``obs`` ``(B, *obs_shape)`` is seen.

    ``history`` holds the previous ones (``(B, frames, ...)``), or is ``None`` or empty (``(B, 0, ...)``) at
    an episode's start: then the first observation fills every place, as gymnasium's ``FrameStackObservation``
    with ``padding_type="reset"`` does.
    """
    if history is None or history.shape[1] == 0:
        return obs.unsqueeze(1).expand(-1, frames, *obs.shape[1:]).clone()
    return torch.cat([history[:, 1:], obs.unsqueeze(1).to(history.dtype)], dim=1)
