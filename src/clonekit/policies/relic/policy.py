"""ReLIC-lite: a causal transformer actor-critic over a context of several trials of one task.

Token ``t`` is ``W_obs o_t + E_action[a_{t-1}] + E_position[t]`` (``a_{-1}`` is a learned "no action" entry);
the observation carries the previous reward and a new-trial flag, so the context holds everything the agent
did and got in earlier trials of the same task. Pre-norm layers of causal self-attention (with a learned sink
key/value per layer and head: ReLIC's Sink-KV, so a head can put its weight on nothing instead of on some
arbitrary token) and a feed-forward block; a policy head (logits) and a value head (the critic PPO trains
with it, kept in the checkpoint so training resumes exactly) read each token's output.

``act`` keeps the context in the state (:class:`RelicContext`: every layer's cached keys and values, so a step
computes only its new token): ``initial_state(B)`` is an empty context for ``B`` new tasks, each call appends one
token per slot and returns the argmax action of the last one. A caller starts a fresh state for every task;
trial boundaries inside a task are *not* resets (that is the point). Step by step with the cache and all at once
(:meth:`RelicPolicy.forward_sequence`, as PPO's update runs it) give the same outputs up to float rounding.

Trained by PPO over whole multi-trial episodes (:mod:`clonekit.rl.incontext`), so ``compute_loss`` is not offered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from clonekit.errors import ConfigError
from clonekit.policies.base import Policy
from clonekit.policies.relic.config import RelicConfig


@dataclass
class RelicContext:
    """The context of ``B`` running tasks as ``act`` keeps it: per layer the keys and values of the ``t`` steps so
    far ``(B, h, t, d / h)``, each step's trial number ``(B, t)`` and the last action taken ``(B,)``."""

    keys: list[Tensor]
    values: list[Tensor]
    trial: Tensor
    last_action: Tensor

    @property
    def length(self) -> int:
        """Steps in the context."""
        return int(self.trial.shape[1])


class SinkAttention(nn.Module):
    """Multi-head self-attention ``(B, T, d) -> (B, T, d)`` under a boolean mask ``(B, T, T)`` (True: may attend),
    with an optional learned sink key and value per head that every query may attend to."""

    def __init__(self, d_model: int, num_heads: int, sink: bool) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, d_model // num_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.sink_key = nn.Parameter(torch.randn(num_heads, 1, self.head_dim) * 0.02) if sink else None
        self.sink_value = nn.Parameter(torch.zeros(num_heads, 1, self.head_dim)) if sink else None

    def forward(
        self, x: Tensor, allowed: Tensor, past: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Outputs ``(B, T, d)`` of the new tokens ``x`` ``(B, T, d)``, which attend to the cached keys and values
        ``past`` ``(B, h, P, d / h)`` each and to themselves under ``allowed`` ``(B, T, P + T)``; also returns the
        keys and values of all ``P + T`` tokens (the cache after this call)."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (B, h, T, hd)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)  # (B, h, T, P + T)
        scores = scores.masked_fill(~allowed[:, None], float("-inf"))
        values = v
        if self.sink_key is not None and self.sink_value is not None:
            sink_scores = (q @ self.sink_key.transpose(-1, -2)) / math.sqrt(self.head_dim)  # (B, h, T, 1)
            scores = torch.cat([sink_scores, scores], dim=-1)
            values = torch.cat([self.sink_value.expand(b, -1, -1, -1), v], dim=2)
        weights = torch.softmax(scores, dim=-1)  # every row has its own token (or the sink): never all -inf
        return self.out((weights @ values).transpose(1, 2).reshape(b, t, d)), (k, v)


class RelicBlock(nn.Module):
    """Pre-norm transformer layer: ``x + attention(norm(x))``, then ``x + feedforward(norm(x))``."""

    def __init__(self, config: RelicConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.d_model)
        self.attention = SinkAttention(config.d_model, config.num_heads, config.sink_kv)
        self.norm2 = nn.LayerNorm(config.d_model)
        self.feedforward = nn.Sequential(
            nn.Linear(config.d_model, config.feedforward), nn.GELU(), nn.Linear(config.feedforward, config.d_model)
        )

    def forward(
        self, x: Tensor, allowed: Tensor, past: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        attended, cache = self.attention(self.norm1(x), allowed, past)
        x = x + attended
        return x + self.feedforward(self.norm2(x)), cache


class RelicPolicy(Policy):
    """Transformer actor-critic over a multi-trial context; see the module docstring for the contract.

    ``act``'s state is a :class:`RelicContext` (``initial_state(B)``: empty); a context holds at most
    ``max_context`` steps (an error beyond).
    """

    name = "relic"

    def __init__(self, config: RelicConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.obs_embedding = nn.Linear(config.obs_dim, d)
        self.action_embedding = nn.Embedding(config.num_actions + 1, d)  # last entry: no previous action
        self.position_embedding = nn.Embedding(config.max_context, d)
        self.blocks = nn.ModuleList(RelicBlock(config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(d)
        self.policy_head = nn.Linear(d, config.num_actions)
        self.value_head = nn.Linear(d, 1)
        nn.init.orthogonal_(self.policy_head.weight, 0.01)  # a near-uniform first policy, as PPO's actors start
        nn.init.zeros_(self.policy_head.bias)

    @property
    def deterministic(self) -> bool:
        return True

    @property
    def no_action(self) -> int:
        """The previous-action id of a context's first step."""
        return self.config.num_actions

    def trial_numbers(self, obs: Tensor, first: Tensor | None = None) -> Tensor:
        """``(B, T)`` long: each step's trial, counted from the new-trial flags of ``obs`` ``(B, T, D)``, going on
        from ``first`` ``(B,)`` (the trial of the step before, when the context already has steps)."""
        trial = (obs[..., self.config.new_trial_feature] > 0.5).long().cumsum(1)
        return trial if first is None else trial + first[:, None]

    def _allowed(self, trial: Tensor, new: int) -> Tensor:
        """``(B, new, t)`` bool for the last ``new`` of the ``t`` steps whose trials are ``trial`` ``(B, t)``: a step
        attends to itself and earlier steps (with ``memory="trial"``: of its own trial only)."""
        b, t = trial.shape
        rows = torch.arange(t - new, t, device=trial.device)
        allowed = (torch.arange(t, device=trial.device)[None, :] <= rows[:, None]).expand(b, new, t)
        if self.config.memory == "trial":
            allowed = allowed & (trial[:, -new:, None] == trial[:, None, :])
        return allowed

    def _run(
        self, obs: Tensor, prev_actions: Tensor, context: RelicContext | None
    ) -> tuple[Tensor, Tensor, RelicContext]:
        """Logits ``(B, T, A)`` and values ``(B, T)`` of ``T`` new steps after ``context`` (None: empty), with the
        context extended by them (its ``last_action`` is left as it was)."""
        b, t, _ = obs.shape
        start = 0 if context is None else context.length
        if start + t > self.config.max_context:
            raise ConfigError(f"context: expected at most max_context={self.config.max_context} steps, got {start + t}")
        previous = None if context is None or start == 0 else context.trial[:, -1]
        trial = self.trial_numbers(obs, previous)
        if context is not None:
            trial = torch.cat([context.trial, trial], dim=1)
        allowed = self._allowed(trial, t)
        obs = obs.float()
        if self.config.memory == "trial":  # a trial's first step must not see how the last trial ended
            first = obs[..., self.config.new_trial_feature] > 0.5  # (B, T)
            obs = obs.clone()
            obs[..., self.config.reward_feature] = obs[..., self.config.reward_feature].masked_fill(first, 0.0)
            prev_actions = prev_actions.masked_fill(first, self.no_action)
        # A step's position is the number of steps it sees before it: its index in the context, or with
        # memory="trial" in its trial (so not even the time earlier trials took reaches the baseline).
        positions = allowed.sum(-1) - 1  # (B, T)
        x = self.obs_embedding(obs) + self.action_embedding(prev_actions) + self.position_embedding(positions)
        keys, values = [], []
        for i, block in enumerate(self.blocks):
            past = None if context is None or start == 0 else (context.keys[i], context.values[i])
            x, (k, v) = block(x, allowed, past)
            keys.append(k)
            values.append(v)
        x = self.norm(x)
        last = context.last_action if context is not None else torch.full((b,), self.no_action, dtype=torch.long)
        return self.policy_head(x), self.value_head(x).squeeze(-1), RelicContext(keys, values, trial, last)

    def forward_sequence(self, obs: Tensor, prev_actions: Tensor) -> tuple[Tensor, Tensor]:
        """Logits ``(B, T, num_actions)`` and values ``(B, T)`` of every step of contexts ``obs`` ``(B, T, D)``
        with the previous actions ``(B, T)`` long (``no_action`` at the first step). Step ``t``'s outputs depend
        on steps ``<= t`` only, so a right-padded batch gives each real step what its own prefix gives."""
        logits, values, _ = self._run(obs, prev_actions, None)
        return logits, values

    def step(self, obs: Tensor, context: RelicContext) -> tuple[Tensor, Tensor, RelicContext]:
        """One step for ``B`` running tasks: logits ``(B, A)`` and values ``(B,)`` for ``obs`` ``(B, D)`` after
        ``context`` (whose ``last_action`` is this step's previous action), and the context with this step in it
        (cached keys and values: only the new token is computed)."""
        logits, values, context = self._run(obs[:, None], context.last_action[:, None], context)
        return logits[:, 0], values[:, 0], context

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        raise ConfigError(
            "policy relic: trained by PPO over multi-trial episodes (clonekit.rl.incontext), not by train"
        )

    def initial_state(self, batch_size: int) -> RelicContext:
        """An empty context for ``batch_size`` new tasks."""
        return RelicContext([], [], torch.zeros(batch_size, 0, dtype=torch.long), self.no_action_batch(batch_size))

    def no_action_batch(self, batch_size: int) -> Tensor:
        """``(batch_size,)`` long of ``no_action``."""
        return torch.full((batch_size,), self.no_action, dtype=torch.long)

    def action_logits(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, Any]:
        """Logits ``(B, num_actions)`` for this step given ``obs["obs"]`` ``(B, D)`` and the context ``state``; the
        returned context holds this step but not yet its action (``act`` or :meth:`record_action` sets it)."""
        current = obs["obs"]
        context = state if state is not None else self.initial_state(len(current))
        with torch.no_grad():
            logits, _, context = self.step(current, context)
        return logits, context

    @staticmethod
    def record_action(context: RelicContext, actions: Tensor) -> RelicContext:
        """``context`` with ``actions`` ``(B,)`` as the last action taken (the next step's previous action)."""
        return RelicContext(context.keys, context.values, context.trial, actions.long())

    def act(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, Any]:
        """The most likely action ``(B,)`` for this step and the context with this step appended."""
        logits, context = self.action_logits(obs, state)
        actions = logits.argmax(-1)
        return actions, self.record_action(context, actions)
