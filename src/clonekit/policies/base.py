"""The one policy contract (see DESIGN.md), kept deliberately small.

A policy is a ``torch.nn.Module`` with a frozen dataclass ``config`` and four calls:

* ``compute_loss(batch) -> (loss, info)``: ``batch`` maps stream names to tensors ``(B, ...)``; it is never
  modified in place.
* ``act(obs, state) -> (action, state)``: batched; ``obs`` maps ``"obs"`` (and any other inputs) to ``(B, ...)``.
* ``initial_state(batch_size)``: recurrent memory or caches for ``act``; ``None`` when stateless.
* ``explain(obs, state)``: what the policy "thinks" (e.g. its predicted procedure or thought), or ``None``.
* ``encode_text(name, texts)``: a text stream it reads, as arrays for training batches (e.g. token ids).
* ``derived_streams(dataset)``: per-step arrays it computes from whole episodes once before training (e.g.
  returns-to-go), which training batches carry like streams.
* ``export_module()``: a tensor-only module for ONNX export (see :mod:`clonekit.export`), or ``None``.

Normalization statistics are buffers fitted by ``prepare(dataset)`` before training, so the weights file
alone reproduces the policy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
from torch import Tensor, nn

from clonekit.data import Dataset
from clonekit.data.windows import WindowSpec

# scores(inputs) -> differentiable logits or actions (B, ...) of inputs["obs"]; see Policy.attack_scores.
AttackScores = Callable[[dict[str, Tensor]], Tensor]


class Policy(nn.Module):
    """Base of every clonekit policy; subclasses implement the calls documented in this module."""

    name: ClassVar[str]
    # Streams ``compute_loss`` reads; loading a dataset without them is an error naming the stream.
    required_streams: ClassVar[tuple[str, ...]] = ("obs", "action")
    # True: training windows (see ``sample_windows``) start at episode starts, so a recurrent policy learns
    # from a memory that begins where it begins when acting.
    windows_from_episode_start: ClassVar[bool] = False
    config: Any

    @property
    def deterministic(self) -> bool:
        """True when ``act`` is a deterministic function of its inputs and state (no sampling), so repeated
        episodes of a deterministic task are copies (evaluation then plays each task once)."""
        return False

    @classmethod
    def config_from_data(cls, dataset: Dataset) -> dict[str, Any]:
        """Config fields this policy derives from the dataset besides its shapes (e.g. a vocabulary), so a
        checkpoint's config carries them; user overrides still win. Empty by default."""
        return {}

    def attack_scores(self, clean: dict[str, Tensor]) -> AttackScores | None:
        """Differentiable scores for observation attacks (:mod:`clonekit.evaluation.attacks`), or None.

        Given the clean inputs of one ``act`` call, returns ``scores(inputs)``: for inputs whose float32
        ``"obs"`` requires grad, logits ``(B, num_actions)`` whose argmax is the action (discrete actions) or
        the action ``(B, action_dim)`` itself (continuous). It may precompute from ``clean`` what it holds
        fixed (a surrogate of a non-differentiable ``act``). None: the policy cannot be attacked.
        """
        return None

    def prepare(self, dataset: Dataset) -> None:
        """Fit data-dependent buffers (normalization) before the first training step."""

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError

    def act(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, Any]:
        raise NotImplementedError

    def initial_state(self, batch_size: int) -> Any:
        return None

    def action_logits(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, Any] | None:
        """Discrete actions: the logits ``(B, num_actions)`` that ``act`` takes the argmax of, with the state
        ``act`` returns, so a caller can sample the policy's own action distribution (e.g. with a temperature,
        as :mod:`clonekit.quality.improve` does). None (the default): the policy exposes no such logits."""
        return None

    def batch_streams(self) -> tuple[str, ...]:
        """Streams ``compute_loss`` reads: ``required_streams`` and any stream the policy's config names (e.g.
        recoil's ``expert_stream``); training requires each (an error names a missing one) and batches carry
        them."""
        return self.required_streams

    def sample_windows(self) -> Mapping[str, WindowSpec]:
        """Streams ``compute_loss`` reads as windows of consecutive steps, ``(B, k, ...)`` each: ``{name: k}``
        gives the sampled step and the ``k - 1`` after it (e.g. action chunks), ``{name: (k, offset)}`` the ``k``
        steps from ``offset`` steps after the sampled one (``(k, 1 - k)``: the ``k`` steps ending at it, e.g. a
        frame history), clipped to the episode (see :mod:`clonekit.data.windows`). Empty for one step per
        sample."""
        return {}

    def encode_text(self, name: str, texts: list[str]) -> np.ndarray:
        """Text stream ``name`` (one str per step) as an array ``(num_steps, ...)`` that training batches
        carry under ``name``; needed only by a policy whose ``required_streams`` include a text stream."""
        raise NotImplementedError(f"policy {self.name!r} does not read text stream {name!r}")

    def derived_streams(self, dataset: Dataset) -> dict[str, np.ndarray]:
        """Per-step arrays ``{name: (num_steps, ...)}`` the policy computes from the whole dataset once before
        training (e.g. returns-to-go, which need whole episodes); training batches carry them under ``name``,
        gathered (and windowed) like dataset streams. A function of the dataset and the config only, so a
        resumed run derives the same arrays. Empty by default."""
        return {}

    def explain(self, obs: dict[str, Tensor], state: Any | None = None) -> dict[str, Any] | None:
        return None

    def export_module(self) -> nn.Module | None:
        """A module for deployment, or ``None`` when the policy cannot be exported.

        Its ``forward(obs)`` maps the ``"obs"`` batch ``(B, *obs_shape)`` to a tuple of tensors: first the
        action ``act({"obs": obs}, initial_state(B))`` returns, then any extra outputs (e.g. logits). Its
        ``output_names`` attribute (a tuple of str) names them. It shares this policy's parameters and
        buffers, so the normalization is included, and uses only ops ``torch.export`` can trace. A module
        may take more float32 inputs, ``forward(obs, *extra)``, named and shaped (without the batch axis) by
        its ``extra_inputs`` dict (e.g. the goal and the random draws of continuous_bc's head).
        """
        return None

    def after_optimizer_step(self, step: int) -> None:
        """Called by the training loop after optimizer step ``step`` (1-based), with no gradient tracking: e.g. a
        critic's target networks move towards the online ones here. Does nothing by default."""

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """``compute_loss``; defined so that DistributedDataParallel's hooks see the training pass."""
        return self.compute_loss(batch)
