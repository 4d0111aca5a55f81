"""Configuration of behaviour cloning (BC)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from clonekit.config import check
from clonekit.policies.from_data import auto_encoder, auto_normalize_obs, check_fits_shape, resolve_auto


@dataclass(frozen=True)
class BCConfig:
    """Behaviour cloning: maximize the likelihood of the demonstrated action given the observation.

    Args:
        obs_shape: Shape of one observation, ``(C, H, W)`` for grid maps or ``(D,)`` for vectors. Filled in
            from the dataset.
        num_actions: Number of discrete actions. Filled in from the dataset.

        encoder: ``"conv"`` (3x3 convolutions then an MLP; needs ``(C, H, W)`` observations), ``"cnn"`` (for
            pictures: every 3x3 convolution halves the resolution, then an MLP), ``"mlp"``, or ``"auto"``:
            ``"conv"`` for ``(C, H, W)`` observations, else ``"mlp"`` (see :mod:`clonekit.policies.from_data`;
            the config keeps the resolved value).
        conv_channels: Output channels of each conv layer; with ``"conv"`` the second and later layers use
            stride 2, with ``"cnn"`` every layer does.
        hidden_sizes: Widths of the MLP layers after the conv stack (or of the whole MLP encoder).
        normalize_obs: ``"per_channel"`` (maps), ``"per_feature"`` (vectors), ``"none"``, or ``"auto"``:
            ``"per_channel"`` for ``(C, H, W)`` observations, else ``"per_feature"``; the statistics are fitted
            on the training data and stored in the checkpoint.
        random_shift: Training augmentation for pictures (DrQ): pad each observation by this many pixels
            (repeating the border) and crop it back at a random offset; 0 turns it off. ``act`` never shifts.
        frame_stack: Number ``k`` of most recent observations the policy sees, stacked along the channels
            (or features). ``act`` keeps them in its state (the first observation fills the places before
            an episode's start); training reads windows of ``k`` steps and predicts the last one's action.
        encoder_weights: A pretrained encoder directory (e.g. from ``clonekit pretrain dynamo``) whose weights and
            input normalization replace the fresh encoder when training starts; its architecture must equal
            this config's (``encoder``, the stacked input shape, ``conv_channels``, ``hidden_sizes``,
            ``normalize_obs``). Read once: the run's own checkpoints hold the weights afterwards.
        freeze_encoder: Keep the encoder's parameters fixed (no gradient; the optimizer never changes them),
            pretrained or, without ``encoder_weights``, at their random initialization.
    """

    obs_shape: tuple[int, ...]
    num_actions: int

    encoder: Literal["auto", "conv", "cnn", "mlp"] = "auto"
    conv_channels: tuple[int, ...] = (32, 64, 64)
    hidden_sizes: tuple[int, ...] = (256,)
    normalize_obs: Literal["auto", "none", "per_feature", "per_channel"] = "auto"
    random_shift: int = 0
    frame_stack: int = 1
    encoder_weights: str | None = None
    freeze_encoder: bool = False

    def __post_init__(self) -> None:
        check(
            len(self.obs_shape) >= 1 and all(d > 0 for d in self.obs_shape),
            "obs_shape",
            "positive dims",
            self.obs_shape,
        )
        check(self.num_actions >= 2, "num_actions", ">= 2", self.num_actions)
        resolve_auto(self, "encoder", auto_encoder(self.obs_shape))
        resolve_auto(self, "normalize_obs", auto_normalize_obs(self.obs_shape))
        check(self.encoder in ("conv", "cnn", "mlp"), "encoder", "'auto', 'conv', 'cnn' or 'mlp'", self.encoder)
        check_fits_shape(self.obs_shape, self.encoder, self.normalize_obs)
        if self.encoder in ("conv", "cnn"):
            check(len(self.conv_channels) >= 1, "conv_channels", "at least one layer", self.conv_channels)
        check(
            len(self.conv_channels) <= 16 and all(0 < c <= 4096 for c in self.conv_channels),
            "conv_channels",
            "at most 16 widths in [1, 4096]",
            self.conv_channels,
        )
        check(
            len(self.hidden_sizes) <= 16 and all(0 < h <= 65536 for h in self.hidden_sizes),
            "hidden_sizes",
            "at most 16 widths in [1, 65536]",
            self.hidden_sizes,
        )
        check(
            self.normalize_obs in ("none", "per_feature", "per_channel"),
            "normalize_obs",
            "auto|none|per_feature|per_channel",
            self.normalize_obs,
        )
        check(0 <= self.random_shift <= 64, "random_shift", "in [0, 64] pixels", self.random_shift)
        if self.random_shift:
            check(len(self.obs_shape) == 3, "obs_shape", "(C, H, W) pictures for random_shift", self.obs_shape)
        check(1 <= self.frame_stack <= 64, "frame_stack", "in [1, 64]", self.frame_stack)
        weights = self.encoder_weights
        check(weights is None or weights.strip() != "", "encoder_weights", "null or a directory path", weights)
