"""Automatic Discount Scheduling (ADS) for imitation from observation (after Liu et al., ICLR 2024).

With a reward learned from expert observations (e.g. GAIfO's discriminator, :mod:`clonekit.rl.adversarial`), a
high discount early in training lets the rewards of the later part of the expert's behaviour, which the agent
cannot reach yet, drown the signal for mastering the early part. ADS starts with a low discount and raises it
as the agent's *progress* along the expert's observation sequences grows:

    gamma = min(gamma_max, alpha ** (1 / max(progress, 1)))

so the effective horizon ``1 / (1 - gamma)`` is about ``progress / ln(1 / alpha)`` steps: the agent looks about
as far ahead as it already follows the expert.

Progress (our own measure, in the spirit of the paper's order-respecting matching): an agent episode matches a
prefix of an expert episode when it passes, in order, near each expert observation of that prefix.
:func:`matched_prefix` walks the agent's observations with a pointer ``j`` into the expert's sequence; at each
agent step, if one of the expert observations ``j .. j + window - 1`` lies within ``tolerance`` (Euclidean
distance of observations standardized with the expert's statistics), ``j`` moves past the furthest such one
(so an agent faster than the expert may skip a few expert states, a slower one simply waits). An episode's
progress is its longest matched prefix over the expert episodes; a rollout's is the mean over the episodes
that ended in it, and the schedule's progress is the running maximum of those means (the discount never
drops back). Episodes that span rollouts keep their pointers (part of the checkpointed state).

:class:`ScheduledDiscount` wraps any PPO reward model (:class:`clonekit.rl.ppo.RewardModel`) and is passed to
``train_ppo(reward_model=..., discount=wrapper.discount)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from clonekit.errors import CheckpointError, ConfigError
from clonekit.rl.agent import ActorCritic
from clonekit.rl.ppo import RewardModel, Rollout


def ads_discount(progress: float, alpha: float, gamma_max: float) -> float:
    """``min(gamma_max, alpha ** (1 / max(progress, 1)))``: the discount at ``progress`` matched expert steps."""
    return min(gamma_max, alpha ** (1.0 / max(progress, 1.0)))


def _advance(
    pointers: np.ndarray, obs: np.ndarray, padded: np.ndarray, lengths: np.ndarray, tolerance: float, window: int
) -> np.ndarray:
    """One agent step: pointers ``(B, M)`` into ``M`` expert sequences ``padded`` ``(M, L + window, D)`` (rows
    past each length are ``inf``), agent observations ``obs`` ``(B, D)`` (standardized) -> new pointers."""
    offsets = pointers[:, :, None] + np.arange(window)  # (B, M, W)
    rows = padded[np.arange(padded.shape[0])[None, :, None], offsets]  # (B, M, W, D)
    near = np.linalg.norm(rows - obs[:, None, None, :], axis=-1) <= tolerance
    near &= offsets < lengths[None, :, None]
    furthest = np.where(near, offsets + 1, 0).max(-1)
    return np.maximum(pointers, furthest)


def _pad(sequences: list[np.ndarray], window: int) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    dim = sequences[0].shape[1]
    padded = np.full((len(sequences), int(lengths.max()) + window, dim), np.inf)
    for m, seq in enumerate(sequences):
        padded[m, : len(seq)] = seq
    return padded, lengths


def matched_prefix(agent: np.ndarray, expert: np.ndarray, tolerance: float, window: int = 1) -> int:
    """The length of the prefix of ``expert`` ``(L, D)`` that ``agent`` ``(T, D)`` follows in order (see the
    module docstring; both already in the units ``tolerance`` is in). ``window=1``: no expert step skipped."""
    if window < 1:
        raise ConfigError(f"window: expected >= 1, got {window}")
    padded, lengths = _pad([np.asarray(expert, dtype=np.float64)], window)
    pointers = np.zeros((1, 1), dtype=np.int64)
    for step in np.asarray(agent, dtype=np.float64):
        pointers = _advance(pointers, step[None], padded, lengths, tolerance, window)
    return int(pointers[0, 0])


class ScheduledDiscount:
    """A reward model (:class:`clonekit.rl.ppo.RewardModel`) that passes ``inner``'s rewards through and keeps
    the ADS progress of the agent's rollouts; :meth:`discount` is PPO's ``discount`` schedule.

    ``expert`` is the list of expert episodes' observations, each ``(L_m, D)``; ``obs_mean``/``obs_std``
    ``(D,)`` standardize both sides; ``num_envs`` is PPO's (the pointers of episodes spanning rollouts).
    """

    def __init__(
        self,
        inner: RewardModel,
        expert: list[np.ndarray],
        obs_mean: np.ndarray,
        obs_std: np.ndarray,
        num_envs: int,
        alpha: float,
        gamma_max: float,
        tolerance: float,
        window: int,
    ) -> None:
        if not expert or any(len(e) == 0 for e in expert):
            raise ConfigError("demos: expected at least one non-empty expert episode for ADS")
        if not (0.0 < alpha < 1.0):
            raise ConfigError(f"ads_alpha: expected a number in (0, 1), got {alpha}")
        self.inner = inner
        self.mean, self.std = np.asarray(obs_mean, np.float64), np.asarray(obs_std, np.float64)
        self.padded, self.lengths = _pad([(np.asarray(e, np.float64) - self.mean) / self.std for e in expert], window)
        self.alpha, self.gamma_max, self.tolerance, self.window = alpha, gamma_max, tolerance, window
        self.pointers = np.zeros((num_envs, len(expert)), dtype=np.int64)
        self.progress = 0.0

    def discount(self) -> float:
        """The discount of the coming PPO iteration (from the progress so far)."""
        return ads_discount(self.progress, self.alpha, self.gamma_max)

    def rewards(self, rollout: Rollout, agent: ActorCritic) -> tuple[Tensor, dict[str, float]]:
        """``inner``'s rewards ``(T, N)``; also advances the progress with ``rollout`` (needs ``ended``)."""
        rewards, info = self.inner.rewards(rollout, agent)
        if rollout.ended is None:
            raise ConfigError("ADS: the rollout carries no episode ends (ended); PPO fills it in")
        t_len, n = rollout.ended.shape
        obs = rollout.obs.reshape(t_len, n, -1).double().numpy()
        ended = rollout.ended.numpy()
        finished: list[float] = []
        for t in range(t_len):
            self.pointers = _advance(
                self.pointers, (obs[t] - self.mean) / self.std, self.padded, self.lengths, self.tolerance, self.window
            )
            for i in np.flatnonzero(ended[t]):
                finished.append(float(self.pointers[i].max()))
                self.pointers[i] = 0
        if finished:
            self.progress = max(self.progress, float(np.mean(finished)))
            info = info | {"ads_episode_progress": float(np.mean(finished))}
        return rewards, info | {"ads_progress": self.progress}

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """``inner``'s state plus the progress and the open episodes' pointers."""
        tensors, rest = self.inner.state()
        tensors = tensors | {"ads.pointers": torch.from_numpy(self.pointers.copy())}
        return tensors, {"inner": rest, "ads_progress": self.progress}

    def load_state(self, tensors: dict[str, Tensor], rest: dict[str, Any]) -> None:
        """Restore :meth:`state`."""
        if "ads_progress" not in rest or "ads.pointers" not in tensors:
            raise CheckpointError("checkpoint: expected an ADS state (ads_progress, ads.pointers), found none")
        pointers = tensors["ads.pointers"].numpy()
        if pointers.shape != self.pointers.shape:
            raise CheckpointError(f"checkpoint: ADS pointers of shape {pointers.shape}, expected {self.pointers.shape}")
        self.inner.load_state({k: v for k, v in tensors.items() if k != "ads.pointers"}, rest["inner"])
        self.pointers = pointers.astype(np.int64).copy()
        self.progress = float(rest["ads_progress"])
        if not math.isfinite(self.progress):
            raise CheckpointError(f"checkpoint: ads_progress: expected a finite number, got {self.progress}")


__all__ = ["ScheduledDiscount", "ads_discount", "matched_prefix"]
