"""Behaviour cloning: an encoder and a categorical action head trained by maximum likelihood."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from clonekit.data import Dataset
from clonekit.errors import ConfigError
from clonekit.nn import CategoricalHead, ConvEncoder, MLPEncoder, Normalizer
from clonekit.nn.encoders import CNNEncoder, push_frame, random_shift, stacked_shape
from clonekit.policies.base import AttackScores, Policy
from clonekit.policies.bc.config import BCConfig
from clonekit.pretrain.encoder_file import freeze, load_pretrained_encoder, policy_architecture


class BCPolicy(Policy):
    """Behaviour cloning of discrete actions: an encoder and a categorical head trained by maximum likelihood.

    ``obs (B, *obs_shape) -> encoder -> logits (B, num_actions)``; acts with the most likely action.
    With ``frame_stack = k > 1`` the encoder sees the last ``k`` observations ``(B, k, *obs_shape)``, each
    normalized, stacked along channels (features); ``act``'s state holds them. Training reads ``obs`` as the
    history window ``[t - k + 1 .. t]`` of a sampled step ``t`` (:mod:`clonekit.data.windows`) and predicts the
    action at ``t``. Near an episode's start the window repeats the episode's first frame, as ``act``'s
    history does there.
    """

    name = "bc"
    required_streams = ("obs", "action")

    @property
    def deterministic(self) -> bool:
        """Acts with the most likely action."""
        return True

    def __init__(self, config: BCConfig) -> None:
        super().__init__()
        self.config = config
        self.normalizer = Normalizer(config.obs_shape, config.normalize_obs)
        encoder_shape = stacked_shape(config.obs_shape, config.frame_stack)
        if config.encoder == "conv":
            self.encoder: ConvEncoder | CNNEncoder | MLPEncoder = ConvEncoder(
                encoder_shape, config.conv_channels, config.hidden_sizes
            )
        elif config.encoder == "cnn":
            self.encoder = CNNEncoder(encoder_shape, config.conv_channels, config.hidden_sizes)
        else:
            self.encoder = MLPEncoder(encoder_shape, config.hidden_sizes)
        if config.freeze_encoder:
            freeze(self.encoder)
        self.head = CategoricalHead(self.encoder.out_dim, config.num_actions)
        # ``act`` runs the same modules as ``head.mode(features(obs))``, flattened into one sequence: at batch 1
        # the nesting (Python calls, module dispatch, attribute look-ups) cost a third of a small MLP's time.
        # A plain tuple, so the modules are not registered twice. Forward hooks on the leaf modules and the
        # normalizer still run; hooks on ``encoder`` and ``head`` themselves do not run in ``act``.
        self._act_layers: tuple[Callable[[Tensor], Tensor], ...] = (
            self.normalizer,
            *self.encoder.layers(),
            self.head.linear,
        )

    def prepare(self, dataset: Dataset) -> None:
        self.normalizer.fit(dataset.column_chunks("obs"))  # streamed: a large column is not copied
        if self.config.encoder_weights is not None:  # replaces the statistics too: the weights were fitted to them
            input_shape = stacked_shape(self.config.obs_shape, self.config.frame_stack)
            architecture = policy_architecture(self.config, input_shape)
            load_pretrained_encoder(self.config.encoder_weights, self.encoder, self.normalizer, architecture)

    def features(self, obs: Tensor) -> Tensor:
        """Encoded observations ``(B, F)`` of ``(B, *obs_shape)``, or of ``(B, k, *obs_shape)`` frame stacks."""
        if self.config.frame_stack > 1:
            return self.encoder(self.normalizer(obs).flatten(1, 2))
        return self.encoder(self.normalizer(obs))

    def sample_windows(self) -> dict[str, tuple[int, int]]:
        k = self.config.frame_stack
        return {"obs": (k, 1 - k)} if k > 1 else {}  # the k frames ending at the sampled step

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        obs, action = batch["obs"], batch["action"]
        if self.config.random_shift:
            obs = random_shift(obs, self.config.random_shift)
        return self.head.loss(self.features(obs), action)

    def initial_state(self, batch_size: int) -> Tensor | None:
        """An empty frame history ``(B, 0, *obs_shape)`` with ``frame_stack > 1``; else ``None``."""
        if self.config.frame_stack == 1:
            return None
        return torch.zeros((batch_size, 0, *self.config.obs_shape))

    def act(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, Any]:
        if self.config.frame_stack > 1:
            frames = push_frame(state, obs["obs"], self.config.frame_stack)
            return self.head.mode(self.features(frames)), frames
        # Same result as ``self.head.mode(self.features(obs["obs"]))`` (see ``__init__``).
        x = obs["obs"]
        for layer in self._act_layers:
            x = layer(x)
        return x.argmax(-1), None

    def action_logits(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, Any]:
        """The logits ``(B, A)`` whose argmax ``act`` returns, and the state ``act`` returns."""
        if self.config.frame_stack > 1:
            frames = push_frame(state, obs["obs"], self.config.frame_stack)
            return self.head(self.features(frames)), frames
        return self.head(self.features(obs["obs"])), None

    def attack_scores(self, clean: dict[str, Tensor]) -> AttackScores:
        """The action logits ``(B, A)``; ``act`` takes their argmax."""
        if self.config.frame_stack > 1:
            raise ConfigError(
                f"attack: bc with frame_stack={self.config.frame_stack} acts on a history of frames; "
                "only frame_stack 1 can be attacked per step"
            )
        return lambda inputs: self.head(self.features(inputs["obs"]))

    def export_module(self) -> nn.Module | None:
        # A frame stack is state that the ONNX model does not hold.
        return _BCExport(self) if self.config.frame_stack == 1 else None


class _BCExport(nn.Module):
    """``obs -> (action, logits)``, the action being the one ``BCPolicy.act`` returns."""

    output_names = ("action", "logits")

    def __init__(self, policy: BCPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.policy.head(self.policy.features(obs))
        return logits.argmax(-1), logits
