"""Play-LMP: a plan encoder, a plan prior and a goal- and plan-conditioned policy learned from play windows.

Training samples windows of ``max_window`` steps (``obs`` and ``action`` ``(B, W, ...)``) and the derived
stream ``steps_left`` ``(B,)``; each sample keeps its first ``L`` steps, ``L`` uniform in
``[min_window, max_window]`` and cut at its episode's end, and the state at step ``L - 1`` is its goal ``g``.

* plan encoder ``q(z | window)``: a per-step MLP over ``(s_t, a_t, t / W)``, averaged over the kept steps and
  joined with ``(s_0, g)``, gives a diagonal Gaussian (a pooled encoder instead of the paper's bidirectional
  RNN: windows are short and the step index keeps the order);
* plan prior ``p(z | s_0, g)``: a diagonal Gaussian from the first state and the goal;
* policy ``pi(a_t | s_t, g, z)``: the mean action (squared error), with ``z`` drawn from the encoder
  (reparameterized).

Loss: the mean squared error over the kept steps plus ``kl_weight * KL(q || p)``. ``act({"obs", "goal"})``
takes the prior's mean as the plan every ``replan_every`` steps (so it acts deterministically) and the policy's
action in between; its state is ``(plan (B, d), steps since the plan)``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from clonekit.data import Dataset
from clonekit.errors import ConfigError
from clonekit.nn import Normalizer
from clonekit.nn.encoders import mlp
from clonekit.nn.normalize import actions_from_unit, actions_to_unit, feature_range
from clonekit.policies.base import Policy
from clonekit.policies.play_lmp.config import PlayLMPConfig
from clonekit.pretrain.hilp import steps_to_episode_end


def gaussian_kl(mean_q: Tensor, log_std_q: Tensor, mean_p: Tensor, log_std_p: Tensor) -> Tensor:
    """``KL(q || p)`` ``(B,)`` of diagonal Gaussians given by means and log standard deviations ``(B, d)``."""
    var_q, var_p = (2 * log_std_q).exp(), (2 * log_std_p).exp()
    return (log_std_p - log_std_q + (var_q + (mean_q - mean_p).square()) / (2 * var_p) - 0.5).sum(-1)


class PlayLMPPolicy(Policy):
    """Latent plans from play (see the module docstring).

    ``act`` reads ``obs`` ``(B, D)`` and ``goal`` ``(B, D)`` and returns actions ``(B, A)`` in the data's range.
    """

    name = "play_lmp"
    required_streams: ClassVar[tuple[str, ...]] = ("obs", "action")
    action_low: Tensor
    action_high: Tensor

    @property
    def deterministic(self) -> bool:
        """Plans are the prior's means; the policy is a regression."""
        return True

    def __init__(self, config: PlayLMPConfig) -> None:
        super().__init__()
        self.config = config
        d, a, z, hidden = config.obs_shape[0], config.action_shape[0], config.latent_dim, config.hidden_sizes
        self.normalizer = Normalizer(config.obs_shape, "per_feature")
        self.step_encoder = mlp(d + a + 1, hidden)
        self.posterior = mlp(hidden[-1] + 2 * d, hidden, 2 * z)
        self.prior = mlp(2 * d, hidden, 2 * z)
        self.policy = mlp(2 * d + z, hidden, a)
        self.register_buffer("action_low", -torch.ones(a))
        self.register_buffer("action_high", torch.ones(a))

    def prepare(self, dataset: Dataset) -> None:
        self.normalizer.fit(dataset.column_chunks("obs"))
        low, high = feature_range(dataset.column_chunks("action"), self.config.action_shape)
        self.action_low.copy_(torch.from_numpy(low))
        self.action_high.copy_(torch.from_numpy(high))

    def sample_windows(self) -> dict[str, int | tuple[int, int]]:
        return {"obs": self.config.max_window, "action": self.config.max_window}

    def derived_streams(self, dataset: Dataset) -> dict[str, np.ndarray]:
        return {"steps_left": steps_to_episode_end(dataset.episode_lengths)}

    @staticmethod
    def _gaussian(params: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_std = params.chunk(2, dim=-1)
        return mean, log_std.clamp(-5.0, 2.0)

    def plan_prior(self, start: Tensor, goal: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log std ``(B, d)`` of ``p(z | s_0, g)`` for normalized states and goals ``(B, D)``."""
        return self._gaussian(self.prior(torch.cat([start, goal], -1)))

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        config = self.config
        obs = self.normalizer(batch["obs"].float())  # (B, W, D)
        actions = actions_to_unit(batch["action"], self.action_low, self.action_high)  # (B, W, A)
        size, width = obs.shape[0], obs.shape[1]
        lengths = torch.randint(config.min_window, config.max_window + 1, (size,))
        lengths = torch.minimum(lengths, batch["steps_left"].long() + 1)
        kept = torch.arange(width)[None] < lengths[:, None]  # (B, W)
        goal = obs[torch.arange(size), lengths - 1]  # (B, D)
        position = (torch.arange(width, dtype=obs.dtype) / width).expand(size, width)[..., None]
        steps = self.step_encoder(torch.cat([obs, actions, position], -1))  # (B, W, H)
        pooled = (steps * kept[..., None]).sum(1) / lengths[:, None]
        mean_q, log_std_q = self._gaussian(self.posterior(torch.cat([pooled, obs[:, 0], goal], -1)))
        mean_p, log_std_p = self.plan_prior(obs[:, 0], goal)
        plan = mean_q + log_std_q.exp() * torch.randn_like(mean_q)
        inputs = torch.cat([obs, goal[:, None].expand_as(obs), plan[:, None].expand(size, width, -1)], -1)
        error = (self.policy(inputs) - actions).square().sum(-1)  # (B, W)
        reconstruction = (error * kept).sum() / kept.sum()
        kl = gaussian_kl(mean_q, log_std_q, mean_p, log_std_p).mean()
        loss = reconstruction + config.kl_weight * kl
        return loss, {"action_mse": float(reconstruction.detach()), "kl": float(kl.detach())}

    def initial_state(self, batch_size: int) -> tuple[Tensor, int]:
        """No plan yet: ``(plan (B, d) zeros, steps since the plan)``, due to plan at the first step."""
        return torch.zeros(batch_size, self.config.latent_dim), self.config.replan_every

    def act(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, Any]:
        if "goal" not in obs:
            raise ConfigError(
                "play_lmp: the policy reads a 'goal' input, which the env did not give; use avoiding-reach"
            )
        states = obs["obs"].float()
        if obs["goal"].shape != states.shape:
            raise ConfigError(
                f"play_lmp: goal: expected a state of shape {tuple(states.shape)}, got {tuple(obs['goal'].shape)}"
            )
        plan, since = state if state is not None else self.initial_state(len(states))
        s, g = self.normalizer(states), self.normalizer(obs["goal"].float())
        if since >= self.config.replan_every:
            plan, since = self.plan_prior(s, g)[0], 0
        unit = self.policy(torch.cat([s, g, plan], -1))
        return actions_from_unit(unit, self.action_low, self.action_high), (plan, since + 1)
