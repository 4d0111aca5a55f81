"""Behaviour cloning: an encoder and a categorical action head trained by maximum likelihood."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

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
        self.normalizer.fit(dataset.column("obs"))  # type: ignore[arg-type]

    def features(self, obs: Tensor) -> Tensor:
        """Encoded observations ``(B, F)``."""
        return self.encoder(self.normalizer(obs))

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        return self.head.loss(self.features(batch["obs"]), batch["action"])

    def act(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, Any]:
        # Same result as ``self.head.mode(self.features(obs["obs"]))`` (see ``__init__``).
        x = obs["obs"]
        for layer in self._act_layers:
            x = layer(x)
        return x.argmax(-1), None

    def export_module(self) -> nn.Module:
        return _BCExport(self)


class _BCExport(nn.Module):
    """``obs -> (action, logits)``, the action being the one ``BCPolicy.act`` returns."""

    output_names = ("action", "logits")

    def __init__(self, policy: BCPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.policy.head(self.policy.features(obs))
        return logits.argmax(-1), logits
