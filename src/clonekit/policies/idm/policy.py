"""Inverse dynamics model (IDM): which action led from one observation to the next."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clonekit.data import Dataset, space_from_json
from clonekit.data.windows import window_indices
from clonekit.errors import ConfigError
from clonekit.nn import ConvEncoder, MLPEncoder, Normalizer
from clonekit.nn.encoders import mlp, stacked_shape
from clonekit.policies.base import Policy
from clonekit.policies.idm.config import IDMConfig, action_space_of

# Steps whose observation differences the difference statistics are fitted on (bounded memory on large data).
_DIFF_SAMPLES = 20000


class InverseDynamicsModel(Policy):
    """Inverse dynamics: ``a_t`` from the observation window ``o_{t-before} .. o_{t+after}``.

    ``window (B, L, *obs_shape)`` (``L = before + 1 + after``) -> the ``L`` frames and the ``L - 1`` differences
    of consecutive frames, each normalized, stacked along channels (features) -> encoder -> logits
    ``(B, n)`` (Discrete actions, cross-entropy) or the action ``(B, D)`` (Box actions, MSE on actions
    normalized per dimension). The differences make a move easy to see for a small network.

    It is trained by the one training loop like a policy (checkpoints, resume, ``config.json``), but it does
    not act: it is registered in ``clonekit.policies.MODELS``, not ``POLICIES``, and ``act`` is an error.
    ``predict`` gives the labels ``clonekit label`` writes (:mod:`clonekit.policies.idm.label`).
    """

    name = "idm"
    required_streams = ("obs", "action")
    action_low: Tensor
    action_high: Tensor

    @property
    def deterministic(self) -> bool:
        """Labels are the argmax (Discrete) or the regressed action (Box)."""
        return True

    def __init__(self, config: IDMConfig) -> None:
        super().__init__()
        self.config = config
        self.normalizer = Normalizer(config.obs_shape, config.normalize_obs)
        # Differences of consecutive observations get their own statistics: a move is often small against the
        # spread of the observations (a point that moves 0.05 in an arena of 2), and would be lost in their scale.
        self.diff_normalizer = Normalizer(config.obs_shape, config.normalize_obs)
        encoder_shape = stacked_shape(config.obs_shape, 2 * config.window - 1)
        if config.encoder == "conv_pool":
            self.encoder: PooledConvEncoder | ConvEncoder | MLPEncoder = PooledConvEncoder(
                encoder_shape, config.conv_channels, config.hidden_sizes
            )
        elif config.encoder == "conv":
            self.encoder = ConvEncoder(encoder_shape, config.conv_channels, config.hidden_sizes)
        else:
            self.encoder = MLPEncoder(encoder_shape, config.hidden_sizes)
        self.head = nn.Linear(self.encoder.out_dim, config.num_outputs)
        self.action_normalizer: Normalizer | None = None
        if not config.discrete:
            self.action_normalizer = Normalizer((config.num_outputs,), "per_feature")
            box = space_from_json(config.action_space)
            # Bounds come from the config, so they are not stored with the weights.
            low = torch.as_tensor(np.asarray(box.low, dtype=np.float32))  # type: ignore[attr-defined]
            high = torch.as_tensor(np.asarray(box.high, dtype=np.float32))  # type: ignore[attr-defined]
            self.register_buffer("action_low", low, persistent=False)
            self.register_buffer("action_high", high, persistent=False)

    @classmethod
    def config_from_data(cls, dataset: Dataset) -> dict[str, Any]:
        """The dataset's action space and observation dtype (``clonekit label`` checks data against them)."""
        return {
            "action_space": action_space_of(dataset.spaces, f"{dataset.path}: policy 'idm'"),
            "obs_dtype": dataset.streams["obs"].dtype,
        }

    def prepare(self, dataset: Dataset) -> None:
        self.normalizer.fit(dataset.column_chunks("obs"))
        # Differences o_{t+1} - o_t at up to _DIFF_SAMPLES steps (a fixed draw, so prepare is reproducible).
        steps = np.sort(np.random.default_rng(0).permutation(dataset.num_steps)[:_DIFF_SAMPLES])
        pairs = window_indices(dataset, steps, 2).ravel()
        obs = dataset.gather(pairs, ["obs"])["obs"].astype(np.float32).reshape(len(steps), 2, *self.config.obs_shape)
        self.diff_normalizer.fit(obs[:, 1] - obs[:, 0])
        if self.action_normalizer is not None:
            self.action_normalizer.fit(dataset.column_chunks("action"))

    def sample_windows(self) -> dict[str, tuple[int, int]]:
        return {"obs": (self.config.window, -self.config.before)}

    def features(self, window: Tensor) -> Tensor:
        """Encoded windows ``(B, F)`` of observation windows ``(B, L, *obs_shape)``."""
        raw = window.float()
        stacked = torch.cat([self.normalizer(raw), self.diff_normalizer(raw[:, 1:] - raw[:, :-1])], dim=1)
        return self.encoder(stacked.flatten(1, 2))

    def forward_outputs(self, window: Tensor) -> Tensor:
        """Logits ``(B, n)`` (Discrete) or normalized actions ``(B, D)`` (Box) of windows ``(B, L, *obs_shape)``."""
        return self.head(self.features(window))

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        outputs = self.forward_outputs(batch["obs"])
        action = batch["action"]
        if self.config.discrete:
            loss = F.cross_entropy(outputs, action.long())
            accuracy = (outputs.argmax(-1) == action).float().mean()
            return loss, {"nll": float(loss.detach()), "action_accuracy": float(accuracy)}
        assert self.action_normalizer is not None
        loss = F.mse_loss(outputs, self.action_normalizer(action))
        return loss, {"mse": float(loss.detach())}

    @torch.no_grad()
    def predict(self, window: Tensor) -> Tensor:
        """Action labels of windows ``(B, L, *obs_shape)``: ``(B,)`` int64 argmax (Discrete), or ``(B, D)``
        float32 actions clipped to the Box bounds."""
        outputs = self.forward_outputs(window)
        if self.config.discrete:
            return outputs.argmax(-1)
        assert self.action_normalizer is not None
        actions = outputs * self.action_normalizer.std + self.action_normalizer.mean
        return torch.maximum(torch.minimum(actions, self.action_high), self.action_low)

    def act(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, Any]:
        raise ConfigError(
            "policy 'idm' is an inverse dynamics model: it labels observation-only datasets (clonekit label "
            "DATA --idm RUN --out LABELLED) and does not act; train a policy on the labelled data"
        )


class PooledConvEncoder(nn.Module):
    """3x3 convolutions at full resolution, a max over positions, then an MLP: ``(B, C, H, W) -> (B, out_dim)``.

    The max makes the features the same wherever in the map a pattern is, so a move seen in a few places of a
    few maps is recognized everywhere (a change of a map is local; where it happens does not tell the action).
    """

    def __init__(self, obs_shape: tuple[int, ...], channels: tuple[int, ...], hidden: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = obs_shape[0]
        for out_ch in channels:
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU()]
            in_ch = out_ch
        self.conv = nn.Sequential(*layers)
        self.head = mlp(in_ch, hidden)
        self.out_dim = hidden[-1] if hidden else in_ch

    def forward(self, obs: Tensor) -> Tensor:
        return self.head(self.conv(obs).amax(dim=(2, 3)))
