"""Decision Transformer (Chen et al., *Decision Transformer: Reinforcement Learning via Sequence Modeling*, 2021).

Per step ``t`` three tokens, ``(R_t, o_t, a_t)``: the return-to-go ``R_t`` (the rewards from ``t`` to the episode's
end, divided by ``return_scale``), the encoded observation and the action, each embedded to ``embed_dim`` plus an
embedding of ``t`` (the step within the episode). A causal transformer reads the ``3 K`` tokens of the last
``K = context_length`` steps and predicts ``a_t`` from the output at ``o_t``, which sees ``R_<=t``, ``o_<=t`` and
``a_<t``: logits over discrete actions (cross-entropy) or a continuous action as ``tanh`` bounded to the action
space (MSE in units scaled to [-1, 1]).

Training: returns-to-go and timesteps need whole episodes, which a window does not see, so the policy derives
both streams once from the dataset (:meth:`DecisionTransformerPolicy.derived_streams`); the training loop
gathers them with the windows. A window of the ``K`` steps ending at a sampled step is clipped at the episode's
start by repeating its first step (:mod:`clonekit.data.windows`); those copies are recognised from the timestep
window (a real position ``j`` holds timestep ``t - (K - 1 - j)``) and masked out of attention and loss. Every
real step of a window is a training target.

Acting: the state holds each env slot's last ``K`` returns-to-go, observations, actions and timesteps
(:class:`DTHistory`). ``act`` appends the new observation with the return-to-go ``target_return`` (by default the
best episode return of the training data), predicts, and records the chosen action. ``act`` does not see
rewards, so the return-to-go stays ``target_return`` for the whole episode rather than falling by each reward.
That is exact for sparse success rewards, which clonekit's envs give (maze, avoiding, BabyAI: reward 1 on the
step that reaches the goal and ends the episode, so every step of a successful demonstration has return-to-go 1
and every step of a failed one 0). With dense rewards the policy is conditioned on a constant return-to-go, a
known simplification (as in upside-down RL's "desired return" held fixed). Condition on another return with
:meth:`DecisionTransformerPolicy.with_target_return`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clonekit.data import Dataset
from clonekit.nn import ConvEncoder, MLPEncoder, Normalizer
from clonekit.nn.normalize import actions_from_unit, actions_to_unit, feature_range
from clonekit.policies.base import Policy
from clonekit.policies.decision_transformer.config import DecisionTransformerConfig

# Names of the per-step streams the policy derives from the dataset (see ``derived_streams``).
RETURN_TO_GO, TIMESTEP = "return_to_go", "timestep"


@dataclass(frozen=True)
class DTHistory:
    """``act``'s state: the last ``K`` steps of each of ``B`` env slots, oldest first.

    ``return_to_go`` ``(B, K)`` float32 (already divided by ``return_scale``), ``obs`` ``(B, K, *obs_shape)``
    float32, ``action`` ``(B, K)`` int64 or ``(B, K, A)`` float32, ``timestep`` ``(B, K)`` int64, ``steps``
    ``(B,)`` int64: steps taken so far. Positions before an episode's first step hold zeros and are masked.
    """

    return_to_go: Tensor
    obs: Tensor
    action: Tensor
    timestep: Tensor
    steps: Tensor

    @property
    def valid(self) -> Tensor:
        """``(B, K)`` bool: which positions hold a real step."""
        k = self.timestep.shape[1]
        filled = self.steps.clamp(max=k)
        return torch.arange(k, device=self.steps.device)[None] >= (k - filled)[:, None]


def _shift_in(window: Tensor, new: Tensor) -> Tensor:
    """``window`` ``(B, K, ...)`` without its oldest entry, with ``new`` ``(B, ...)`` appended."""
    return torch.cat([window[:, 1:], new.unsqueeze(1).to(window.dtype)], dim=1)


def episode_returns(dataset: Dataset, needed_by: str) -> np.ndarray:
    """``(num_episodes,)`` float64 sums of the ``reward`` stream; a one-line ``DatasetError`` naming the stream
    when it is missing or (in a file changed after it was written) holds a value that is not finite."""
    dataset.require_streams(("reward",), needed_by)
    dataset.check_values(["reward"])
    reward = np.asarray(dataset.column("reward"), dtype=np.float64)
    return np.bincount(dataset.episode_index(), weights=reward, minlength=dataset.num_episodes)


class DecisionTransformerPolicy(Policy):
    """Return-conditioned causal transformer over (return-to-go, observation, action) tokens (see the module
    docstring). ``act``'s state is a :class:`DTHistory`."""

    name = "dt"
    required_streams: ClassVar[tuple[str, ...]] = ("obs", "action", "reward")
    action_low: Tensor
    action_high: Tensor

    @property
    def deterministic(self) -> bool:
        """Most likely discrete action, or the regressed continuous one: no sampling."""
        return True

    @classmethod
    def config_from_data(cls, dataset: Dataset) -> dict[str, float | int]:
        """``target_return`` (the best episode return), ``return_scale`` (the largest absolute one, 1 if all are
        0) and ``max_timestep`` (the longest episode)."""
        returns = episode_returns(dataset, f"policy {cls.name!r}")
        scale = float(np.abs(returns).max()) if len(returns) else 0.0
        return {
            "target_return": float(returns.max()) if len(returns) else 0.0,
            "return_scale": scale if scale > 0 else 1.0,
            "max_timestep": int(min(dataset.episode_lengths.max(initial=1), 100_000)),  # the config's upper limit
        }

    def __init__(self, config: DecisionTransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.discrete = config.num_actions > 0
        self.action_dim = config.num_actions if self.discrete else config.action_shape[0]
        self.normalizer = Normalizer(config.obs_shape, config.normalize_obs)
        if config.encoder == "conv":
            self.encoder: ConvEncoder | MLPEncoder = ConvEncoder(
                config.obs_shape, config.conv_channels, config.hidden_sizes
            )
        else:
            self.encoder = MLPEncoder(config.obs_shape, config.hidden_sizes)
        d = config.embed_dim
        self.embed_obs = nn.Linear(self.encoder.out_dim, d)
        self.embed_return = nn.Linear(1, d)
        self.embed_action: nn.Embedding | nn.Linear = (
            nn.Embedding(config.num_actions, d) if self.discrete else nn.Linear(self.action_dim, d)
        )
        self.embed_timestep = nn.Embedding(config.max_timestep, d)
        self.embed_norm = nn.LayerNorm(d)
        layer = nn.TransformerEncoderLayer(
            d,
            config.num_heads,
            config.feedforward,
            config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)
        self.out_norm = nn.LayerNorm(d)
        self.action_out = nn.Linear(d, self.action_dim)
        # Continuous actions are scaled to [-1, 1] with the action space's bounds (buffers: saved with the weights).
        self.register_buffer("action_low", -torch.ones(1 if self.discrete else self.action_dim))
        self.register_buffer("action_high", torch.ones(1 if self.discrete else self.action_dim))

    def prepare(self, dataset: Dataset) -> None:
        self.normalizer.fit(dataset.column_chunks("obs"))  # streamed: a large column is not copied
        if self.discrete:
            return
        # The Box bounds where finite, else the range the data covers.
        low, high = feature_range(dataset.column_chunks("action"), (self.action_dim,))
        if "action" in dataset.spaces:
            space = dataset.space("action")
            space_low = np.broadcast_to(np.asarray(getattr(space, "low", low), dtype=np.float64), low.shape)
            space_high = np.broadcast_to(np.asarray(getattr(space, "high", high), dtype=np.float64), high.shape)
            low = np.where(np.isfinite(space_low), space_low, low)
            high = np.where(np.isfinite(space_high), space_high, high)
        self.action_low.copy_(torch.from_numpy(low))
        self.action_high.copy_(torch.from_numpy(high))

    def derived_streams(self, dataset: Dataset) -> dict[str, np.ndarray]:
        """``return_to_go`` ``(num_steps,)`` float32: the rewards from each step to its episode's end, divided by
        ``return_scale``; ``timestep`` ``(num_steps,)`` int64: each step's index within its episode."""
        episode = dataset.episode_index()
        reward = np.asarray(dataset.column("reward"), dtype=np.float64)
        # Suffix sums over the whole dataset; an episode's part is its suffix minus the suffix after its end.
        suffix = np.append(np.cumsum(reward[::-1])[::-1], 0.0)
        ends = np.asarray(dataset.episode_starts, dtype=np.int64) + np.asarray(dataset.episode_lengths, dtype=np.int64)
        return_to_go = (suffix[:-1] - suffix[ends[episode]]) / self.config.return_scale
        timestep = np.arange(dataset.num_steps, dtype=np.int64) - np.asarray(dataset.episode_starts)[episode]
        return {RETURN_TO_GO: return_to_go.astype(np.float32), TIMESTEP: timestep}

    def sample_windows(self) -> dict[str, int | tuple[int, int]]:
        k = self.config.context_length
        return {name: (k, 1 - k) for name in ("obs", "action", RETURN_TO_GO, TIMESTEP)}  # the K steps ending at t

    def normalize_action(self, actions: Tensor) -> Tensor:
        """Continuous actions ``(..., A)`` mapped to [-1, 1] with the action space's bounds."""
        return actions_to_unit(actions, self.action_low, self.action_high)

    def unnormalize_action(self, actions: Tensor) -> Tensor:
        """Inverse of :meth:`normalize_action` for actions in [-1, 1]."""
        return actions_from_unit(actions, self.action_low, self.action_high)

    def action_outputs(
        self, return_to_go: Tensor, obs: Tensor, action: Tensor, timestep: Tensor, valid: Tensor
    ) -> Tensor:
        """Outputs at every observation token ``(B, K, action_dim)``: logits (discrete) or pre-``tanh`` scaled
        actions (continuous).

        Inputs are windows of ``K`` steps, oldest first: ``return_to_go`` ``(B, K)`` (scaled), ``obs``
        ``(B, K, *obs_shape)``, ``action`` ``(B, K)`` or ``(B, K, A)``, ``timestep`` ``(B, K)``, ``valid``
        ``(B, K)`` bool (positions holding a real step; the others are hidden from every real token).
        """
        b, k = return_to_go.shape
        time = self.embed_timestep(timestep.clamp(0, self.config.max_timestep - 1))
        frames = self.normalizer(obs.flatten(0, 1))
        states = self.embed_obs(self.encoder(frames)).view(b, k, -1)
        returns = self.embed_return(return_to_go.float().unsqueeze(-1))
        actions = self.embed_action(action.long() if self.discrete else self.normalize_action(action))
        tokens = torch.stack([returns + time, states + time, actions + time], dim=2).view(b, 3 * k, -1)
        out = self.transformer(self.embed_norm(tokens), mask=self._attention_mask(valid))
        return self.action_out(self.out_norm(out.view(b, k, 3, -1)[:, :, 1]))

    def _attention_mask(self, valid: Tensor) -> Tensor:
        """``(B * num_heads, 3K, 3K)`` bool, True where attention is blocked: later tokens and padded steps."""
        length = 3 * valid.shape[1]
        later = torch.ones(length, length, dtype=torch.bool, device=valid.device).triu(1)
        blocked = later | ~valid.repeat_interleave(3, dim=1)[:, None, :]
        # A padded token sees itself, so no row is fully blocked (its output is never read).
        blocked &= ~torch.eye(length, dtype=torch.bool, device=valid.device)
        return blocked.repeat_interleave(self.config.num_heads, dim=0)

    @staticmethod
    def window_mask(timestep: Tensor) -> Tensor:
        """``(B, K)`` bool real steps of timestep windows ``(B, K)`` clipped at the episode's start: position
        ``j`` is real when it holds timestep ``t - (K - 1 - j)``, ``t`` being the last position's."""
        k = timestep.shape[1]
        expected = timestep[:, -1:] - torch.arange(k - 1, -1, -1, device=timestep.device)[None]
        return timestep == expected

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        names = ("obs", "action", RETURN_TO_GO, TIMESTEP)
        # With K = 1 the training loop gathers plain steps (B, ...), not windows (B, 1, ...).
        windows = {n: batch[n].unsqueeze(1) if self.config.context_length == 1 else batch[n] for n in names}
        valid = self.window_mask(windows[TIMESTEP])
        out = self.action_outputs(windows[RETURN_TO_GO], windows["obs"], windows["action"], windows[TIMESTEP], valid)[
            valid
        ]
        target = windows["action"][valid]
        if self.discrete:
            loss = F.cross_entropy(out, target.long())
            accuracy = (out.argmax(-1) == target).float().mean()
            return loss, {"nll": float(loss.detach()), "action_accuracy": float(accuracy)}
        loss = F.mse_loss(torch.tanh(out), self.normalize_action(target).clamp(-1, 1))
        return loss, {"mse": float(loss.detach())}

    def initial_state(self, batch_size: int) -> DTHistory:
        """Empty histories of ``batch_size`` env slots (no step taken yet)."""
        k, device = self.config.context_length, self.action_low.device
        action_shape = (batch_size, k) if self.discrete else (batch_size, k, self.action_dim)
        return DTHistory(
            return_to_go=torch.zeros(batch_size, k, device=device),
            obs=torch.zeros(batch_size, k, *self.config.obs_shape, device=device),
            action=torch.zeros(action_shape, dtype=torch.int64 if self.discrete else torch.float32, device=device),
            timestep=torch.zeros(batch_size, k, dtype=torch.int64, device=device),
            steps=torch.zeros(batch_size, dtype=torch.int64, device=device),
        )

    def act(self, obs: dict[str, Tensor], state: DTHistory | None = None) -> tuple[Tensor, DTHistory]:
        """This step's actions ``(B,)`` int64 (discrete) or ``(B, A)`` (continuous), conditioned on
        ``target_return``, and the history with this step appended."""
        history = state if state is not None else self.initial_state(len(obs["obs"]))
        b = len(obs["obs"])
        target = self.config.target_return / self.config.return_scale
        history = replace(
            history,
            return_to_go=_shift_in(history.return_to_go, torch.full((b,), target, device=history.steps.device)),
            obs=_shift_in(history.obs, obs["obs"]),
            action=_shift_in(history.action, torch.zeros_like(history.action[:, -1])),  # filled in below
            timestep=_shift_in(history.timestep, history.steps),
            steps=history.steps + 1,
        )
        out = self.action_outputs(history.return_to_go, history.obs, history.action, history.timestep, history.valid)[
            :, -1
        ]
        action = out.argmax(-1) if self.discrete else self.unnormalize_action(torch.tanh(out))
        recorded = torch.cat([history.action[:, :-1], action.unsqueeze(1).to(history.action.dtype)], dim=1)
        return action, replace(history, action=recorded)

    def with_target_return(self, target_return: float) -> DecisionTransformerPolicy:
        """A copy of this policy (same weights, mode and device) that acts conditioned on ``target_return``, in
        the data's reward units (e.g. 0 to ask for the behaviour of the failed episodes)."""
        policy = DecisionTransformerPolicy(replace(self.config, target_return=float(target_return)))
        policy.load_state_dict(self.state_dict())
        return policy.to(self.action_low.device).train(self.training)
