"""Action chunking: a policy predicts ``k`` future actions at once and executes them over several steps.

Two ways of executing chunks, both batched with one queue per env slot (the state a policy's
``initial_state``/``act`` carry across steps):

* ``"receding"`` (Diffusion Policy): execute the first ``execute_steps`` actions of a chunk, then predict
  a new chunk from the observation reached. Slots predict a new chunk only when their queue is empty.
* ``"ensemble"`` (temporal ensembling, ACT): predict a chunk every step; the action for the current step
  is a weighted mean of what every chunk still covering it predicted, with weight ``exp(-m * i)`` for the
  ``i``-th oldest (``m = ensemble_decay``; the oldest prediction weighs most, which keeps motion smooth).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

EXECUTIONS = ("receding", "ensemble")
Inputs = dict[str, Tensor]
Predictor = Callable[[Inputs], Tensor]


@dataclass
class ChunkQueue:
    """Per-slot execution state.

    ``receding``: ``actions (B, execute_steps, A)`` are the queued actions and ``remaining (B,)`` how many are
    left (a slot takes ``actions[:, execute_steps - remaining]``).
    ``ensemble``: ``actions (B, k, k, A)`` holds the chunks predicted 0..k-1 steps ago (``actions[:, j, i]``
    is the action for ``i`` steps from now predicted ``j`` steps ago) and ``remaining (B, k)`` marks which
    of them exist yet.
    """

    actions: Tensor
    remaining: Tensor


class ActionChunker:
    """Turns a chunk predictor ``inputs (B, ...) -> (B, k, A)`` into a per-step batched actor."""

    def __init__(self, chunk: int, action_dim: int, execution: str, execute_steps: int, ensemble_decay: float) -> None:
        if execution not in EXECUTIONS:
            raise ValueError(f"chunk execution: expected one of {EXECUTIONS}, got {execution!r}")
        if not 1 <= execute_steps <= chunk:
            raise ValueError(f"execute_steps: expected in [1, {chunk}], got {execute_steps}")
        self.chunk = chunk
        self.action_dim = action_dim
        self.execution = execution
        self.execute_steps = execute_steps
        self.ensemble_decay = ensemble_decay

    def initial_state(self, batch_size: int) -> ChunkQueue:
        """Empty queues for ``batch_size`` slots."""
        if self.execution == "receding":
            actions = torch.zeros(batch_size, self.execute_steps, self.action_dim)
            return ChunkQueue(actions, torch.zeros(batch_size, dtype=torch.long))
        actions = torch.zeros(batch_size, self.chunk, self.chunk, self.action_dim)
        return ChunkQueue(actions, torch.zeros(batch_size, self.chunk, dtype=torch.bool))

    def act(self, inputs: Inputs, state: ChunkQueue, predict: Predictor) -> tuple[Tensor, ChunkQueue]:
        """This step's actions ``(B, A)`` and the updated queues.

        ``inputs`` maps names (``obs``, ...) to ``(B, ...)`` tensors; ``predict`` maps such inputs (of the slots
        that need a new chunk) to chunks ``(B', k, A)``.
        """
        if self.execution == "receding":
            return self._receding(inputs, state, predict)
        return self._ensemble(inputs, state, predict)

    def _receding(self, inputs: Inputs, state: ChunkQueue, predict: Predictor) -> tuple[Tensor, ChunkQueue]:
        device = next(iter(inputs.values())).device
        actions, remaining = state.actions.to(device).clone(), state.remaining.to(device).clone()
        empty = remaining == 0
        if empty.any():
            chunks = predict({name: value[empty] for name, value in inputs.items()})
            actions[empty] = chunks[:, : self.execute_steps].to(actions.dtype)
            remaining[empty] = self.execute_steps
        rows = torch.arange(len(actions), device=actions.device)
        out = actions[rows, self.execute_steps - remaining]
        return out, ChunkQueue(actions, remaining - 1)

    def _ensemble(self, inputs: Inputs, state: ChunkQueue, predict: Predictor) -> tuple[Tensor, ChunkQueue]:
        device = next(iter(inputs.values())).device
        old, valid = state.actions.to(device), state.remaining.to(device)
        # Age every stored chunk by one step: chunk j becomes j + 1 and its actions shift one step closer.
        aged = torch.zeros_like(old)
        aged[:, 1:, :-1] = old[:, :-1, 1:]
        aged_valid = torch.zeros_like(valid)
        aged_valid[:, 1:] = valid[:, :-1]
        aged[:, 0] = predict(inputs).to(old.dtype)
        aged_valid[:, 0] = True
        ages = torch.arange(self.chunk, device=old.device)
        current = aged[:, ages, 0]  # (B, k, A): chunk j's action for now
        weight = torch.exp(self.ensemble_decay * ages.float())[None] * aged_valid  # older chunks weigh more
        out = (weight[..., None] * current).sum(1) / weight.sum(1, keepdim=True)
        return out, ChunkQueue(aged, aged_valid)
