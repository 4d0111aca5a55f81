"""Configuration of ReCOIL: offline imitation from a few expert steps plus arbitrary other data (no rewards)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from clonekit.config import check


@dataclass(frozen=True)
class RecoilConfig:
    """ReCOIL (Sikchi et al., ICLR 2024): twin ``Q``, a value ``V`` and an actor, learned from every step of a
    dataset in which a per-step stream marks the expert's steps (see :mod:`clonekit.policies.recoil.policy`).

    Args:
        obs_shape: Shape of one observation (any shape; flattened). Filled in from the dataset.
        num_actions: Number of discrete actions; 0 for continuous actions. Filled in from the dataset.
        action_shape: Shape ``(A,)`` of one continuous action; ``()`` for discrete actions. Filled in from the
            dataset.

        hidden_sizes: Widths of the MLPs of each ``Q`` network, of ``V`` and of the actor.
        normalize_obs: ``"per_feature"`` (fitted on the training data) or ``"none"``.
        head: The actor's head for continuous actions: ``"mse"`` (a mean, weighted regression), ``"gaussian"``
            (diagonal Gaussian) or ``"gmm"`` (Gaussian mixture), each trained by advantage-weighted likelihood
            and acting with its mean (the heaviest component's for ``gmm``). Discrete actions: a categorical.
        gmm_components: Mixture components of the ``gmm`` head.

        expert_stream: The per-step stream that marks expert steps: any numeric scalar stream, nonzero on the
            expert's steps (e.g. a 0/1 ``expert`` stream, or ``intervention``). At least one step must be marked.
        beta: Mixing weight ``beta`` of the mixture distributions ``beta * d_E + (1 - beta) * d_S`` (expert
            mixed with all data) and ``beta * d_pi + (1 - beta) * d_S``, in (0, 1).
        discount: Discount ``gamma`` of the Bellman flow constraints, in (0, 1).
        expectile: Expectile of the implicit maximizer ``V(s) ~ max_a Q(s, a)`` over the dataset's actions, in
            [0.5, 1).
        temperature: Inverse temperature of the advantage weights ``exp(temperature * (Q - V))`` of the actor.
            ``Q`` grows towards its scale (the implicit reward is at most 2 per expert step, so up to about
            ``2 / (1 - discount)``) as training goes on, and the weights sharpen with it: on ``avoiding-mixed``
            0.5 did better than 3 over 5,000 steps (see the README).
        max_weight: Upper clip of the advantage weights.
        target_rate: Polyak rate of the target ``Q`` networks per optimizer step, in (0, 1].
    """

    obs_shape: tuple[int, ...]
    num_actions: int = 0
    action_shape: tuple[int, ...] = ()

    hidden_sizes: tuple[int, ...] = (256, 256)
    normalize_obs: Literal["none", "per_feature"] = "per_feature"
    head: Literal["mse", "gaussian", "gmm"] = "mse"
    gmm_components: int = 5

    expert_stream: str = "expert"
    beta: float = 0.5
    discount: float = 0.99
    expectile: float = 0.8
    temperature: float = 3.0
    max_weight: float = 100.0
    target_rate: float = 0.005

    def __post_init__(self) -> None:
        check(
            len(self.obs_shape) >= 1 and all(d > 0 for d in self.obs_shape),
            "obs_shape",
            "a non-empty shape of positive sizes",
            self.obs_shape,
        )
        check(
            (self.num_actions >= 2) != (len(self.action_shape) == 1 and 0 < self.action_shape[0] <= 65536),
            "num_actions, action_shape",
            "num_actions >= 2 (discrete) or action_shape (A,) with A in [1, 65536] (continuous), not both",
            (self.num_actions, self.action_shape),
        )
        check(self.num_actions <= 65536, "num_actions", "at most 65536", self.num_actions)
        check(
            1 <= len(self.hidden_sizes) <= 16 and all(0 < s <= 65536 for s in self.hidden_sizes),
            "hidden_sizes",
            "1 to 16 widths in [1, 65536]",
            self.hidden_sizes,
        )
        check(self.normalize_obs in ("none", "per_feature"), "normalize_obs", "none|per_feature", self.normalize_obs)
        check(self.head in ("mse", "gaussian", "gmm"), "head", "mse|gaussian|gmm", self.head)
        check(1 <= self.gmm_components <= 256, "gmm_components", "in [1, 256]", self.gmm_components)
        check(
            isinstance(self.expert_stream, str) and self.expert_stream.strip() != "",
            "expert_stream",
            "a stream name",
            self.expert_stream,
        )
        check(0 < self.beta < 1, "beta", "in (0, 1)", self.beta)
        check(0 < self.discount < 1, "discount", "in (0, 1)", self.discount)
        check(0.5 <= self.expectile < 1, "expectile", "in [0.5, 1)", self.expectile)
        check(
            math.isfinite(self.temperature) and self.temperature >= 0,
            "temperature",
            "a finite number >= 0",
            self.temperature,
        )
        check(
            math.isfinite(self.max_weight) and self.max_weight >= 1,
            "max_weight",
            "a finite number >= 1",
            self.max_weight,
        )
        check(0 < self.target_rate <= 1, "target_rate", "in (0, 1]", self.target_rate)
