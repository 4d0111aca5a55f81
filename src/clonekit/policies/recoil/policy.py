"""ReCOIL: offline imitation from a few expert steps plus arbitrary other data, without rewards.

Sikchi, Zheng, Zhang, Niekum, "Dual RL: Unification and New Methods for Reinforcement and Imitation
Learning" (ICLR 2024). Imitation is the occupancy matching ``min_pi D_f(beta d_pi + (1-beta) d_S ||
beta d_E + (1-beta) d_S)`` of *mixture* distributions: the policy's visitation ``d_pi`` and the expert's
``d_E`` are each mixed with the data's ``d_S`` (every step of the dataset, expert ones included) with weight
``beta``. Both mixtures share the support of ``d_S``, so the objective is defined whatever the other data
covers (no coverage assumption, no discriminator). Its Lagrangian dual over ``Q`` (dual-Q) is::

    min_Q  beta (1 - gamma) E_{d0}[V(s0)]  +  E_{d_E,mix}[ f*(y) ]  -  (1 - beta) E_{d_S}[ y ],
    y(s, a, s') = gamma (1 - terminated) V(s') - Q(s, a)

with ``f*`` the convex conjugate of the divergence's generator. What is implemented here:

* **f-divergence: Pearson chi^2**, ``f(x) = (x - 1)^2``, whose conjugate under ``x >= 0`` is
  ``f*(y) = y + y^2 / 4`` for ``y >= -2`` and ``-1`` below (the paper's stable choice; the reverse-KL
  alternative is XQL's Gumbel loss, which the authors note can diverge). Per step the optimum is a Bellman
  equation with the implicit reward ``-y = 2 beta / (beta + (1 - beta) p_E(s, a))`` on expert steps and 0
  elsewhere: ``Q`` rises where the expert acted and flows back to the states from which the data reaches it.
* **Samples from the three distributions come from one uniform batch**: ``d_S`` is the batch itself and an
  expert step of the batch stands for ``d_E`` with importance weight ``1 / p_E`` (``p_E``: the fraction of
  marked steps in the training data, a buffer fitted by ``prepare``), so ``E_{d_E,mix}[g] =
  E_batch[(beta * expert / p_E + 1 - beta) g]``. This assumes uniform step sampling (no ``sample_weights``).
* **V is an implicit maximizer** of ``Q`` over the dataset's actions (``V(s) ~ max_a Q(s, a)`` in place of
  ``Q(s', pi(s'))``, as the reference implementation and IQL do): expectile regression, expectile
  ``expectile`` (default 0.8), on the smaller of the two target ``Q`` networks. ``V`` is trained by that loss
  alone, so the initial-state term ``beta (1 - gamma) E_{d0}[V]`` (no gradient with respect to ``Q``) drops
  out. ``V(s')`` enters the ``Q`` loss detached.
* **Policy extraction by advantage weighting** (AWR, as in the paper and IQL): the actor maximizes
  ``E_{d_S}[min(exp(temperature * (Q_target(s, a) - V(s))), max_weight) log pi(a | s)]``, with weights
  detached; defaults ``beta = 0.5``, ``gamma = 0.99``, ``temperature = 3``, ``max_weight = 100``.
* Twin ``Q`` networks with Polyak-averaged targets (:mod:`clonekit.nn.critics`; rate ``target_rate`` per
  optimizer step, in :meth:`RecoilPolicy.after_optimizer_step`). ``Q``, ``V`` and actor losses are summed
  into one loss for the training loop's single optimizer; each reads the others' outputs detached, so each
  network gets only its own loss's gradient.

The next observation comes from the ``obs`` window ``(B, 2, ...)`` (``sample_windows``). The dataset stores
no observation after an episode's last step, so the window repeats it there: harmless after
``terminated`` (masked); after ``truncated`` it bootstraps ``V(s)`` in place of ``V(s')``. Actions: continuous
(scaled to [-1, 1] with the training range, as ``continuous_bc``) or discrete (``Q`` with one output per
action; categorical actor). ``act`` is deterministic (the actor's mean, heaviest component or argmax).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clonekit.data import Dataset
from clonekit.errors import DatasetError
from clonekit.nn import CategoricalHead, GaussianHead, GMMHead, MLPEncoder, Normalizer
from clonekit.nn.critics import TwinQ, expectile_loss
from clonekit.nn.encoders import mlp
from clonekit.nn.normalize import actions_from_unit, actions_to_unit, feature_range
from clonekit.policies.base import Policy
from clonekit.policies.recoil.config import RecoilConfig

# f*(y) of Pearson chi^2 is y + y^2/4 down to y = -2, where the optimal density ratio 1 + y/2 reaches 0.
CHI2_KINK = -2.0


def chi2_conjugate(y: Tensor) -> Tensor:
    """``f*(y)`` of ``f(x) = (x - 1)^2`` over ``x >= 0``: ``y + y^2 / 4`` for ``y >= -2``, else ``-1``."""
    return torch.where(y >= CHI2_KINK, y + y.square() / 4, torch.full_like(y, -1.0))


class RecoilPolicy(Policy):
    """ReCOIL: dual-RL imitation on expert/data mixtures (chi^2), ``V`` by expectile, actor by advantage
    weighting. Reads ``obs`` (with the next one), ``action``, ``terminated`` and the expert-marking stream
    ``config.expert_stream``; see the module docstring for the losses."""

    name = "recoil"
    required_streams: ClassVar[tuple[str, ...]] = ("obs", "action", "terminated")
    action_low: Tensor
    action_high: Tensor
    expert_fraction: Tensor

    @property
    def deterministic(self) -> bool:
        return True

    def __init__(self, config: RecoilConfig) -> None:
        super().__init__()
        self.config = config
        self.discrete = config.num_actions > 0
        self.action_dim = 1 if self.discrete else config.action_shape[0]
        self.normalizer = Normalizer(config.obs_shape, config.normalize_obs)
        width = math.prod(config.obs_shape)
        self.critic = TwinQ(width, config.num_actions or None, self.action_dim, config.hidden_sizes)
        self.value = mlp(width, config.hidden_sizes, 1)
        self.actor_encoder = MLPEncoder((width,), config.hidden_sizes)
        features = self.actor_encoder.out_dim
        self.head: CategoricalHead | GaussianHead | GMMHead
        if self.discrete:
            self.head = CategoricalHead(features, config.num_actions)
        elif config.head == "gmm":
            self.head = GMMHead(features, self.action_dim, config.gmm_components)
        else:
            self.head = GaussianHead(features, self.action_dim, learn_std=config.head == "gaussian")
        self.register_buffer("action_low", -torch.ones(self.action_dim))
        self.register_buffer("action_high", torch.ones(self.action_dim))
        self.register_buffer("expert_fraction", torch.ones(()))

    def batch_streams(self) -> tuple[str, ...]:
        return (*self.required_streams, self.config.expert_stream)

    def sample_windows(self) -> dict[str, int | tuple[int, int]]:
        return {"obs": 2}  # the step and the next one

    def prepare(self, dataset: Dataset) -> None:
        self.normalizer.fit(dataset.column_chunks("obs"))
        if not self.discrete:
            low, high = feature_range(dataset.column_chunks("action"), (self.action_dim,))
            self.action_low.copy_(torch.from_numpy(low))
            self.action_high.copy_(torch.from_numpy(high))
        name = self.config.expert_stream
        spec = dataset.streams[name]
        if spec.kind != "array" or spec.shape != () or np.dtype(spec.dtype).kind not in "biuf":
            raise DatasetError(
                f"{dataset.path}: stream {name!r} (expert_stream of policy 'recoil'): expected one number per "
                f"step (nonzero on expert steps), found {spec.describe()}"
            )
        marked = int(np.count_nonzero(np.asarray(dataset.column(name))))
        if marked == 0:
            raise DatasetError(
                f"{dataset.path}: stream {name!r} (expert_stream of policy 'recoil'): expected some expert "
                f"steps (nonzero), found none of {dataset.num_steps}"
            )
        self.expert_fraction.fill_(marked / dataset.num_steps)

    def features(self, obs: Tensor) -> Tensor:
        """Normalized, flattened observations ``(B, *obs_shape) -> (B, F)``."""
        return self.normalizer(obs).flatten(1)

    def normalize_action(self, actions: Tensor) -> Tensor:
        """Continuous actions ``(B, A)`` mapped to [-1, 1] with the training range; discrete ones as int64."""
        if self.discrete:
            return actions.long()
        return actions_to_unit(actions, self.action_low, self.action_high)

    def _log_likelihood(self, features: Tensor, actions: Tensor) -> Tensor:
        """Per-step ``log pi(a | s)`` ``(B,)`` (for ``mse``: minus the squared error, a unit-variance Gaussian's
        up to a constant)."""
        if isinstance(self.head, CategoricalHead):
            return -F.cross_entropy(self.head(features), actions, reduction="none")
        if isinstance(self.head, GMMHead):
            return self.head.log_prob(features, actions)
        mean, log_std = self.head(features)
        if not self.head.learn_std:
            return -(mean - actions).square().sum(-1)
        z = (actions - mean) / log_std.exp()
        return -(0.5 * z.square() + log_std + 0.5 * math.log(2 * math.pi)).sum(-1)

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        config = self.config
        window = batch["obs"]  # (B, 2, *obs_shape): the step and the next one
        features = self.features(window[:, 0])
        next_features = self.features(window[:, 1])
        actions = self.normalize_action(batch["action"])
        expert = (batch[config.expert_stream] != 0).float()
        alive = 1.0 - batch["terminated"].float()

        with torch.no_grad():
            next_value = self.value(next_features).squeeze(1)
            target_q = self.critic.target(features, actions)
        # Q: the chi^2 dual on the mixtures, samples of d_E weighted by 1 / p_E within the uniform batch.
        mix_weight = config.beta * expert / self.expert_fraction + (1 - config.beta)
        q_loss = features.new_zeros(())
        online = self.critic.online(features, actions)
        for q in online:
            y = config.discount * alive * next_value - q
            q_loss = q_loss + (mix_weight * chi2_conjugate(y) - (1 - config.beta) * y).mean()
        # V: implicit maximizer of the target Q over the dataset's actions.
        value = self.value(features).squeeze(1)
        v_loss = expectile_loss(target_q - value, config.expectile)
        # Actor: advantage-weighted likelihood.
        advantage = target_q - value.detach()
        weights = torch.exp(config.temperature * advantage).clamp(max=config.max_weight)
        log_likelihood = self._log_likelihood(self.actor_encoder(features), actions)
        actor_loss = -(weights * log_likelihood).mean()
        loss = q_loss + v_loss + actor_loss
        q_mean = online[0].detach()
        info = {
            "q_loss": float(q_loss.detach()),
            "v_loss": float(v_loss.detach()),
            "actor_loss": float(actor_loss.detach()),
            "q_expert": float((q_mean * expert).sum() / expert.sum().clamp_min(1)),
            "q_other": float((q_mean * (1 - expert)).sum() / (1 - expert).sum().clamp_min(1)),
            "weight_mean": float(weights.mean()),
        }
        return loss, info

    def after_optimizer_step(self, step: int) -> None:
        self.critic.update_target(self.config.target_rate)

    def predict(self, obs: Tensor) -> Tensor:
        """The action for observations ``(B, *obs_shape)``: ``(B, A)`` float32 or ``(B,)`` int64."""
        features = self.actor_encoder(self.features(obs))
        if isinstance(self.head, CategoricalHead):
            return self.head.mode(features)
        if isinstance(self.head, GMMHead):  # the heaviest component's mean, by gather (traceable at any batch size)
            logits, means, _ = self.head(features)
            index = logits.argmax(-1)[:, None, None].expand(-1, 1, means.shape[-1])
            mode = means.gather(1, index).squeeze(1)
        else:
            mode = self.head.mode(features)
        return actions_from_unit(mode, self.action_low, self.action_high)

    def act(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, Any]:
        return self.predict(obs["obs"]), None

    def action_logits(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, Any] | None:
        if not isinstance(self.head, CategoricalHead):
            return None
        return self.head(self.actor_encoder(self.features(obs["obs"]))), None

    def export_module(self) -> nn.Module | None:
        return _RecoilExport(self)


class _RecoilExport(nn.Module):
    """``obs -> action``: the actor alone (normalization and action scaling included)."""

    def __init__(self, policy: RecoilPolicy) -> None:
        super().__init__()
        self.policy = policy
        self.output_names = ("action",)
        self.extra_inputs: dict[str, tuple[int, ...]] = {}

    def forward(self, obs: Tensor) -> Tensor:
        return self.policy.predict(obs)
