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

CVAE (``cvae=True``, ACT's): in training a latent encoder (its own small transformer) reads ``[CLS, the history
(and goal) tokens, the action chunk]`` and gives the mean and log-variance of a style latent ``z``; a sample of
``z``, projected, is one more token before the history, and ``kl_weight * KL(q(z) || N(0, I))`` joins the action
loss. ``act`` uses ``z = 0``, the prior's mean, so the policy stays deterministic; without ``cvae`` none of these
modules exist and the policy is exactly the one above.

Component tokens (``tokenization="component"``, PASTA): no per-frame encoder; the normalized states of the
history and hidden action tokens fill ``h + k - 1`` time slots of a
:class:`clonekit.nn.component_tokens.ComponentTransformer` (one token per scalar), and the chunk is read at the
hidden action tokens of slots ``h - 1 ..``. That is the input :mod:`clonekit.pretrain.pasta` pretrains on, so a
``pretrained`` directory's weights (and its normalization) can start training; they are loaded in ``prepare``,
which only a fresh run calls, so a checkpoint never needs the directory again.
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
from clonekit.nn.component_tokens import ComponentTransformer
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
        d = config.d_model
        if config.tokenization == "component":
            self.trunk = ComponentTransformer(
                config.obs_shape[0] + self.action_dim,
                config.history + config.chunk - 1,
                d,
                config.num_heads,
                config.num_layers,
                config.feedforward,
                config.dropout,
            )
        else:
            self._build_frame_tokens(config)
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
        if config.cvae:  # built last, so the other modules draw the same initial weights as without a CVAE
            self.latent_cls = nn.Parameter(torch.randn(1, d) * 0.02)
            # The chunk enters scaled to [-1, 1] (continuous) or one-hot (discrete).
            self.latent_action_in = nn.Linear(self.action_dim, d)
            self.latent_chunk_position = nn.Parameter(torch.randn(config.chunk, d) * 0.02)
            latent_layer = nn.TransformerEncoderLayer(
                d, config.num_heads, config.feedforward, config.dropout, batch_first=True, norm_first=True
            )
            self.latent_encoder = nn.TransformerEncoder(latent_layer, config.cvae_layers, enable_nested_tensor=False)
            self.latent_stats = nn.Linear(d, 2 * config.latent_dim)
            self.latent_token = nn.Linear(config.latent_dim, d)

    def _build_frame_tokens(self, config: TransformerBCConfig) -> None:
        """The modules of frame tokenization: a per-frame encoder, history positions, action queries, the
        transformer and the action readout (in this order: it fixes the initial weights a seed draws)."""
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

    def prepare(self, dataset: Dataset) -> None:
        self.normalizer.fit(dataset.column_chunks("obs"))  # streamed: a large column is not copied
        if self.config.goal_shape:
            self.goal_normalizer.fit(dataset.column_chunks("goal"))
        if not self.discrete:
            low, high = feature_range(dataset.column_chunks("action"), (self.action_dim,))
            self.action_low.copy_(torch.from_numpy(low))
            self.action_high.copy_(torch.from_numpy(high))
        if self.config.pretrained is not None:
            self.load_pretrained(self.config.pretrained)

    def load_pretrained(self, directory: str) -> None:
        """Start from the transformer and normalization of a ``clonekit pretrain pasta`` directory (a mismatch is
        a one-line ``ConfigError`` naming its file)."""
        # Imported here: clonekit.pretrain.pasta imports clonekit.checkpoint, which imports every policy.
        from clonekit.pretrain.pasta import load_pasta, load_trunk_into

        pretrained = load_pasta(directory)
        load_trunk_into(self.trunk, pretrained, directory, self.config.obs_shape[0])
        # The pretrained embeddings read values in the pretraining data's coordinates: keep those.
        stats = pretrained.normalization
        self.normalizer.mean.copy_(stats["obs_mean"])
        self.normalizer.std.copy_(stats["obs_std"])
        if "action_low" in stats:
            self.action_low.copy_(stats["action_low"])
            self.action_high.copy_(stats["action_high"])

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

    def predict(self, inputs: dict[str, Tensor], latent: Tensor | None = None) -> Tensor:
        """Outputs of the action queries ``(B, k, action_dim)``: logits (discrete) or scaled actions (continuous).

        ``inputs["obs"]`` is the history ``(B, h, *obs_shape)`` (oldest first), ``inputs["goal"]`` the goal
        ``(B, *goal_shape)`` when the policy reads one; ``latent`` ``(B, latent_dim)`` is the CVAE's ``z`` (None:
        the prior mean, 0).
        """
        if self.config.tokenization == "component":
            return self._predict_components(inputs)
        return self._decode(self._context_tokens(inputs), latent)

    def _context_tokens(self, inputs: dict[str, Tensor]) -> Tensor:
        """The goal token (if any) and the history tokens ``(B, [1 +] h, d)``."""
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
        return torch.cat(parts, dim=1) if len(parts) > 1 else tokens

    def _decode(self, context: Tensor, latent: Tensor | None) -> Tensor:
        """Outputs ``(B, k, action_dim)`` of the action queries after ``context`` (and the latent token)."""
        b = context.shape[0]
        parts = [context]
        if self.config.cvae:
            z = latent if latent is not None else context.new_zeros(b, self.config.latent_dim)
            parts.insert(0, self.latent_token(z).unsqueeze(1))
        parts.append(self.action_queries.expand(b, -1, -1))
        out = self.transformer(torch.cat(parts, dim=1))[:, -self.config.chunk :]
        return self.action_out(self.out_norm(out))

    def _posterior(self, context: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """CVAE encoder: mean and log-variance ``(B, latent_dim)`` of ``z`` given the context tokens and the
        chunk ``actions`` ``(B, k[, A])``."""
        chunk = F.one_hot(actions.long(), self.action_dim).float() if self.discrete else self.normalize_action(actions)
        chunk_tokens = self.latent_action_in(chunk) + self.latent_chunk_position
        sequence = torch.cat([self.latent_cls.expand(len(context), -1, -1), context, chunk_tokens], dim=1)
        mean, log_var = self.latent_stats(self.latent_encoder(sequence)[:, 0]).chunk(2, dim=-1)
        return mean, log_var

    def _predict_components(self, inputs: dict[str, Tensor]) -> Tensor:
        """Scaled actions ``(B, k, A)`` read at the hidden action tokens (component tokenization)."""
        states = self.normalizer(inputs["obs"])  # (B, h, D)
        b, h, num_obs = states.shape
        slots, components = self.trunk.window, self.trunk.num_components
        values = torch.cat([states, states.new_zeros(b, h, self.action_dim)], dim=-1)
        values = torch.cat([values, states.new_zeros(b, slots - h, components)], dim=1)
        visible = torch.zeros(slots, components, dtype=torch.bool, device=states.device)
        visible[:h, :num_obs] = True  # the history's states; every action and every later state is hidden
        return self.trunk(values, visible.expand(b, -1, -1))[:, h - 1 :, num_obs:]

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        obs, actions = batch["obs"], batch["action"]
        if self.config.history == 1:
            obs = obs.unsqueeze(1)
        if self.config.random_shift:
            obs = random_shift(obs, self.config.random_shift)
        if self.config.chunk == 1:
            actions = actions.unsqueeze(1)  # (B, k[, A])
        kl: Tensor | None = None
        if self.config.cvae:
            context = self._context_tokens({**batch, "obs": obs})
            mean, log_var = self._posterior(context, actions)
            z = mean + torch.randn_like(mean) * (0.5 * log_var).exp()  # reparameterized sample
            outputs = self._decode(context, z)
            kl = (-0.5 * (1 + log_var - mean.square() - log_var.exp()).sum(-1)).mean()
        else:
            outputs = self.predict({**batch, "obs": obs})
        info: dict[str, float]
        if self.discrete:
            loss = F.cross_entropy(outputs.flatten(0, 1), actions.flatten().long())
            accuracy = (outputs[:, 0].argmax(-1) == actions[:, 0]).float().mean()
            info = {"nll": float(loss.detach()), "action_accuracy": float(accuracy)}
        else:
            target = self.normalize_action(actions)
            loss = F.l1_loss(outputs, target) if self.config.continuous_loss == "l1" else F.mse_loss(outputs, target)
            info = {self.config.continuous_loss: float(loss.detach())}
        if kl is not None:
            loss = loss + self.config.kl_weight * kl
            info["kl"] = float(kl.detach())
        return loss, info

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
