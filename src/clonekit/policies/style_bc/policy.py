"""Style-conditioned behaviour cloning: ``(obs, style id) -> action`` with any continuous head.

The model is :class:`ContinuousBCPolicy` with the style id, one-hot over ``num_styles``, joined to the
normalized flattened observation before the MLP encoder. Training reads the id from the ``style_stream``
(default ``style``, e.g. the path the Avoiding expert chose per episode); at evaluation the caller asks for a
style per episode with ``act({"obs": ..., STYLE_STREAM: ids})``, e.g. through :func:`clonekit.evaluation.rollout`'s
``episode_inputs``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from clonekit.data import Dataset
from clonekit.errors import ConfigError, DatasetError
from clonekit.nn import MLPEncoder
from clonekit.nn.encoders import stacked_shape
from clonekit.policies.base import Policy
from clonekit.policies.continuous_bc.policy import ContinuousBCPolicy
from clonekit.policies.style_bc.config import StyleBCConfig


class StyleBCPolicy(ContinuousBCPolicy):
    """Style-conditioned behaviour cloning: continuous_bc that also reads a style id (one-hot).

    See :mod:`clonekit.policies.style_bc`.
    """

    name = "style_bc"
    required_streams: ClassVar[tuple[str, ...]] = ("obs", "action")
    config: StyleBCConfig

    def __init__(self, config: StyleBCConfig) -> None:
        super().__init__(config)
        width = math.prod(stacked_shape(config.obs_shape, config.frame_stack)) + config.num_styles
        self.encoder = MLPEncoder((width,), config.hidden_sizes)  # the parent's encoder without the style

    @classmethod
    def config_from_data(cls, dataset: Dataset) -> dict[str, Any]:
        """``num_styles`` from the dataset's ``style`` stream (its largest id + 1), when it has one."""
        if "style" not in dataset.streams or dataset.streams["style"].kind != "array":
            return {}
        ids = np.asarray(dataset.column("style"))
        return {"num_styles": max(int(ids.max()) + 1, 2)} if ids.size else {}

    def batch_streams(self) -> tuple[str, ...]:
        """``obs``, ``action`` and the style stream."""
        return (*self.required_streams, self.config.style_stream)

    def prepare(self, dataset: Dataset) -> None:
        """Fit the normalizers; every style id must be an integer in ``[0, num_styles)``."""
        super().prepare(dataset)
        name, count = self.config.style_stream, self.config.num_styles
        ids = np.asarray(dataset.column(name))
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0 or ids.max() >= count:
            found = (
                f"dtype {ids.dtype}, shape {ids.shape[1:]}, range [{ids.min()}, {ids.max()}]" if ids.size else "none"
            )
            raise DatasetError(
                f"{dataset.path}: stream {name!r}: expected one int style id per step in [0, {count}), found {found}"
            )

    def features(self, inputs: dict[str, Tensor]) -> Tensor:
        """Encoded ``obs`` ``(B, *obs_shape)`` joined with the one-hot style id ``(B,)``: ``(B, F)``."""
        name = self.config.style_stream
        if name not in inputs:
            raise ConfigError(
                f"{self.name}: the policy reads a style id under {name!r}, which the caller did not give; "
                f"pass it per episode (e.g. rollout(..., episode_inputs={{{name!r}: ids}}))"
            )
        obs = self.normalizer(inputs["obs"])
        if self.config.frame_stack > 1:
            obs = obs.flatten(1, 2)
        ids = inputs[name].reshape(len(obs)).long()
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.config.num_styles):
            raise ConfigError(
                f"{name}: expected style ids in [0, {self.config.num_styles}), got [{int(ids.min())}, {int(ids.max())}]"
            )
        style = nn.functional.one_hot(ids, self.config.num_styles).to(obs.dtype)
        return self.encoder(torch.cat([obs.flatten(1), style], dim=1))

    # Not exportable (None): continuous_bc's exported graph has no style input.
    export_module = Policy.export_module
