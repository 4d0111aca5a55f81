"""Configuration of the transformer policy over an observation history with action chunking (ACT-style)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from clonekit.config import check, check_transformer
from clonekit.policies.from_data import (
    auto_encoder,
    auto_normalize_obs,
    check_fits_shape,
    is_image_shape,
    resolve_auto,
)


@dataclass(frozen=True)
class TransformerBCConfig:
    """A transformer over the last ``history`` observations that predicts a chunk of ``chunk`` future actions.

    Each observation becomes one token (an encoder per frame), a goal (when the policy reads one) one more,
    and ``chunk`` learned action queries complete the sequence; a ``torch.nn.TransformerEncoder`` attends
    over all of them and each query's output predicts one future action. Discrete or continuous actions
    follow the dataset's action space: exactly one of ``num_actions`` and ``action_shape`` is set.

    Args:
        obs_shape: Shape of one observation, ``(D,)`` for vectors or ``(C, H, W)`` for maps and pictures.
            Filled in from the dataset.
        num_actions: Number of discrete actions (cross-entropy per predicted action); 0 for continuous
            actions. Filled in from a ``Discrete`` action space.
        action_shape: Shape ``(A,)`` of one continuous action; ``()`` for discrete actions. Filled in from a
            ``Box`` action space.
        goal_shape: Shape of the goal input (the ``goal`` stream), ``()`` for none. Only policy
            ``transformer_goal_bc`` reads a goal; it fills this in from the dataset.

        history: Number of most recent observations the policy sees, one token each (1: the current one).
            Training reads ``obs`` as the window of ``history`` steps ending at the sampled step; near an
            episode's start it repeats the episode's first observation, as ``act``'s history does there.
        encoder: Per-observation encoder: ``"mlp"``, ``"conv"`` (3x3 convolutions then an MLP, for grid
            maps), ``"cnn"`` (every 3x3 convolution halves the resolution, for pictures), or ``"auto"``:
            ``"conv"`` for ``(C, H, W)`` observations, else ``"mlp"`` (the config keeps the resolved value).
        conv_channels: Output channels of each conv layer (encoders ``"conv"`` and ``"cnn"``).
        hidden_sizes: Widths of the encoder's MLP layers; its output is projected to ``d_model``.
        normalize_obs: ``"per_feature"``, ``"per_channel"`` (maps), ``"none"``, or ``"auto"``:
            ``"per_channel"`` for ``(C, H, W)`` observations, else ``"per_feature"``; fitted on the training data.
        random_shift: Training augmentation for pictures (DrQ): pad by this many pixels and crop back at a
            random offset, the same for every frame of a history; 0 turns it off. ``act`` never shifts.

        d_model: Width of every token.
        num_heads: Attention heads per layer; must divide ``d_model``.
        num_layers: Transformer encoder layers.
        feedforward: Width of each layer's feed-forward block.
        dropout: Dropout inside the transformer layers (training only; ``act`` runs in eval mode).

        chunk: Number ``k`` of future actions predicted per call (ACT's chunk size). Training reads the
            action stream as windows of ``k`` steps, padded at an episode's end with its last action.
        continuous_loss: Loss on continuous actions scaled to [-1, 1]: ``"l1"`` (as ACT) or ``"mse"``.
        execution: How chunks are executed (:mod:`clonekit.nn.chunking`): ``"ensemble"`` (predict every
            step and average the overlapping predictions with weights ``exp(-m * i)``, ACT's temporal
            ensembling; for discrete actions the predicted probabilities are averaged, then the most likely
            action is taken) or ``"receding"`` (open loop: run ``execute_steps`` actions of a chunk, then
            predict again).
        execute_steps: Actions run per chunk with ``"receding"``; 0 means the whole chunk.
        ensemble_decay: ``m`` in the temporal-ensembling weights ``exp(-m * i)`` (``i``: 0 for the oldest
            prediction; ACT uses 0.01).

        cvae: ACT's conditional VAE: in training a small transformer encoder over ``[CLS, history tokens, action
            chunk]`` infers a style latent ``z`` (mean and log-variance), ``z`` becomes one more token of the
            policy's sequence and a KL term pulls it to ``N(0, I)``; ``act`` uses ``z = 0``, the prior mean, so it
            stays deterministic. Frame tokenization only.
        latent_dim: Size of ``z``.
        kl_weight: Weight of the KL term against the action loss (ACT uses 10).
        cvae_layers: Layers of the latent encoder (same width, heads and feed-forward as the policy's).

        tokenization: ``"frame"`` (one token per observation, as above) or ``"component"`` (PASTA: one token per
            scalar of each state and action over ``history + chunk - 1`` time slots, the history's states visible
            and every action hidden, the chunk read at the hidden action tokens; see
            :mod:`clonekit.pretrain.pasta`). ``"component"`` needs vector observations, continuous actions, no
            goal, no ``random_shift`` and no ``cvae``; the encoder fields are then unused.
        pretrained: Directory written by ``clonekit pretrain pasta`` whose transformer (and normalization) start
            training instead of a fresh initialization; needs ``tokenization="component"`` and the same
            ``d_model``, ``num_heads``, ``num_layers`` and ``feedforward``. Read once, when training starts; a
            trained checkpoint no longer needs it.
    """

    obs_shape: tuple[int, ...]
    num_actions: int = 0
    action_shape: tuple[int, ...] = ()
    goal_shape: tuple[int, ...] = ()

    history: int = 2
    encoder: Literal["auto", "mlp", "conv", "cnn"] = "auto"
    conv_channels: tuple[int, ...] = (32, 64)
    hidden_sizes: tuple[int, ...] = (128,)
    normalize_obs: Literal["auto", "none", "per_feature", "per_channel"] = "auto"
    random_shift: int = 0

    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 2
    feedforward: int = 128
    dropout: float = 0.0

    chunk: int = 4
    continuous_loss: Literal["l1", "mse"] = "l1"
    execution: Literal["ensemble", "receding"] = "ensemble"
    execute_steps: int = 0
    ensemble_decay: float = 0.01

    cvae: bool = False
    latent_dim: int = 32
    kl_weight: float = 10.0
    cvae_layers: int = 1

    tokenization: Literal["frame", "component"] = "frame"
    pretrained: str | None = None

    def __post_init__(self) -> None:
        check(
            1 <= len(self.obs_shape) <= 3 and all(0 < d <= 65536 for d in self.obs_shape),
            "obs_shape",
            "1 to 3 dims in [1, 65536]",
            self.obs_shape,
        )
        check(
            (self.num_actions >= 2) != (len(self.action_shape) == 1 and 0 < self.action_shape[0] <= 65536),
            "num_actions, action_shape",
            "num_actions >= 2 (discrete) or action_shape (A,) with A in [1, 65536] (continuous), not both",
            (self.num_actions, self.action_shape),
        )
        check(self.num_actions <= 65536, "num_actions", "at most 65536", self.num_actions)
        check(
            len(self.goal_shape) <= 1 and all(0 < d <= 65536 for d in self.goal_shape),
            "goal_shape",
            "() or a vector shape (G,) with G in [1, 65536]",
            self.goal_shape,
        )
        check(1 <= self.history <= 64, "history", "in [1, 64]", self.history)
        resolve_auto(self, "encoder", auto_encoder(self.obs_shape))
        resolve_auto(self, "normalize_obs", auto_normalize_obs(self.obs_shape))
        check(self.encoder in ("mlp", "conv", "cnn"), "encoder", "'auto', 'mlp', 'conv' or 'cnn'", self.encoder)
        check(
            self.normalize_obs in ("none", "per_feature", "per_channel"),
            "normalize_obs",
            "auto|none|per_feature|per_channel",
            self.normalize_obs,
        )
        check_fits_shape(self.obs_shape, self.encoder, self.normalize_obs)
        check(0 <= self.random_shift <= 64, "random_shift", "in [0, 64] pixels", self.random_shift)
        if self.random_shift:
            check(is_image_shape(self.obs_shape), "obs_shape", "(C, H, W) pictures for random_shift", self.obs_shape)
        for name in ("conv_channels", "hidden_sizes"):
            sizes = getattr(self, name)
            check(
                1 <= len(sizes) <= 16 and all(0 < s <= 65536 for s in sizes),
                name,
                "1 to 16 widths in [1, 65536]",
                sizes,
            )
        check_transformer(self, "d_model")
        check(1 <= self.chunk <= 256, "chunk", "in [1, 256]", self.chunk)
        check(self.continuous_loss in ("l1", "mse"), "continuous_loss", "'l1' or 'mse'", self.continuous_loss)
        check(self.execution in ("ensemble", "receding"), "execution", "ensemble|receding", self.execution)
        check(0 <= self.execute_steps <= self.chunk, "execute_steps", f"in [0, chunk={self.chunk}]", self.execute_steps)
        check(
            self.ensemble_decay >= 0 and math.isfinite(self.ensemble_decay),
            "ensemble_decay",
            "a finite number >= 0",
            self.ensemble_decay,
        )
        check(1 <= self.latent_dim <= 1024, "latent_dim", "in [1, 1024]", self.latent_dim)
        check(
            math.isfinite(self.kl_weight) and self.kl_weight >= 0, "kl_weight", "a finite number >= 0", self.kl_weight
        )
        check(1 <= self.cvae_layers <= 32, "cvae_layers", "in [1, 32]", self.cvae_layers)
        check(self.tokenization in ("frame", "component"), "tokenization", "'frame' or 'component'", self.tokenization)
        if self.tokenization == "component":
            check(len(self.obs_shape) == 1, "obs_shape", "a vector (D,) for tokenization='component'", self.obs_shape)
            check(
                self.num_actions == 0,
                "num_actions",
                "0 (continuous actions) for tokenization='component'",
                self.num_actions,
            )
            check(not self.goal_shape, "goal_shape", "() for tokenization='component'", self.goal_shape)
            check(not self.cvae, "cvae", "False for tokenization='component' (frame tokens only)", self.cvae)
        check(
            self.pretrained is None or (isinstance(self.pretrained, str) and self.pretrained != ""),
            "pretrained",
            "None or a directory written by `clonekit pretrain pasta`",
            self.pretrained,
        )
        if self.pretrained is not None:
            check(
                self.tokenization == "component",
                "tokenization",
                "'component' with pretrained (PASTA weights are per-component tokens)",
                self.tokenization,
            )
            check(
                self.normalize_obs == "per_feature",
                "normalize_obs",
                "'per_feature' with pretrained (the pretrained normalization is per feature)",
                self.normalize_obs,
            )


@dataclass(frozen=True)
class TransformerGoalBCConfig(TransformerBCConfig):
    """:class:`TransformerBCConfig` whose policy also reads the ``goal`` stream, as one more token.

    Every field is as in :class:`TransformerBCConfig`; ``goal_shape`` is required (filled in from the dataset's
    ``goal`` stream, e.g. one written by :func:`clonekit.data.relabel.hindsight_relabel`).
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        check(len(self.goal_shape) == 1, "goal_shape", "the shape of the goal stream, e.g. (2,)", self.goal_shape)
