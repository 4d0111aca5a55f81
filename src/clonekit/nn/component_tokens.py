"""A transformer over state-action trajectories tokenized per component (PASTA-style), shared by the
pretraining objective (:mod:`clonekit.pretrain.pasta`) and the ``transformer_bc`` policy in component mode.

A window of ``W`` time slots, each holding one state ``(D,)`` and one action ``(A,)``, becomes ``W * (D + A)``
tokens: one per scalar. Token ``(w, c)`` is ``value * value_weight[c] + component[c] + time[w]`` when the scalar
is visible, ``mask + component[c] + time[w]`` when it is hidden; ``component`` has one row per state dimension
and one per action dimension, so it also tells the modality. Every token's output is read back as a prediction of
its own scalar by a per-component linear readout, so hidden tokens are predicted from the visible ones (masked
modelling) and a policy reads its actions at the hidden action tokens of the future slots.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ComponentTransformer(nn.Module):
    """Transformer over ``window`` slots of ``num_components`` scalars each (see the module docstring).

    Args:
        num_components: Scalars per time slot, ``D + A`` (state dimensions first, then action dimensions).
        window: Number of time slots ``W`` (rows of the learned time embedding).
        d_model, num_heads, num_layers, feedforward, dropout: The ``torch.nn.TransformerEncoder``'s shape
            (pre-norm layers, as ``transformer_bc``'s).
    """

    def __init__(
        self,
        num_components: int,
        window: int,
        d_model: int,
        num_heads: int,
        num_layers: int,
        feedforward: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.num_components = num_components
        self.window = window
        self.value_weight = nn.Parameter(torch.randn(num_components, d_model) * 0.02)
        self.component = nn.Parameter(torch.randn(num_components, d_model) * 0.02)
        self.time = nn.Parameter(torch.randn(window, d_model) * 0.02)
        self.mask = nn.Parameter(torch.randn(d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(d_model, num_heads, feedforward, dropout, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.out_norm = nn.LayerNorm(d_model)
        self.readout_weight = nn.Parameter(torch.randn(num_components, d_model) * d_model**-0.5)
        self.readout_bias = nn.Parameter(torch.zeros(num_components))

    def forward(self, values: Tensor, visible: Tensor) -> Tensor:
        """Predictions ``(B, w, C)`` of every scalar from ``values`` ``(B, w, C)`` (normalized; hidden entries
        are ignored, whatever they hold) and the bool ``visible`` ``(B, w, C)``; ``w <= window`` slots use the
        first ``w`` rows of the time embedding."""
        b, w, c = values.shape
        value_term = values.unsqueeze(-1) * self.value_weight
        # torch.where, not multiplication by the mask: a hidden entry may hold anything (even NaN padding).
        tokens = torch.where(visible.unsqueeze(-1), value_term, self.mask)
        tokens = tokens + self.component + self.time[:w, None]
        out = self.out_norm(self.transformer(tokens.view(b, w * c, -1))).view(b, w, c, -1)
        return (out * self.readout_weight).sum(-1) + self.readout_bias
