"""Forward dynamics model: the observation an action leads to."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clonekit.data import Dataset
from clonekit.data.windows import window_indices
from clonekit.errors import ConfigError
from clonekit.nn import Normalizer
from clonekit.nn.encoders import mlp
from clonekit.policies.base import Policy
from clonekit.policies.dynamics.config import DynamicsConfig, action_space_of

# Steps whose observation changes the change statistics are fitted on (bounded memory on large data).
_DIFF_SAMPLES = 20000


class ForwardDynamicsModel(Policy):
    """Forward dynamics: ``(o_t (B, *obs_shape), a_t) -> o_{t+1} (B, *obs_shape)``.

    The network predicts the change ``o_{t+1} - o_t`` in units of its fitted spread (a change is often small
    against the spread of the observations); ``predict`` adds it back. Training reads the window ``(o_t,
    o_{t+1})`` of each sampled step (at an episode's last step the dataset has no next observation, and the
    window repeats ``o_t``: the model learns "no change" there) and minimizes the squared error.

    Like the inverse dynamics model it is trained by the one training loop (checkpoints, resume) but does not
    act: it is registered in ``clonekit.policies.MODELS``; model-based replay selection
    (:mod:`clonekit.continual`) rolls a policy out in it.
    """

    name = "dynamics"
    required_streams = ("obs", "action")

    @property
    def deterministic(self) -> bool:
        """The prediction is a deterministic function of the inputs."""
        return True

    def __init__(self, config: DynamicsConfig) -> None:
        super().__init__()
        self.config = config
        self.normalizer = Normalizer(config.obs_shape, config.normalize_obs)
        self.change_normalizer = Normalizer(config.obs_shape, config.normalize_obs)
        if config.encoder == "conv":
            layers: list[nn.Module] = []
            in_ch = config.obs_shape[0] + config.action_dim
            for out_ch in config.conv_channels:
                layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU()]
                in_ch = out_ch
            layers.append(nn.Conv2d(in_ch, config.obs_shape[0], 1))
            self.net = nn.Sequential(*layers)
        else:
            size = int(np.prod(config.obs_shape))
            self.net = mlp(size + config.action_dim, config.hidden_sizes, size)

    @classmethod
    def config_from_data(cls, dataset: Dataset) -> dict[str, Any]:
        """The dataset's action space (Discrete actions enter one-hot, Box actions as they are)."""
        return {"action_space": action_space_of(dataset.spaces, f"{dataset.path}: policy 'dynamics'")}

    def prepare(self, dataset: Dataset) -> None:
        self.normalizer.fit(dataset.column_chunks("obs"))
        # Changes o_{t+1} - o_t at up to _DIFF_SAMPLES steps (a fixed draw, so prepare is reproducible).
        steps = np.sort(np.random.default_rng(0).permutation(dataset.num_steps)[:_DIFF_SAMPLES])
        pairs = window_indices(dataset, steps, 2).ravel()
        obs = dataset.gather(pairs, ["obs"])["obs"].astype(np.float32).reshape(len(steps), 2, *self.config.obs_shape)
        self.change_normalizer.fit(obs[:, 1] - obs[:, 0])

    def sample_windows(self) -> dict[str, tuple[int, int]]:
        return {"obs": (2, 0)}  # o_t and o_{t+1}

    def _action_input(self, action: Tensor) -> Tensor:
        if self.config.discrete:
            return F.one_hot(action.long(), self.config.action_dim).float()
        return action.float().reshape(len(action), -1)

    def predicted_change(self, obs: Tensor, action: Tensor) -> Tensor:
        """The normalized change ``(B, *obs_shape)`` the model predicts for ``obs`` ``(B, *obs_shape)`` and
        ``action`` ``(B,)`` (Discrete) or ``(B, D)`` (Box)."""
        x = self.normalizer(obs.float())
        a = self._action_input(action)
        if self.config.encoder == "conv":
            planes = a[:, :, None, None].expand(-1, -1, *x.shape[2:])
            return self.net(torch.cat([x, planes], dim=1))
        out = self.net(torch.cat([x.flatten(1), a], dim=1))
        return out.reshape(len(obs), *self.config.obs_shape)

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        window = batch["obs"].float()
        target = self.change_normalizer(window[:, 1] - window[:, 0])
        loss = F.mse_loss(self.predicted_change(window[:, 0], batch["action"]), target)
        return loss, {"mse": float(loss.detach())}

    @torch.no_grad()
    def predict(self, obs: Tensor, action: Tensor) -> Tensor:
        """The next observations ``(B, *obs_shape)`` (float32) of ``obs`` ``(B, *obs_shape)`` and ``action``."""
        change = self.predicted_change(obs, action) * self.change_normalizer.std
        return obs.float() + change

    def act(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, Any]:
        raise ConfigError(
            "policy 'dynamics' is a forward dynamics model: it predicts the next observation (model-based replay "
            "selection, clonekit.continual) and does not act"
        )
