"""A transformer over the observation history that predicts chunks of future actions (ACT-style).

``obs history (B, h, *obs_shape) -> normalize -> encoder per frame -> h tokens (B, h, d)``, plus a goal token
(``transformer_goal_bc``) and ``k`` learned action-query tokens; a ``TransformerEncoder`` attends over the whole
sequence and the output at query ``i`` predicts the action ``i`` steps from now: logits over the discrete actions
(cross-entropy) or a continuous action scaled to [-1, 1] with the training data's range (L1, as ACT, or MSE).

History: training reads ``obs`` as the window ``[t - h + 1 .. t]`` of a sampled step ``t``; near an episode's
start :mod:`clonekit.data.windows` clips that window by repeating the episode's first observation, and
``act`` builds the same history with :func:`clonekit.nn.encoders.push_frame`. The policy relies on that
clipping instead of an attention mask: what it sees at an episode's start is the same in training and acting.

Chunks: training reads the action stream as windows of ``k`` steps from ``t``, padded at an episode's end by
repeating its last action (as Diffusion Policy does; ACT masks the padding instead). ``act`` executes chunks
with :class:`clonekit.nn.chunking.ActionChunker`: temporal ensembling (default) or open-loop receding horizon.
For discrete actions the chunker holds each predicted step's probabilities, so ensembling averages them and
the action is the most likely one.

ACT's CVAE (a style latent inferred from the action chunk in training, zero at test time) is not included.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clonekit.data import Dataset
from clonekit.errors import ConfigError
from clonekit.nn import ConvEncoder, MLPEncoder, Normalizer
from clonekit.nn.chunking import ActionChunker, ChunkQueue
from clonekit.nn.encoders import CNNEncoder, push_frame, random_shift
from clonekit.nn.normalize import actions_from_unit, actions_to_unit, feature_range
from clonekit.policies.base import Policy
from clonekit.policies.transformer_bc.config import TransformerBCConfig, TransformerGoalBCConfig


class TransformerBCPolicy(Policy):
    """Transformer over the last ``history`` observations with ``chunk`` action queries (see the module docstring).

    ``act``'s state is ``(frames (B, h, *obs_shape), queue)``: the observation history of each env slot (empty,
    ``(B, 0, ...)``, at an episode's start) and the :class:`ChunkQueue` of earlier chunk predictions.
    """

    name = "transformer_bc"
    required_streams: ClassVar[tuple[str, ...]] = ("obs", "action")
    action_low: Tensor
    action_high: Tensor

    @property
    def deterministic(self) -> bool:
        """Most likely discrete action, or the regressed continuous one: no sampling."""
        return True

    def __init__(self, config: TransformerBCConfig) -> None:
        super().__init__()
        self.config = config
        if config.goal_shape and "goal" not in self.required_streams:
            raise ConfigError(f"goal_shape: {self.name} reads no goal, expected (), got {config.goal_shape}")
        self.discrete = config.num_actions > 0
        self.action_dim = config.num_actions if self.discrete else config.action_shape[0]
        self.normalizer = Normalizer(config.obs_shape, config.normalize_obs)
        if config.encoder == "conv":
            self.encoder: ConvEncoder | CNNEncoder | MLPEncoder = ConvEncoder(
                config.obs_shape, config.conv_channels, config.hidden_sizes
            )
        elif config.encoder == "cnn":
            self.encoder = CNNEncoder(config.obs_shape, config.conv_channels, config.hidden_sizes)
        else:
            self.encoder = MLPEncoder(config.obs_shape, config.hidden_sizes)
        d = config.d_model
        self.obs_token = nn.Linear(self.encoder.out_dim, d)
        self.goal_normalizer = Normalizer(config.goal_shape or (1,), "per_feature" if config.goal_shape else "none")
        self.goal_token = nn.Linear(math.prod(config.goal_shape), d) if config.goal_shape else None
        # Learned positions of the history frames (oldest first) and the action queries (ACT's query embedding).
        self.history_position = nn.Parameter(torch.randn(config.history, d) * 0.02)
        self.action_queries = nn.Parameter(torch.randn(config.chunk, d) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d, config.num_heads, config.feedforward, config.dropout, batch_first=True, norm_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)
        self.out_norm = nn.LayerNorm(d)
        self.action_out = nn.Linear(d, self.action_dim)
        # Continuous actions are scaled to [-1, 1] with the training range (buffers: saved with the weights).
        self.register_buffer("action_low", -torch.ones(1 if self.discrete else self.action_dim))
        self.register_buffer("action_high", torch.ones(1 if self.discrete else self.action_dim))
        self.chunker = ActionChunker(
            config.chunk,
            self.action_dim,
            config.execution,
            config.execute_steps or config.chunk,
            config.ensemble_decay,
        )

    def prepare(self, dataset: Dataset) -> None:
        self.normalizer.fit(dataset.column_chunks("obs"))  # streamed: a large column is not copied
        if self.config.goal_shape:
            self.goal_normalizer.fit(dataset.column_chunks("goal"))
        if not self.discrete:
            low, high = feature_range(dataset.column_chunks("action"), (self.action_dim,))
            self.action_low.copy_(torch.from_numpy(low))
            self.action_high.copy_(torch.from_numpy(high))

    def sample_windows(self) -> dict[str, int | tuple[int, int]]:
        h, k = self.config.history, self.config.chunk
        windows: dict[str, int | tuple[int, int]] = {"action": k} if k > 1 else {}
        if h > 1:
            windows["obs"] = (h, 1 - h)  # the h frames ending at the sampled step
        return windows

    def normalize_action(self, actions: Tensor) -> Tensor:
        """Continuous actions ``(..., A)`` mapped to [-1, 1] with the training range."""
        return actions_to_unit(actions, self.action_low, self.action_high)

    def unnormalize_action(self, actions: Tensor) -> Tensor:
        """Inverse of :meth:`normalize_action`, after clipping to [-1, 1]."""
        return actions_from_unit(actions, self.action_low, self.action_high)

    def predict(self, inputs: dict[str, Tensor]) -> Tensor:
        """Outputs of the action queries ``(B, k, action_dim)``: logits (discrete) or scaled actions (continuous).

        ``inputs["obs"]`` is the history ``(B, h, *obs_shape)`` (oldest first), ``inputs["goal"]`` the goal
        ``(B, *goal_shape)`` when the policy reads one.
        """
        frames = self.normalizer(inputs["obs"])
        b, h = frames.shape[:2]
        tokens = self.obs_token(self.encoder(frames.flatten(0, 1))).view(b, h, -1) + self.history_position
        parts = [tokens]
        if self.goal_token is not None:
            if "goal" not in inputs:
                raise ConfigError(
                    f"{self.name}: the policy reads a 'goal' input, which the env did not give; "
                    "evaluate it on a goal-reaching env (e.g. avoiding-goal)"
                )
            parts.insert(0, self.goal_token(self.goal_normalizer(inputs["goal"]).flatten(1)).unsqueeze(1))
        parts.append(self.action_queries.expand(b, -1, -1))
        out = self.transformer(torch.cat(parts, dim=1))[:, -self.config.chunk :]
        return self.action_out(self.out_norm(out))

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        obs, actions = batch["obs"], batch["action"]
        if self.config.history == 1:
            obs = obs.unsqueeze(1)
        if self.config.random_shift:
            obs = random_shift(obs, self.config.random_shift)
        if self.config.chunk == 1:
            actions = actions.unsqueeze(1)  # (B, k[, A])
        outputs = self.predict({**batch, "obs": obs})
        if self.discrete:
            loss = F.cross_entropy(outputs.flatten(0, 1), actions.flatten().long())
            accuracy = (outputs[:, 0].argmax(-1) == actions[:, 0]).float().mean()
            return loss, {"nll": float(loss.detach()), "action_accuracy": float(accuracy)}
        target = self.normalize_action(actions)
        loss = F.l1_loss(outputs, target) if self.config.continuous_loss == "l1" else F.mse_loss(outputs, target)
        return loss, {self.config.continuous_loss: float(loss.detach())}

    def predict_chunk(self, inputs: dict[str, Tensor]) -> Tensor:
        """One chunk ``(B, k, action_dim)``: probabilities of the discrete actions, or continuous actions."""
        outputs = self.predict(inputs)
        if self.discrete:
            return outputs.softmax(-1)
        return self.unnormalize_action(outputs)

    def initial_state(self, batch_size: int) -> tuple[Tensor, ChunkQueue]:
        """An empty history ``(B, 0, *obs_shape)`` and empty chunk queues."""
        return torch.zeros((batch_size, 0, *self.config.obs_shape)), self.chunker.initial_state(batch_size)

    def act(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, Any]:
        """This step's actions ``(B,)`` int64 (discrete) or ``(B, A)`` (continuous), and the new state."""
        history, queue = state if state is not None else self.initial_state(len(obs["obs"]))
        frames = push_frame(history, obs["obs"], self.config.history)
        action, queue = self.chunker.act({**obs, "obs": frames}, queue, self.predict_chunk)
        return (action.argmax(-1) if self.discrete else action), (frames, queue)


class TransformerGoalBCPolicy(TransformerBCPolicy):
    """transformer_bc that also reads the ``goal`` stream: the normalized goal is one more token before the
    history. At evaluation the env supplies the goal (``act({"obs": ..., "goal": ...})``)."""

    name = "transformer_goal_bc"
    required_streams: ClassVar[tuple[str, ...]] = ("obs", "action", "goal")

    def __init__(self, config: TransformerGoalBCConfig) -> None:
        super().__init__(config)
