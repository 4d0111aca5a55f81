"""Configuration of behaviour cloning for continuous (Box) actions, with a choice of action head."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from clonekit.config import check
from clonekit.policies.from_data import (
    auto_encoder,
    auto_normalize_obs,
    check_fits_shape,
    is_image_shape,
    resolve_auto,
)


@dataclass(frozen=True)
class ContinuousBCConfig:
    """Behaviour cloning of continuous actions: an observation encoder, then any continuous action head.

    The head decides what is learned from multimodal demonstrations: ``mse`` and ``gaussian`` average the
    modes, ``gmm`` and ``diffusion`` keep them. Any head can predict chunks of future actions.

    Args:
        obs_shape: Shape of one observation, ``(D,)`` for vectors or ``(C, H, W)`` for maps. Filled in from
            the dataset.
        action_shape: Shape ``(A,)`` of one action. Filled in from the dataset.
        goal_shape: Shape of the goal input (the ``goal`` stream), ``()`` for none. Only policy ``goal_bc``
            reads a goal; it fills this in from the dataset.

        encoder: ``"mlp"``, ``"conv"`` (3x3 convolutions then an MLP; needs ``(C, H, W)`` observations),
            ``"cnn"`` (for pictures: every 3x3 convolution halves the resolution, then an MLP), or ``"auto"``:
            ``"conv"`` for ``(C, H, W)`` observations without a goal, else ``"mlp"`` (see
            :mod:`clonekit.policies.from_data`; the config keeps the resolved value).
        conv_channels: Output channels of each conv layer (encoders ``"conv"`` and ``"cnn"``).
        hidden_sizes: Widths of the encoder's MLP layers; the last is the feature width the head sees.
        normalize_obs: ``"per_feature"``, ``"per_channel"`` (maps), ``"none"``, or ``"auto"``: ``"per_channel"``
            for ``(C, H, W)`` observations, else ``"per_feature"``; fitted on the training data.
        random_shift: Training augmentation for pictures (DrQ): pad each observation by this many pixels
            (repeating the border) and crop it back at a random offset; 0 turns it off. ``act`` never shifts.
        frame_stack: Number ``k`` of most recent observations the policy sees, stacked along the channels
            (or features). ``act`` keeps them in its state (the first observation fills the places before
            an episode's start); training reads windows of ``k`` steps and acts at the last one.
        encoder_weights: A pretrained encoder directory (e.g. from ``clonekit pretrain dynamo``) whose weights and
            input normalization replace the fresh encoder when training starts; its architecture must equal
            this config's (``encoder``, the stacked input shape, ``conv_channels``, ``hidden_sizes``,
            ``normalize_obs``). Read once: the run's own checkpoints hold the weights afterwards.
        freeze_encoder: Keep the encoder's parameters fixed (no gradient; the optimizer never changes them),
            pretrained or, without ``encoder_weights``, at their random initialization.

        head: ``"mse"`` (regression to the mean action), ``"gaussian"`` (diagonal Gaussian, sampled),
            ``"gmm"`` (Gaussian mixture, sampled), ``"binned"`` (a categorical over ``action_bins`` bins per
            action dimension, sampled), ``"diffusion"`` (score-based denoising, BESO-style) or ``"mode"`` (the
            same denoising with a mixture-of-experts denoiser routed by the noise level; MoDE).
        gmm_components: Mixture components of the ``gmm`` head.
        action_bins: Bins per action dimension of the ``binned`` head.
        diffusion_hidden_sizes: Widths of the denoiser MLP of the ``diffusion`` head.
        diffusion_steps: Denoising steps per action (chunk) at inference (heads ``diffusion`` and ``mode``).
        diffusion_schedule: Spacing of the sampling noise levels: ``"karras"``, ``"exponential"``, ``"linear"``.
        diffusion_sampler: ``"euler"`` (deterministic ODE steps) or ``"ancestral"`` (stochastic steps).
        sigma_min: Smallest noise level (in normalized action units) for training and sampling.
        sigma_max: Largest noise level; sampling starts from ``N(0, sigma_max^2)``.
        sigma_data: Standard deviation assumed for normalized actions by the denoiser's preconditioning.
        mode_width: Width of the residual stream of the ``mode`` denoiser.
        mode_expert_hidden: Hidden width of every expert MLP of the ``mode`` denoiser.
        mode_layers: Mixture-of-experts layers of the ``mode`` denoiser.
        mode_experts: Experts per layer of the ``mode`` denoiser.
        mode_top_k: Experts run per layer and denoising step (1 or 2, at most ``mode_experts``).
        mode_balance_weight: Weight of the ``mode`` head's load-balancing loss.

        chunk: Number ``k`` of future actions predicted per call (1: no chunking). Training reads the action
            stream as windows of ``k`` steps, padded at episode ends with the last action.
        execution: How chunks are executed: ``"receding"`` (run ``execute_steps`` actions, then re-predict)
            or ``"ensemble"`` (predict every step and average the overlapping predictions, as ACT does).
        execute_steps: Actions run per chunk with ``"receding"``; 0 means the whole chunk.
        ensemble_decay: ``m`` in the temporal-ensembling weights ``exp(-m * i)`` (``i``: 0 for the oldest).
    """

    obs_shape: tuple[int, ...]
    action_shape: tuple[int, ...]
    goal_shape: tuple[int, ...] = ()

    encoder: Literal["auto", "mlp", "conv", "cnn"] = "auto"
    conv_channels: tuple[int, ...] = (32, 64)
    hidden_sizes: tuple[int, ...] = (256, 256)
    normalize_obs: Literal["auto", "none", "per_feature", "per_channel"] = "auto"
    random_shift: int = 0
    frame_stack: int = 1
    encoder_weights: str | None = None
    freeze_encoder: bool = False

    head: Literal["mse", "gaussian", "gmm", "binned", "diffusion", "mode"] = "mse"
    gmm_components: int = 5
    action_bins: int = 21
    diffusion_hidden_sizes: tuple[int, ...] = (256, 256, 256)
    diffusion_steps: int = 5
    diffusion_schedule: Literal["karras", "exponential", "linear"] = "exponential"
    diffusion_sampler: Literal["euler", "ancestral"] = "euler"
    sigma_min: float = 0.001
    sigma_max: float = 80.0
    sigma_data: float = 0.5
    mode_width: int = 128
    mode_expert_hidden: int = 96
    mode_layers: int = 3
    mode_experts: int = 4
    mode_top_k: int = 1
    mode_balance_weight: float = 0.01

    chunk: int = 1
    execution: Literal["receding", "ensemble"] = "receding"
    execute_steps: int = 0
    ensemble_decay: float = 0.01

    def __post_init__(self) -> None:
        check(
            len(self.obs_shape) >= 1 and all(d > 0 for d in self.obs_shape),
            "obs_shape",
            "positive dims",
            self.obs_shape,
        )
        check(
            len(self.action_shape) == 1 and self.action_shape[0] >= 1,
            "action_shape",
            "(A,) with A >= 1 (a Box action space)",
            self.action_shape,
        )
        check(all(d > 0 for d in self.goal_shape), "goal_shape", "positive dims or ()", self.goal_shape)
        # A goal joins the flattened observation, which only the MLP encoder reads.
        resolve_auto(self, "encoder", "mlp" if self.goal_shape else auto_encoder(self.obs_shape))
        resolve_auto(self, "normalize_obs", auto_normalize_obs(self.obs_shape))
        check(self.encoder in ("mlp", "conv", "cnn"), "encoder", "'auto', 'mlp', 'conv' or 'cnn'", self.encoder)
        if self.goal_shape:
            check(self.encoder == "mlp", "encoder", "'mlp' or 'auto' with a goal input", self.encoder)
        image = is_image_shape(self.obs_shape)
        check_fits_shape(self.obs_shape, self.encoder, self.normalize_obs)
        if self.random_shift:
            check(image, "obs_shape", "(C, H, W) pictures for random_shift", self.obs_shape)
        check(0 <= self.random_shift <= 64, "random_shift", "in [0, 64] pixels", self.random_shift)
        check(1 <= self.frame_stack <= 64, "frame_stack", "in [1, 64]", self.frame_stack)
        weights = self.encoder_weights
        check(weights is None or weights.strip() != "", "encoder_weights", "null or a directory path", weights)
        for name in ("conv_channels", "hidden_sizes", "diffusion_hidden_sizes"):
            sizes = getattr(self, name)
            check(
                1 <= len(sizes) <= 16 and all(0 < s <= 65536 for s in sizes),
                name,
                "1 to 16 widths in [1, 65536]",
                sizes,
            )
        check(
            self.head in ("mse", "gaussian", "gmm", "binned", "diffusion", "mode"),
            "head",
            "mse|gaussian|gmm|binned|diffusion|mode",
            self.head,
        )
        check(1 <= self.gmm_components <= 256, "gmm_components", "in [1, 256]", self.gmm_components)
        check(2 <= self.action_bins <= 1024, "action_bins", "in [2, 1024]", self.action_bins)
        check(1 <= self.diffusion_steps <= 1000, "diffusion_steps", "in [1, 1000]", self.diffusion_steps)
        check(
            self.diffusion_schedule in ("karras", "exponential", "linear"),
            "diffusion_schedule",
            "karras|exponential|linear",
            self.diffusion_schedule,
        )
        check(
            self.diffusion_sampler in ("euler", "ancestral"),
            "diffusion_sampler",
            "euler|ancestral",
            self.diffusion_sampler,
        )
        check(
            0 < self.sigma_min < self.sigma_max and math.isfinite(self.sigma_max),
            "sigma_min, sigma_max",
            "0 < sigma_min < sigma_max < inf",
            (self.sigma_min, self.sigma_max),
        )
        check(
            self.sigma_data > 0 and math.isfinite(self.sigma_data), "sigma_data", "a finite number > 0", self.sigma_data
        )
        for name in ("mode_width", "mode_expert_hidden"):
            check(1 <= getattr(self, name) <= 65536, name, "in [1, 65536]", getattr(self, name))
        check(1 <= self.mode_layers <= 16, "mode_layers", "in [1, 16]", self.mode_layers)
        check(1 <= self.mode_experts <= 64, "mode_experts", "in [1, 64]", self.mode_experts)
        check(
            self.mode_top_k in (1, 2) and self.mode_top_k <= self.mode_experts,
            "mode_top_k",
            f"1 or 2, at most mode_experts={self.mode_experts}",
            self.mode_top_k,
        )
        check(
            self.mode_balance_weight >= 0 and math.isfinite(self.mode_balance_weight),
            "mode_balance_weight",
            "a finite number >= 0",
            self.mode_balance_weight,
        )
        check(1 <= self.chunk <= 256, "chunk", "in [1, 256]", self.chunk)
        check(self.execution in ("receding", "ensemble"), "execution", "receding|ensemble", self.execution)
        check(0 <= self.execute_steps <= self.chunk, "execute_steps", f"in [0, chunk={self.chunk}]", self.execute_steps)
        check(
            self.ensemble_decay >= 0 and math.isfinite(self.ensemble_decay),
            "ensemble_decay",
            "a finite number >= 0",
            self.ensemble_decay,
        )
