"""Behaviour cloning of continuous actions: encoder -> any continuous action head, optionally chunked.

``obs (B, *obs_shape) -> normalize -> encoder -> features (B, F) -> head -> action (B, k * A)``. Actions are
scaled to [-1, 1] per dimension with the range seen in the training data (stored as buffers, so the
checkpoint is self-contained); sampled actions are clipped to that range. Stochastic heads (gaussian,
gmm, diffusion) draw their noise from torch's global generator, so ``torch.manual_seed`` fixes ``act``.

With ``frame_stack = k > 1`` the encoder sees the last ``k`` observations ``(B, k, *obs_shape)``, each
normalized, stacked along channels (features); ``act``'s state holds them (with the chunk queue, if any).
Training reads ``obs`` as the history window ``[t - k + 1 .. t]`` of a sampled step ``t``
(:mod:`clonekit.data.windows`), with the ``goal`` at ``t`` and the action (chunk) starting at ``t``. Near an
episode's start the window repeats the episode's first frame, as ``act``'s history does there.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from clonekit.data import Dataset
from clonekit.errors import ConfigError
from clonekit.nn import ConvEncoder, MLPEncoder, Normalizer
from clonekit.nn.binned import BinnedHead
from clonekit.nn.chunking import ActionChunker, ChunkQueue
from clonekit.nn.diffusion import DiffusionHead
from clonekit.nn.encoders import CNNEncoder, push_frame, random_shift, stacked_shape
from clonekit.nn.gaussian import GaussianHead
from clonekit.nn.gmm import GMMHead
from clonekit.nn.mode import MoDEHead
from clonekit.nn.normalize import actions_from_unit, actions_to_unit, feature_range
from clonekit.policies.base import AttackScores, Policy
from clonekit.policies.continuous_bc.config import ContinuousBCConfig
from clonekit.pretrain.encoder_file import freeze, load_pretrained_encoder, policy_architecture

ContinuousHead = GaussianHead | GMMHead | DiffusionHead | BinnedHead


def make_head(config: ContinuousBCConfig, in_dim: int, action_dim: int) -> ContinuousHead:
    """The action head named by ``config.head`` over flattened actions of width ``action_dim``."""
    if config.head in ("mse", "gaussian"):
        return GaussianHead(in_dim, action_dim, learn_std=config.head == "gaussian")
    if config.head == "gmm":
        return GMMHead(in_dim, action_dim, config.gmm_components)
    if config.head == "binned":
        return BinnedHead(in_dim, action_dim, config.action_bins)
    if config.head == "mode":
        return MoDEHead(
            in_dim,
            action_dim,
            width=config.mode_width,
            expert_hidden=config.mode_expert_hidden,
            layers=config.mode_layers,
            experts=config.mode_experts,
            top_k=config.mode_top_k,
            balance_weight=config.mode_balance_weight,
            sigma_data=config.sigma_data,
            sigma_min=config.sigma_min,
            sigma_max=config.sigma_max,
            sampling_steps=config.diffusion_steps,
            schedule=config.diffusion_schedule,
            sampler=config.diffusion_sampler,
        )
    return DiffusionHead(
        in_dim,
        action_dim,
        hidden_sizes=config.diffusion_hidden_sizes,
        sigma_data=config.sigma_data,
        sigma_min=config.sigma_min,
        sigma_max=config.sigma_max,
        sampling_steps=config.diffusion_steps,
        schedule=config.diffusion_schedule,
        sampler=config.diffusion_sampler,
    )


class ContinuousBCPolicy(Policy):
    """Behaviour cloning of continuous actions: an encoder and any continuous head, optionally chunked.

    The head (mse, gaussian, gmm, binned, diffusion, mode) and the chunking are chosen by config (see the module
    docstring).
    """

    name = "continuous_bc"
    required_streams: ClassVar[tuple[str, ...]] = ("obs", "action")
    action_low: Tensor
    action_high: Tensor

    @property
    def deterministic(self) -> bool:
        """Only the MSE head predicts without sampling."""
        return self.config.head == "mse"

    def __init__(self, config: ContinuousBCConfig) -> None:
        super().__init__()
        self.config = config
        self.action_dim = config.action_shape[0]
        if config.goal_shape and "goal" not in self.required_streams:
            raise ConfigError(f"goal_shape: {self.name} reads no goal, expected (), got {config.goal_shape}")
        self.normalizer = Normalizer(config.obs_shape, config.normalize_obs)
        # The goal (goal_bc) is normalized on its own and joins the flattened observation.
        self.goal_normalizer = Normalizer(config.goal_shape or (1,), "per_feature" if config.goal_shape else "none")
        encoder_shape = stacked_shape(config.obs_shape, config.frame_stack)
        if config.encoder == "conv":
            self.encoder: ConvEncoder | CNNEncoder | MLPEncoder = ConvEncoder(
                encoder_shape, config.conv_channels, config.hidden_sizes
            )
        elif config.encoder == "cnn":
            self.encoder = CNNEncoder(encoder_shape, config.conv_channels, config.hidden_sizes)
        else:
            width = math.prod(encoder_shape) + (math.prod(config.goal_shape) if config.goal_shape else 0)
            self.encoder = MLPEncoder((width,), config.hidden_sizes)
        if config.freeze_encoder:
            freeze(self.encoder)
        self.head: ContinuousHead = make_head(config, self.encoder.out_dim, config.chunk * self.action_dim)
        self.register_buffer("action_low", -torch.ones(self.action_dim))
        self.register_buffer("action_high", torch.ones(self.action_dim))
        execute_steps = config.execute_steps or config.chunk
        self.chunker = ActionChunker(
            config.chunk, self.action_dim, config.execution, execute_steps, config.ensemble_decay
        )

    def prepare(self, dataset: Dataset) -> None:
        # Streamed over the file's chunks: a large column is not copied.
        self.normalizer.fit(dataset.column_chunks("obs"))
        if self.config.encoder_weights is not None:  # replaces the statistics too: the weights were fitted to them
            input_shape = stacked_shape(self.config.obs_shape, self.config.frame_stack)
            architecture = policy_architecture(self.config, input_shape)
            load_pretrained_encoder(self.config.encoder_weights, self.encoder, self.normalizer, architecture)
        if self.config.goal_shape:
            self.goal_normalizer.fit(dataset.column_chunks("goal"))
        low, high = feature_range(dataset.column_chunks("action"), (self.action_dim,))
        self.action_low.copy_(torch.from_numpy(low))
        self.action_high.copy_(torch.from_numpy(high))

    def sample_windows(self) -> dict[str, int | tuple[int, int]]:
        k, chunk = self.config.frame_stack, self.config.chunk
        windows: dict[str, int | tuple[int, int]] = {"action": chunk} if chunk > 1 else {}
        if k > 1:
            windows["obs"] = (k, 1 - k)  # the k frames ending at the sampled step
        return windows

    def normalize_action(self, actions: Tensor) -> Tensor:
        """Actions ``(..., A)`` mapped to [-1, 1] with the training range."""
        return actions_to_unit(actions, self.action_low, self.action_high)

    def unnormalize_action(self, actions: Tensor) -> Tensor:
        """Inverse of :meth:`normalize_action`, after clipping to [-1, 1]."""
        return actions_from_unit(actions, self.action_low, self.action_high)

    def features(self, inputs: dict[str, Tensor]) -> Tensor:
        """Encoded ``obs`` ``(B, *obs_shape)`` (and ``goal`` ``(B, *goal_shape)`` for goal_bc): ``(B, F)``.

        With ``frame_stack > 1``, ``obs`` is the frame stack ``(B, k, *obs_shape)``.
        """
        obs = self.normalizer(inputs["obs"])
        if self.config.frame_stack > 1:
            obs = obs.flatten(1, 2)
        if not self.config.goal_shape:
            return self.encoder(obs)
        if "goal" not in inputs:
            raise ConfigError(
                f"{self.name}: the policy reads a 'goal' input, which the env did not give; "
                "evaluate it on a goal-reaching env (e.g. avoiding-goal)"
            )
        goal = self.goal_normalizer(inputs["goal"])
        return self.encoder(torch.cat([obs.flatten(1), goal.flatten(1)], dim=1))

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        inputs, actions = batch, batch["action"]
        if self.config.random_shift:
            inputs = {**inputs, "obs": random_shift(batch["obs"], self.config.random_shift)}
        actions = self.normalize_action(actions).reshape(len(actions), -1)  # (B, k * A)
        return self.head.loss(self.features(inputs), actions)

    def predict_chunk(self, inputs: dict[str, Tensor]) -> Tensor:
        """One sampled chunk ``(B, k, A)`` of actions for the policy inputs (``obs`` ``(B, *obs_shape)``, ...)."""
        flat = self.head.sample(self.features(inputs))
        return self.unnormalize_action(flat.view(len(flat), self.config.chunk, self.action_dim))

    def initial_state(self, batch_size: int) -> ChunkQueue | tuple[Tensor, ChunkQueue | None] | None:
        """The chunk queue (``chunk > 1``); with ``frame_stack > 1``, ``(frames, queue)`` whose frame history
        ``(B, 0, *obs_shape)`` is empty; ``None`` when neither."""
        queue = self.chunker.initial_state(batch_size) if self.config.chunk > 1 else None
        if self.config.frame_stack == 1:
            return queue
        return torch.zeros((batch_size, 0, *self.config.obs_shape)), queue

    def act(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, Any]:
        if self.config.frame_stack > 1:
            history, queue = state if state is not None else (None, None)
            frames = push_frame(history, obs["obs"], self.config.frame_stack)
            action, queue = self._act_on({**obs, "obs": frames}, queue)
            return action, (frames, queue)
        return self._act_on(obs, state)

    def _act_on(self, obs: dict[str, Tensor], state: Any | None) -> tuple[Tensor, Any]:
        """``act`` on the encoder's inputs (the frame stack as ``obs`` with ``frame_stack > 1``)."""
        if self.config.chunk == 1:
            return self.predict_chunk(obs)[:, 0], None
        queue = state if state is not None else self.chunker.initial_state(len(obs["obs"]))
        return self.chunker.act(obs, queue, self.predict_chunk)

    def attack_scores(self, clean: dict[str, Tensor]) -> AttackScores:
        """The action ``(B, A)`` (a stochastic head's draw is reparameterized, so its gradient is that of the
        action given the noise); only ``chunk == 1`` and ``frame_stack == 1``, which act on this step alone."""
        if self.config.chunk != 1 or self.config.frame_stack != 1:
            raise ConfigError(
                f"attack: {self.name} with chunk={self.config.chunk}, frame_stack={self.config.frame_stack} acts "
                "from a queue of earlier predictions or a frame history; only chunk 1 and frame_stack 1 can be "
                "attacked per step"
            )
        return lambda inputs: self.predict_chunk(inputs)[:, 0]

    def export_module(self) -> nn.Module | None:
        # A frame stack is state that the ONNX model does not hold.
        return _ContinuousBCExport(self) if self.config.frame_stack == 1 else None


class _ContinuousBCExport(nn.Module):
    """``(obs[, goal], *noise) -> action`` (or ``action_chunk``): ``act``'s action given the head's draws.

    The inputs after ``obs`` (and ``goal`` for goal_bc, float32 ``(B, *goal_shape)``) are the head's random
    draws, named and shaped as ``head.noise_shapes()`` says (float32, ``(B, *shape)``; none for ``mse``):
    ``noise`` N(0, 1) for gaussian, gmm and diffusion (initial noise, then the per-step noise of the
    ancestral sampler), Exp(1) ``component_noise`` for gmm and ``bin_noise`` for binned. Fed the draws
    ``head.draw_noise`` makes, the model returns ``act``'s action. The action scaling is in the graph.

    With ``chunk > 1`` the output is ``action_chunk``, one predicted chunk ``(B, chunk, A)`` (what
    ``predict_chunk`` returns); the receding-horizon queue (or temporal ensembling) of ``act`` stays outside
    the graph.
    """

    def __init__(self, policy: ContinuousBCPolicy) -> None:
        super().__init__()
        self.policy = policy
        self.output_names = ("action",) if policy.config.chunk == 1 else ("action_chunk",)
        goal = {"goal": tuple(policy.config.goal_shape)} if policy.config.goal_shape else {}
        self.noise_names = tuple(policy.head.noise_shapes())
        self.extra_inputs: dict[str, tuple[int, ...]] = {**goal, **policy.head.noise_shapes()}

    def forward(self, obs: Tensor, *extra: Tensor) -> Tensor:
        inputs = dict(zip(self.extra_inputs, extra, strict=True))
        features = self.policy.features({"obs": obs, **inputs})
        flat = self.policy.head.sample_with(features, {name: inputs[name] for name in self.noise_names})
        config = self.policy.config
        chunk = self.policy.unnormalize_action(flat.view(flat.shape[0], config.chunk, self.policy.action_dim))
        return chunk[:, 0] if config.chunk == 1 else chunk
