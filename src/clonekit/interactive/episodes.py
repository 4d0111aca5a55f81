"""Play one round of interactive episodes: the policy acts, an intervener watches, labels or takes over.

Two ways to play (see :func:`play_round`):

* **mixing** (DAgger): the intervener labels every visited state; the expert's label runs with probability
  ``beta``, the policy's action otherwise. A slot the intervener can no longer label (its budget is spent)
  ends there, truncated, since an unlabelled DAgger step teaches nothing.
* **gated** (HG-DAgger, Sirius, RLIF): the policy runs and the intervener takes over while its rule fires; only
  the steps it controlled carry its label. Once its label budget is spent nobody can step in any more, so
  play stops there (the running episodes are truncated): steps nobody watched must not count as approved.

Every episode comes back with the streams ``obs``, ``action`` (what ran), ``reward``, ``terminated``,
``truncated``, ``intervention`` (the expert's action ran) and ``expert_action``: the expert's label where
it gave one (every step when mixing; intervention steps when gated) and the executed action elsewhere.
Actions may be discrete ``(B,)`` or continuous ``(B, A)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from clonekit.envs.family import EnvFamily
from clonekit.evaluation.rollout import step_success
from clonekit.interactive.interveners import Intervener
from clonekit.policies import Policy
from clonekit.seeding import derive_seed

Episode = dict[str, np.ndarray]


@dataclass
class RoundPlay:
    """What one round played: its episodes with their task indices, and the labels the expert gave."""

    episodes: list[tuple[Episode, int]]
    expert_labels: int
    success: list[bool] | None = None  # per episode, by the env's own rule; None: ended with a positive reward

    def stats(self) -> dict[str, int]:
        """Counts a person reads per round: episodes, steps, expert labels, intervention steps, successes."""
        success = self.success
        if success is None:
            success = [bool(e["terminated"][-1] and e["reward"][-1] > 0) for e, _ in self.episodes]
        return {
            "episodes": len(self.episodes),
            "steps": sum(len(e["action"]) for e, _ in self.episodes),
            "expert_labels": self.expert_labels,
            "intervention_steps": sum(int(e["intervention"].sum()) for e, _ in self.episodes),
            "successes": sum(success),
        }


def play_round(
    policy: Policy,
    family: EnvFamily,
    tasks: list[Any],
    episode_ids: np.ndarray,
    seed: int,
    intervener: Intervener,
    beta: float | None,
    env_kwargs: dict[str, Any] | None = None,
    max_steps: int | None = None,
) -> RoundPlay:
    """Play episodes ``episode_ids`` (episode ``k`` on ``tasks[k % len(tasks)]``) together in one batched env.

    ``beta`` ``None`` plays gated (the intervener decides when to take over); a number in ``[0, 1]`` plays
    mixing (see the module docstring). Start cells, the intervener's noise and the mixing draws are all
    seeded from ``seed`` and the first episode id, so the same call plays the same episodes. ``max_steps``
    cuts every episode after that many steps (truncated), so a lost policy spends no labels wandering.
    """
    ids = np.asarray(episode_ids, dtype=np.int64)
    task_index = ids % len(tasks)
    vec: Any = family.make_vec([tasks[i] for i in task_index], **(env_kwargs or {}))
    first = int(ids[0])
    obs = vec.reset(seed=derive_seed(seed, f"interactive:{first}"))
    intervener.reset(vec, derive_seed(seed, f"intervener:{first}"))
    mixing = np.random.default_rng(derive_seed(seed, f"beta:{first}"))
    labels_before = intervener.labels_used
    n = len(ids)
    state = policy.initial_state(n)
    active = np.ones(n, dtype=bool)
    steps: dict[str, list[np.ndarray]] = {}
    recorded: list[np.ndarray] = []
    success = np.zeros(n, dtype=bool)  # the env's own success rule (e.g. a return threshold) on the last step
    policy.eval()
    with torch.inference_mode():
        while active.any() and (max_steps is None or len(recorded) < max_steps):
            action_t, state = policy.act({"obs": torch.from_numpy(obs)}, state)
            proposed = action_t.cpu().numpy()
            if beta is None:
                if getattr(intervener, "labels_left", None) == 0:
                    break  # the budget is spent: nobody watches any more
                intervention, expert = intervener.step(obs, proposed, active)
                actions = _per_slot(intervention, expert, proposed)
                labels = actions
            else:
                labelled, expert = intervener.label(obs, active)
                active &= labelled  # no label left for the slot: its episode ends here
                if not active.any():
                    break
                intervention = active & (mixing.random(n) < beta)
                actions = _per_slot(intervention, expert, proposed)
                labels = expert
            next_obs, reward, terminated, truncated = vec.step(actions)
            record = {
                "obs": obs,
                "action": actions,
                "reward": reward,
                "terminated": terminated,
                "truncated": truncated,
                "intervention": intervention & active,
                "expert_action": labels,
            }
            for name, value in record.items():
                steps.setdefault(name, []).append(np.asarray(value))
            recorded.append(active.copy())
            success |= active & step_success(vec, terminated, reward)
            active &= ~(terminated | truncated)
            obs = next_obs
    close = getattr(vec, "close", None)
    if close is not None:
        close()
    lengths = np.stack(recorded).sum(axis=0) if recorded else np.zeros(n, dtype=np.int64)
    stacked = {name: np.stack(values, axis=1) for name, values in steps.items()}  # (B, T, ...)
    episodes, succeeded = [], []
    for slot in range(n):
        length = int(lengths[slot])
        if length == 0:  # the budget was spent before this episode's first step
            continue
        succeeded.append(bool(success[slot]))
        episode = {name: values[slot, :length].copy() for name, values in stacked.items()}
        if not (episode["terminated"][-1] or episode["truncated"][-1]):
            episode["truncated"][-1] = True  # cut short when the labels ran out
        episodes.append((episode, int(task_index[slot])))
    return RoundPlay(episodes, intervener.labels_used - labels_before, succeeded)


def _per_slot(mask: np.ndarray, chosen: np.ndarray, other: np.ndarray) -> np.ndarray:
    """``chosen`` where the slot's ``mask`` (B,) is set, ``other`` elsewhere, for actions ``(B, *action_shape)``."""
    mask = np.asarray(mask, dtype=bool).reshape(-1, *([1] * (np.ndim(other) - 1)))
    return np.where(mask, chosen, other)


__all__ = ["Episode", "RoundPlay", "play_round"]
