"""Behaviour cloning: an encoder and a categorical action head trained by maximum likelihood."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from clonekit.data import Dataset
from clonekit.nn import CategoricalHead, ConvEncoder, MLPEncoder, Normalizer
from clonekit.policies.base import Policy
from clonekit.policies.bc.config import BCConfig


class BCPolicy(Policy):
    """``obs (B, *obs_shape) -> encoder -> logits (B, num_actions)``; acts with the most likely action."""

    name = "bc"
    required_streams = ("obs", "action")

    def __init__(self, config: BCConfig) -> None:
        super().__init__()
        self.config = config
        self.normalizer = Normalizer(config.obs_shape, config.normalize_obs)
        if config.encoder == "conv":
            self.encoder: ConvEncoder | MLPEncoder = ConvEncoder(
                config.obs_shape, config.conv_channels, config.hidden_sizes
            )
        else:
            self.encoder = MLPEncoder(config.obs_shape, config.hidden_sizes)
        self.head = CategoricalHead(self.encoder.out_dim, config.num_actions)

    def prepare(self, dataset: Dataset) -> None:
        self.normalizer.fit(dataset.column("obs"))  # type: ignore[arg-type]

    def features(self, obs: Tensor) -> Tensor:
        """Encoded observations ``(B, F)``."""
        return self.encoder(self.normalizer(obs))

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        return self.head.loss(self.features(batch["obs"]), batch["action"])

    def act(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, Any]:
        return self.head.mode(self.features(obs["obs"])), None
