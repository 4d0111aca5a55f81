"""Which transitions of a finished offline task a continual learner keeps for replay.

Both selections return an *order* over the task's steps: the replay buffer of a task holds a prefix of it, as
long as its share of the buffer (the share shrinks as more tasks arrive, so a prefix keeps what matters most).

* :func:`uniform_order`: a seeded random permutation (uniform replay: every step equally likely to be kept).
* :func:`model_based_order`: OER's Model-Based Experience Selection (Gai et al., *OER: Offline Experience
  Replay for Continual Offline Reinforcement Learning*, 2023). A forward dynamics model learned from the task's
  data rolls the *learned* policy out from the task's start states: at each step the policy acts, the model
  predicts the next observation, and the stored transition whose observation is nearest to the prediction
  (L2 over the flattened observation) is the one "visited"; the rollout continues from that real transition,
  so model errors do not compound. The steps the rollouts visit most come first (ties: the earlier first
  visit), then the unvisited ones in random order. The buffer so holds the stored experience that looks like
  the learned policy's own trajectories, instead of the data's behaviour distribution; equal stored observations
  are one entry (the first step that has it), so the buffer does not spend places on copies of a state.
"""

from __future__ import annotations

import numpy as np
import torch

from clonekit.data import Dataset
from clonekit.errors import ConfigError
from clonekit.policies import Policy
from clonekit.policies.dynamics import ForwardDynamicsModel


def uniform_order(num_steps: int, seed: int) -> np.ndarray:
    """A random order ``(num_steps,)`` int64 of the steps ``0 .. num_steps - 1`` drawn from ``seed``."""
    return np.random.default_rng(seed).permutation(num_steps).astype(np.int64)


def rollout_starts(dataset: Dataset, count: int, seed: int) -> np.ndarray:
    """``count`` start steps of model rollouts: the episodes' first steps (a seeded choice of them when there
    are more), then seeded random steps of the data when there are fewer episodes than ``count``."""
    rng = np.random.default_rng(seed)
    starts = np.asarray(dataset.episode_starts, dtype=np.int64)
    if len(starts) >= count:
        return np.sort(rng.choice(starts, size=count, replace=False))
    others = np.setdiff1d(np.arange(dataset.num_steps), starts)
    extra = rng.choice(others, size=min(count - len(starts), len(others)), replace=False)
    return np.concatenate([starts, np.sort(extra)])


def model_based_order(
    policy: Policy,
    model: ForwardDynamicsModel,
    dataset: Dataset,
    starts: np.ndarray,
    horizon: int,
    seed: int,
    chunk: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """OER's model-based order of ``dataset``'s steps (see the module docstring) and the visit count of every
    step ``(num_steps,)``: ``policy`` rolls out in ``model`` from the steps ``starts`` for at most ``horizon``
    steps each; a rollout ends at a stored step that ``terminated``, or when it comes back to a step it visited.
    ``policy`` must act on the observation alone (no recurrent state).
    """
    if policy.initial_state(1) is not None:
        raise ConfigError(
            f"replay 'oer': policy {policy.name!r} keeps a state between steps; OER needs one that acts on o_t"
        )
    obs = np.asarray(dataset.column("obs"))
    # The search runs over distinct observations, each standing for its first step, so that equal stored
    # states are one entry.
    _, representative = np.unique(obs.reshape(len(obs), -1), axis=0, return_index=True)
    distinct = torch.from_numpy(obs[representative].reshape(len(representative), -1).astype(np.float32))
    terminated = np.asarray(dataset.column("terminated"), dtype=bool)
    num_steps = len(obs)
    visits = np.zeros(num_steps, dtype=np.int64)
    first_visit = np.full(num_steps, np.iinfo(np.int64).max, dtype=np.int64)
    clock = 0
    current = np.asarray(starts, dtype=np.int64).copy()
    alive = np.ones(len(current), dtype=bool)
    seen = np.zeros((len(current), num_steps), dtype=bool)
    policy.eval()
    model.eval()
    with torch.inference_mode():
        for _ in range(horizon):
            rows = np.flatnonzero(alive)
            steps = current[rows]
            seen[rows, steps] = True
            np.add.at(visits, steps, 1)
            new = first_visit[steps] == np.iinfo(np.int64).max
            first_visit[steps[new]] = clock + np.arange(int(new.sum()))
            clock += int(new.sum())
            alive[rows] = ~terminated[steps]
            rows = np.flatnonzero(alive)
            if not len(rows):
                break
            state = torch.from_numpy(obs[current[rows]])
            action, _ = policy.act({"obs": state}, None)
            predicted = model.predict(state, action).reshape(len(rows), -1)
            nearest = representative[_nearest(predicted, distinct, chunk)]
            looped = seen[rows, nearest]
            alive[rows[looped]] = False
            current[rows[~looped]] = nearest[~looped]
    visited = np.flatnonzero(visits > 0)
    visited = visited[np.lexsort((first_visit[visited], -visits[visited]))]
    rest = np.flatnonzero(visits == 0)
    rest = rest[np.random.default_rng(seed).permutation(len(rest))]
    return np.concatenate([visited, rest]).astype(np.int64), visits


def _nearest(queries: torch.Tensor, stored: torch.Tensor, chunk: int) -> np.ndarray:
    """Index ``(Q,)`` of the nearest row of ``stored`` ``(N, F)`` to each query ``(Q, F)`` (L2; the first of
    equally near rows), computed over ``chunk`` stored rows at a time to bound memory."""
    best = torch.full((len(queries),), float("inf"))
    index = torch.zeros(len(queries), dtype=torch.int64)
    for first in range(0, len(stored), chunk):
        distance = torch.cdist(queries, stored[first : first + chunk])
        value, arg = distance.min(dim=1)
        better = value < best
        best = torch.where(better, value, best)
        index = torch.where(better, arg + first, index)
    return index.numpy()


def buffer_shares(buffer_size: int, num_tasks: int) -> list[int]:
    """How many replay transitions each of ``num_tasks`` earlier tasks keeps in a buffer of ``buffer_size``:
    equal shares, the remainder to the earliest tasks."""
    if num_tasks < 1:
        return []
    base, extra = divmod(buffer_size, num_tasks)
    return [base + (1 if k < extra else 0) for k in range(num_tasks)]


__all__ = ["buffer_shares", "model_based_order", "rollout_starts", "uniform_order"]
