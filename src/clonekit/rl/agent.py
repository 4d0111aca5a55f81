"""PPO's actor-critic, whose actor is a clonekit policy.

The actor *is* a ``bc`` policy (discrete actions: its logits are the categorical's) or a ``continuous_bc``
policy with the ``mse`` head (continuous actions: its output is the Gaussian's mean, in the policy's
[-1, 1]-scaled action units, with the env's action bounds as its action range). So a PPO run saves its actor
as that policy and every clonekit tool (``load_policy``, ``clonekit eval``, export) uses it unchanged; it acts
with the most likely action (argmax, or the mean). A BC prior of the same architecture can seed it directly.
The state-independent log standard deviation and the critic (a separate network) live beside it here.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import gymnasium
import numpy as np
import torch
from torch import Tensor, nn

from clonekit.errors import ConfigError
from clonekit.nn import ConvEncoder, MLPEncoder
from clonekit.nn.encoders import CNNEncoder
from clonekit.nn.gaussian import GaussianHead
from clonekit.policies import Policy
from clonekit.policies.bc import BCConfig, BCPolicy
from clonekit.policies.continuous_bc import ContinuousBCConfig, ContinuousBCPolicy

Actor = BCPolicy | ContinuousBCPolicy
HALF_LOG_2PI_E = 0.5 * math.log(2 * math.pi * math.e)
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def new_actor(
    obs_space: gymnasium.spaces.Box, action_space: gymnasium.Space, encoder: str, hidden_sizes: tuple[int, ...]
) -> Actor:
    """A freshly initialized actor for the spaces (orthogonal weights, a near-uniform first policy); ``encoder``
    as the policies' configs take it (``auto``, ``mlp``, ``conv``, ``cnn``)."""
    obs_shape = tuple(int(d) for d in obs_space.shape)
    actor: Actor
    common = {"encoder": encoder, "hidden_sizes": hidden_sizes, "normalize_obs": "none"}
    if isinstance(action_space, gymnasium.spaces.Discrete):
        actor = BCPolicy(BCConfig(obs_shape, int(action_space.n), **common))  # type: ignore[arg-type]
    else:
        assert isinstance(action_space, gymnasium.spaces.Box)
        low, high = np.asarray(action_space.low, np.float64), np.asarray(action_space.high, np.float64)
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ConfigError(f"env: action space: PPO needs finite Box bounds, found {action_space}")
        action_shape = (math.prod(action_space.shape),)
        actor = ContinuousBCPolicy(ContinuousBCConfig(obs_shape, action_shape, head="mse", **common))  # type: ignore[arg-type]
        actor.action_low.copy_(torch.from_numpy(low.ravel()))
        actor.action_high.copy_(torch.from_numpy(high.ravel()))
    orthogonal_init(actor.encoder, math.sqrt(2))
    orthogonal_init(actor.head, 0.01)  # small first logits / means: the first policy is near uniform / centred
    return actor


def check_actor(actor: Policy, obs_space: gymnasium.spaces.Box, action_space: gymnasium.Space, what: str) -> Actor:
    """``actor`` when it can be PPO's actor on these spaces; else a one-line ``ConfigError`` naming ``what``."""
    obs_shape = tuple(int(d) for d in obs_space.shape)
    if isinstance(action_space, gymnasium.spaces.Discrete):
        ok = isinstance(actor, BCPolicy) and actor.config.num_actions == int(action_space.n)
        expected = f"a bc policy with {int(action_space.n)} actions"
    else:
        dim = math.prod(action_space.shape or ())
        ok = isinstance(actor, ContinuousBCPolicy) and actor.config.action_shape == (dim,)
        expected = f"a continuous_bc policy with action_shape ({dim},)"
    if not ok:
        raise ConfigError(f"{what}: expected {expected} for env actions {action_space}, found {actor.name}")
    assert isinstance(actor, BCPolicy | ContinuousBCPolicy)
    if actor.config.obs_shape != obs_shape:
        raise ConfigError(f"{what}: expected obs_shape {obs_shape} (the env's), found {actor.config.obs_shape}")
    if actor.config.frame_stack != 1:
        raise ConfigError(
            f"{what}: frame_stack: expected 1 (PPO acts on one observation), found {actor.config.frame_stack}"
        )
    if isinstance(actor, ContinuousBCPolicy) and (
        actor.config.chunk != 1 or actor.config.head not in ("mse", "gaussian")
    ):
        raise ConfigError(
            f"{what}: expected head 'mse' or 'gaussian' with chunk 1, found head {actor.config.head!r}, "
            f"chunk {actor.config.chunk}"
        )
    return actor


def orthogonal_init(module: nn.Module, gain: float) -> None:
    """Orthogonal weights with ``gain`` and zero biases for every linear and conv layer in ``module``."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d):
            nn.init.orthogonal_(layer.weight, gain)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class ActorCritic(nn.Module):
    """``actor`` (a clonekit policy), a critic ``obs (B, *obs_shape) -> V (B,)`` on the actor's observation
    normalization, and for continuous actions a learned log standard deviation ``(A,)``.

    Actions here are what the buffer stores: int64 ``(B,)``, or float ``(B, A)`` in the actor's [-1, 1] units
    (unclipped draws; :meth:`env_action` clips and scales them for the env).
    """

    def __init__(self, actor: Actor, critic_hidden: tuple[int, ...], init_log_std: float) -> None:
        super().__init__()
        self.actor = actor
        self.continuous = isinstance(actor, ContinuousBCPolicy)
        config = actor.config
        if config.encoder == "mlp":
            self.critic_encoder: MLPEncoder | ConvEncoder | CNNEncoder = MLPEncoder(config.obs_shape, critic_hidden)
        elif config.encoder == "conv":
            self.critic_encoder = ConvEncoder(config.obs_shape, config.conv_channels, critic_hidden)
        else:
            self.critic_encoder = CNNEncoder(config.obs_shape, config.conv_channels, critic_hidden)
        self.critic_head = nn.Linear(self.critic_encoder.out_dim, 1)
        orthogonal_init(self.critic_encoder, math.sqrt(2))
        orthogonal_init(self.critic_head, 1.0)
        if isinstance(actor, ContinuousBCPolicy):
            self.log_std = nn.Parameter(torch.full((actor.action_dim,), float(init_log_std)))
        # ``value`` and ``distribution`` run the same modules as the nested calls (normalizer, encoder, head),
        # flattened into one sequence each: on PPO's small MLPs the nesting (module dispatch, attribute look-ups)
        # cost a fifth of the forward passes' time. Plain tuples, so the modules are not registered twice; hooks
        # on the leaf modules still run, hooks on the encoders and heads themselves do not.
        self._critic_layers: tuple[Callable[[Tensor], Tensor], ...] = (
            actor.normalizer,
            *self.critic_encoder.layers(),
            self.critic_head,
        )
        self._actor_layers = _actor_layers(actor)
        self._learned_std_head = isinstance(actor, ContinuousBCPolicy) and actor.config.head == "gaussian"

    def value(self, obs: Tensor) -> Tensor:
        """State values ``(B,)``."""
        x = obs
        for layer in self._critic_layers:
            x = layer(x)
        return x.squeeze(-1)

    def distribution(self, obs: Tensor) -> Tensor:
        """Logits ``(B, num_actions)``, or the Gaussian's mean ``(B, A)``."""
        if self._actor_layers is not None:
            x = obs
            for layer in self._actor_layers:
                x = layer(x)
            # A Gaussian head with a learned std outputs the log-std after the mean (GaussianHead.forward).
            return x[:, : self.actor.action_dim] if self._learned_std_head else x
        if isinstance(self.actor, ContinuousBCPolicy):
            return self.actor.head(self.actor.features({"obs": obs}))[0]
        return self.actor.head(self.actor.features(obs))

    def log_prob_entropy(self, params: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Log-probabilities ``(B,)`` of ``actions`` and entropies ``(B,)`` under ``params`` (see
        :meth:`distribution`)."""
        if self.continuous:
            z = (actions - params) / self.log_std.exp()
            log_prob = (-0.5 * z.square() - self.log_std - HALF_LOG_2PI).sum(-1)
            return log_prob, (self.log_std + HALF_LOG_2PI_E).sum().expand(len(params))
        log_p = torch.log_softmax(params, -1)
        return log_p.gather(1, actions.long()[:, None]).squeeze(1), -(log_p.exp() * log_p).sum(-1)

    def sample(self, obs: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """Draw actions for ``obs`` from ``generator``: ``(actions, log_probs (B,), values (B,))``."""
        params = self.distribution(obs)
        if self.continuous:
            noise = torch.randn(params.shape, generator=generator)
            actions = params + self.log_std.exp() * noise
        else:
            actions = torch.multinomial(torch.softmax(params, -1), 1, generator=generator).squeeze(1)
        log_prob, _ = self.log_prob_entropy(params, actions)
        return actions, log_prob, self.value(obs)

    def env_action(self, actions: Tensor) -> np.ndarray:
        """Buffer actions as the env takes them: clipped to [-1, 1] and scaled to the action bounds."""
        if isinstance(self.actor, ContinuousBCPolicy):
            return self.actor.unnormalize_action(actions).numpy().astype(np.float32)
        return actions.numpy()


def _actor_layers(actor: Actor) -> tuple[Callable[[Tensor], Tensor], ...] | None:
    """The modules :meth:`ActorCritic.distribution` runs, as one flat sequence, or ``None`` where the actor's
    features take more than one observation (a goal, a frame stack) or its head is not one linear layer."""
    if actor.config.frame_stack != 1:
        return None
    if isinstance(actor, BCPolicy):
        return (actor.normalizer, *actor.encoder.layers(), actor.head.linear)
    if actor.config.goal_shape or actor.config.chunk != 1 or not isinstance(actor.head, GaussianHead):
        return None
    return (actor.normalizer, *actor.encoder.layers(), actor.head.linear)
