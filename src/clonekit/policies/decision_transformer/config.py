"""Configuration of the Decision Transformer (Chen et al. 2021): a return-conditioned causal transformer."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from clonekit.config import check, check_transformer
from clonekit.policies.from_data import auto_encoder, auto_normalize_obs, check_fits_shape, resolve_auto


@dataclass(frozen=True)
class DecisionTransformerConfig:
    """Decision Transformer: a causal transformer over the last ``context_length`` steps, each three tokens
    (return-to-go, observation, action), that predicts the action from the observation token.

    Conditioning on a high return-to-go at run time asks for the behaviour that earned high returns in the
    data, which may mix expert and poor episodes. Discrete or continuous actions follow the dataset's action
    space: exactly one of ``num_actions`` and ``action_shape`` is set.

    Args:
        obs_shape: Shape of one observation, ``(D,)`` for vectors or ``(C, H, W)`` for maps. Filled in from the
            dataset.
        num_actions: Number of discrete actions (cross-entropy); 0 for continuous actions. Filled in from a
            ``Discrete`` action space.
        action_shape: Shape ``(A,)`` of one continuous action (MSE on a tanh output bounded to the action
            space); ``()`` for discrete actions. Filled in from a ``Box`` action space.
        target_return: Return-to-go the policy is conditioned on when it acts, in the data's reward units.
            Filled in from the dataset: the best episode return in it.
        return_scale: Returns-to-go are divided by this before they enter the network. Filled in from the
            dataset: the largest absolute episode return (1 when every return is 0).
        max_timestep: Size of the timestep embedding; later steps share the last one. Filled in from the
            dataset: its longest episode.

        context_length: Steps ``K`` the policy sees (``3 K`` tokens). Training reads windows of the ``K`` steps
            ending at a sampled step and predicts every step's action in them.
        encoder: Observation encoder: ``"mlp"``, ``"conv"`` (3x3 convolutions then an MLP, for grid maps), or
            ``"auto"``: ``"conv"`` for ``(C, H, W)`` observations, else ``"mlp"`` (the config keeps the resolved
            value). Its output is projected to ``embed_dim``.
        conv_channels: Output channels of each conv layer (encoder ``"conv"``).
        hidden_sizes: Widths of the encoder's MLP layers.
        normalize_obs: ``"per_feature"``, ``"per_channel"`` (maps), ``"none"``, or ``"auto"``: ``"per_channel"``
            for ``(C, H, W)`` observations, else ``"per_feature"``; fitted on the training data.

        embed_dim: Width of every token.
        num_heads: Attention heads per layer; must divide ``embed_dim``.
        num_layers: Transformer layers (pre-norm, causal).
        feedforward: Width of each layer's feed-forward block.
        dropout: Dropout inside the transformer layers (training only; ``act`` runs in eval mode). The paper
            used 0.1; off by default because on a CPU its random draws cost about a third of a training step.
    """

    obs_shape: tuple[int, ...]
    num_actions: int = 0
    action_shape: tuple[int, ...] = ()
    target_return: float = 1.0
    return_scale: float = 1.0
    max_timestep: int = 1000

    context_length: int = 20
    encoder: Literal["auto", "mlp", "conv"] = "auto"
    conv_channels: tuple[int, ...] = (16, 32)
    hidden_sizes: tuple[int, ...] = (128,)
    normalize_obs: Literal["auto", "none", "per_feature", "per_channel"] = "auto"

    embed_dim: int = 64
    num_heads: int = 1
    num_layers: int = 2
    feedforward: int = 256
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check(
            1 <= len(self.obs_shape) <= 3 and all(0 < d <= 65536 for d in self.obs_shape),
            "obs_shape",
            "1 to 3 dims in [1, 65536]",
            self.obs_shape,
        )
        check(
            (2 <= self.num_actions <= 65536) != (len(self.action_shape) == 1 and 0 < self.action_shape[0] <= 65536),
            "num_actions, action_shape",
            "num_actions in [2, 65536] (discrete) or action_shape (A,) with A in [1, 65536] (continuous), not both",
            (self.num_actions, self.action_shape),
        )
        check(math.isfinite(self.target_return), "target_return", "a finite number", self.target_return)
        check(
            math.isfinite(self.return_scale) and self.return_scale > 0,
            "return_scale",
            "a finite number > 0",
            self.return_scale,
        )
        check(1 <= self.max_timestep <= 100_000, "max_timestep", "in [1, 100000]", self.max_timestep)
        check(1 <= self.context_length <= 256, "context_length", "in [1, 256]", self.context_length)
        resolve_auto(self, "encoder", auto_encoder(self.obs_shape))
        resolve_auto(self, "normalize_obs", auto_normalize_obs(self.obs_shape))
        check(self.encoder in ("mlp", "conv"), "encoder", "'auto', 'mlp' or 'conv'", self.encoder)
        check(
            self.normalize_obs in ("none", "per_feature", "per_channel"),
            "normalize_obs",
            "auto|none|per_feature|per_channel",
            self.normalize_obs,
        )
        check_fits_shape(self.obs_shape, self.encoder, self.normalize_obs)
        for name in ("conv_channels", "hidden_sizes"):
            sizes = getattr(self, name)
            check(
                1 <= len(sizes) <= 16 and all(0 < s <= 65536 for s in sizes),
                name,
                "1 to 16 widths in [1, 65536]",
                sizes,
            )
        check_transformer(self, "embed_dim")
