"""Transferability of demonstrations recorded under other dynamics: a per-episode score and sampling weights.

Demonstrations are often recorded under other dynamics than the ones a policy will be deployed in (another
robot's friction, a side wind, a slippery floor). A demonstrator who feels those dynamics acts for them, so its
actions, replayed under the target dynamics, lead elsewhere. This module measures, from data, how well each
source episode fits the **target** dynamics and turns that into a per-step ``weight`` stream for
``clonekit train ... --set sample_weights='"weight"'``.

Method (a forward-model likelihood, chosen over a DARC-style source/target classifier because it needs only a
few target transitions and no negatives, and because a classifier on ``(s, a, s')`` learns whatever separates
the two *sets*, including where they visit, whereas a dynamics residual looks only at how the world moved):

1. Transitions ``(s_t, a_t, s_{t+1})`` are taken inside episodes (the last step of an episode has no next
   state). A small MLP forward model predicts the state change ``s_{t+1} - s_t`` from ``(s_t, a_t)``, with
   inputs and outputs standardized by the target transitions' statistics; it is fitted (MSE) on the target
   transitions of all but ``holdout_fraction`` of the target episodes.
2. Its error on a transition is the mean squared standardized residual. The **calibration error** ``e0`` is
   its mean error on the held-out target episodes (transitions, when the target has a single episode): what a
   transition of the target dynamics costs this model, with no fitting to it; at least ``error_floor``.
3. An episode's **score** is its mean transition error divided by ``e0`` (about 1 for an episode of the
   target dynamics, larger the further its dynamics are), and its **weight** is
   ``min(1, exp(-(score - 1) / temperature))``: target-like episodes keep weight 1 and the weight halves for
   each ``0.69 * temperature`` of excess error. An episode of one step has no transition: score 1, weight 1.
4. The weight of every step of an episode is the episode's weight, multiplied by the source's own ``weight``
   stream when it has one (a curation's zeros stay zero).

:func:`write_transfer_weights` writes a copy of the source with that ``weight`` stream (atomically; the source
and the target are only read); ``meta.json`` ``extra["transfer"]`` records the target, the settings, ``e0``
and every episode's score and weight. CLI: ``clonekit transfer-weights DATA --target TARGET --out DATA2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from clonekit.config import check, config_to_json
from clonekit.data import Dataset, DatasetWriter, array_stream
from clonekit.data.formats.source import python_scalar
from clonekit.errors import DatasetError

WEIGHT_STREAM = array_stream("weight", "float32", (), "sampling weight (transferability to the target dynamics)")


@dataclass(frozen=True)
class TransferConfig:
    """Settings of the transferability score (see the module docstring).

    Args:
        hidden_sizes: Widths of the forward model's MLP layers; ``()``: the linear map alone.
        steps: Gradient steps of the forward model's MLP (the linear map is solved in closed form).
        batch_size: Target transitions per gradient step.
        lr: Adam learning rate.
        holdout_fraction: Fraction of the target episodes held out of the fit to measure the calibration error
            (at least one episode; with a single target episode, that fraction of its transitions).
        temperature: Excess error (in units of the calibration error) over which a weight falls by ``e``.
        error_floor: Least calibration error (mean squared standardized residual): on (near) deterministic
            target dynamics the held-out error is rounding noise, and a ratio to it would blow small fitting
            wobbles of the target's own episodes up into low weights. 1e-3: a residual of about 3% of the
            state change's spread.
        seed: Seed of the forward model's initialization, batches and hold-out draw.
    """

    hidden_sizes: tuple[int, ...] = (64, 64)
    steps: int = 1000
    batch_size: int = 256
    lr: float = 1e-3
    holdout_fraction: float = 0.2
    temperature: float = 1.0
    error_floor: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        check(all(w >= 1 for w in self.hidden_sizes), "hidden_sizes", "widths >= 1 (none: linear)", self.hidden_sizes)
        for name in ("steps", "batch_size"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check(self.lr > 0, "lr", "> 0", self.lr)
        check(0 < self.holdout_fraction < 1, "holdout_fraction", "in (0, 1)", self.holdout_fraction)
        check(self.temperature > 0, "temperature", "> 0", self.temperature)
        check(self.error_floor > 0, "error_floor", "> 0", self.error_floor)


@dataclass
class TransferScores:
    """Per-episode transferability of a source dataset to a target's dynamics.

    Args:
        score: ``(E,)`` mean transition error of each source episode over the calibration error (about 1:
            target-like; larger: further from the target dynamics).
        weight: ``(E,)`` sampling weight in ``[0, 1]`` of each episode (``min(1, exp(-(score - 1) / T))``).
        calibration_error: Mean error of the forward model on held-out target transitions.
        fit_error: Mean error on the target transitions it was fitted on.
    """

    score: np.ndarray
    weight: np.ndarray
    calibration_error: float
    fit_error: float


def _transitions(dataset: Dataset, role: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(s, a, s', episode)`` of every within-episode transition, flattened to float64 ``(N, D)``."""
    dataset.require_streams(("obs", "action"), f"transferability ({role})")
    for name in ("obs", "action"):
        spec = dataset.streams[name]
        if spec.kind != "array" or spec.dtype.startswith(("bool", "str")):
            raise DatasetError(f"{dataset.path}: stream {name!r} must hold numbers, found {spec.describe()}")
    if "action" in dataset.spaces and isinstance(dataset.space("action"), gym.spaces.Discrete):
        raise DatasetError(f"{dataset.path}: transferability needs continuous (Box) actions, found Discrete")
    obs = np.asarray(dataset.column("obs"), dtype=np.float64).reshape(dataset.num_steps, -1)
    action = np.asarray(dataset.column("action"), dtype=np.float64).reshape(dataset.num_steps, -1)
    episode = dataset.episode_index()
    # Step t has a next state when step t + 1 belongs to the same episode.
    has_next = np.flatnonzero(episode[:-1] == episode[1:])
    return obs[has_next], action[has_next], obs[has_next + 1], episode[has_next]


class _ForwardModel(nn.Module):
    """``(s, a) -> s' - s`` in standardized units (statistics from the target transitions): a linear map plus
    an MLP, so the near-linear part of most dynamics is fitted in few steps and the MLP adds the rest."""

    def __init__(self, s: np.ndarray, a: np.ndarray, delta: np.ndarray, hidden_sizes: tuple[int, ...]) -> None:
        super().__init__()
        inputs = np.concatenate([s, a], axis=1)
        # Plain tensors, not buffers: the model lives only for one scoring call and is never saved.
        self.in_mean = torch.as_tensor(inputs.mean(0), dtype=torch.float32)
        self.in_std = torch.as_tensor(inputs.std(0) + 1e-6, dtype=torch.float32)
        self.out_mean = torch.as_tensor(delta.mean(0), dtype=torch.float32)
        self.out_std = torch.as_tensor(delta.std(0) + 1e-6, dtype=torch.float32)
        layers: list[nn.Module] = []
        width = inputs.shape[1]
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        # No hidden layer: the linear map alone (for a handful of target transitions, where an MLP extrapolates).
        last = nn.Linear(width, delta.shape[1])
        nn.init.zeros_(last.weight)  # starts at 0: it moves only where the linear map leaves a residual
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last) if hidden_sizes else None
        self.linear = nn.Linear(inputs.shape[1], delta.shape[1]).requires_grad_(False)

    def fit_linear(self, inputs: torch.Tensor, target: torch.Tensor, ridge: float = 1e-6) -> None:
        """Set the linear map to the (ridge) least-squares fit of ``target`` on ``inputs``, both standardized."""
        x = torch.cat([inputs, torch.ones(len(inputs), 1)], dim=1).double()
        gram = x.T @ x + ridge * len(x) * torch.eye(x.shape[1], dtype=torch.float64)
        solution = torch.linalg.solve(gram, x.T @ target.double())  # (S + A + 1, S)
        self.linear.weight.copy_(solution[:-1].T.float())
        self.linear.bias.copy_(solution[-1].float())

    def standardize(self, s: np.ndarray, a: np.ndarray, next_s: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Model inputs ``(N, S + A)`` and targets ``(N, S)`` of transitions, standardized."""
        inputs = torch.as_tensor(np.concatenate([s, a], axis=1), dtype=torch.float32)
        target = (torch.as_tensor(next_s - s, dtype=torch.float32) - self.out_mean) / self.out_std
        return (inputs - self.in_mean) / self.in_std, target

    def errors(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``(N,)`` mean squared standardized residual of each standardized transition."""
        predicted = self.linear(inputs) if self.net is None else self.linear(inputs) + self.net(inputs)
        return ((predicted - target) ** 2).mean(dim=1)


def transfer_scores(source: Dataset, target: Dataset, config: TransferConfig | None = None) -> TransferScores:
    """Score every episode of ``source`` by how well it fits the dynamics of ``target`` (module docstring).

    Both datasets need ``obs`` and continuous ``action`` streams of the same shapes; ``target`` needs at least
    two transitions (episodes of two or more steps).
    """
    config = config or TransferConfig()
    s, a, next_s, episode = _transitions(target, "target")
    src_s, src_a, src_next, src_episode = _transitions(source, "source")
    if s.shape[1:] != src_s.shape[1:] or a.shape[1:] != src_a.shape[1:]:
        raise DatasetError(
            f"{source.path}: observation/action sizes {src_s.shape[1]}/{src_a.shape[1]} differ from the target "
            f"{target.path}'s {s.shape[1]}/{a.shape[1]}"
        )
    if len(s) < 2:
        raise DatasetError(f"{target.path}: expected at least 2 transitions of the target dynamics, found {len(s)}")
    rng = np.random.default_rng(config.seed)
    episodes = np.unique(episode)
    if len(episodes) >= 2:
        held = rng.choice(episodes, max(1, round(config.holdout_fraction * len(episodes))), replace=False)
        holdout = np.isin(episode, held)
    else:
        holdout = np.zeros(len(s), dtype=bool)
        holdout[rng.choice(len(s), max(1, round(config.holdout_fraction * len(s))), replace=False)] = True
    fit = ~holdout

    generator = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = _ForwardModel(s[fit], a[fit], next_s[fit] - s[fit], config.hidden_sizes)
    inputs, targets = model.standardize(s, a, next_s)
    fit_index = torch.as_tensor(np.flatnonzero(fit))
    with torch.no_grad():
        model.fit_linear(inputs[fit_index], targets[fit_index])
    if model.net is not None:
        optimizer = torch.optim.Adam(model.net.parameters(), lr=config.lr)
        for _ in range(config.steps):
            pick = fit_index[torch.randint(len(fit_index), (config.batch_size,), generator=generator)]
            loss = model.errors(inputs[pick], targets[pick]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    with torch.no_grad():
        target_errors = model.errors(inputs, targets).numpy().astype(np.float64)
        fit_error = float(target_errors[fit].mean())
        calibration = max(float(target_errors[holdout].mean()), config.error_floor)
        errors = model.errors(*model.standardize(src_s, src_a, src_next)).numpy().astype(np.float64)
    total = np.bincount(src_episode, weights=errors, minlength=source.num_episodes)
    count = np.bincount(src_episode, minlength=source.num_episodes)
    score = np.where(count > 0, total / np.maximum(count, 1) / calibration, 1.0)
    weight = np.minimum(1.0, np.exp(-(score - 1.0) / config.temperature))
    return TransferScores(score=score, weight=weight, calibration_error=calibration, fit_error=fit_error)


def write_transfer_weights(
    source: Dataset,
    target: Dataset,
    out: str | Path,
    config: TransferConfig | None = None,
    overwrite: bool = False,
) -> tuple[Dataset, TransferScores]:
    """Write ``source`` with a ``weight`` stream of its transferability to ``target``'s dynamics to ``out``.

    Returns the new dataset and the scores. Everything else (streams, episode info, splits, env) is copied;
    ``extra["transfer"]`` records the target, the settings and the per-episode scores and weights.
    """
    config = config or TransferConfig()
    scores = transfer_scores(source, target, config)
    previous = source.streams.get(WEIGHT_STREAM.name)
    if previous is not None and (
        previous.kind != "array" or previous.shape != () or previous.dtype.startswith(("bool", "str"))
    ):
        raise DatasetError(f"{source.path}: stream 'weight' must hold one number per step, found {previous.describe()}")
    streams = [spec for name, spec in source.streams.items() if name != WEIGHT_STREAM.name] + [WEIGHT_STREAM]
    info_names = list(source.meta.get("episode_info", []))
    extra: dict[str, Any] = {
        **source.extra,
        "transfer": {
            "target": str(target.path),
            "target_fingerprint": target.fingerprint,
            "source_fingerprint": source.fingerprint,
            "config": config_to_json(config),
            "calibration_error": scores.calibration_error,
            "fit_error": scores.fit_error,
            "score": [float(x) for x in scores.score],
            "weight": [float(x) for x in scores.weight],
            "multiplied_existing_weight": previous is not None,
        },
    }
    writer = DatasetWriter(
        out, streams, spaces=source.spaces, env=source.env, episode_info=info_names, extra=extra, overwrite=overwrite
    )
    with writer:
        for k in range(source.num_episodes):
            steps: dict[str, Any] = dict(source.episode(k))
            length = int(source.episode_lengths[k])
            base = np.asarray(steps[WEIGHT_STREAM.name], dtype=np.float64) if previous is not None else np.ones(length)
            steps[WEIGHT_STREAM.name] = (base * scores.weight[k]).astype(np.float32)
            info = {n: python_scalar(f"{source.path}: episode {k}", source.episode_info(n)[k]) for n in info_names}
            writer.add_episode(steps, info)
        return writer.close(), scores


def separation_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Probability that a random ``positive`` value exceeds a random ``negative`` one (ties count half): the
    area under the ROC curve of telling the two groups apart by the value."""
    positive = np.asarray(positive, dtype=np.float64)
    negative = np.asarray(negative, dtype=np.float64)
    if len(positive) == 0 or len(negative) == 0:
        raise ValueError("separation_auc needs at least one value in each group")
    greater = (positive[:, None] > negative[None]).mean()
    ties = (positive[:, None] == negative[None]).mean()
    return float(greater + 0.5 * ties)


__all__ = ["TransferConfig", "TransferScores", "separation_auc", "transfer_scores", "write_transfer_weights"]
