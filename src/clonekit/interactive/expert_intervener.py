"""A simulated intervener built from any clonekit expert: it steps in where the policy strays from the expert.

:class:`ExpertIntervener` asks an :class:`clonekit.experts.Expert` (e.g. ``make_expert("metaworld",
"scripted")``) for its action on every slot at every step and compares it with the policy's proposal:

* **threshold**: for continuous (Box) actions the rule fires when the L2 distance between the proposal
  (clipped to the action space, as the env clips it) and the expert's action is ``>= threshold``, in action
  units; for discrete actions it fires whenever the proposal differs from the expert's action.
* **reaction delay**: the person takes over ``delay`` steps after the rule fired (the policy's own actions
  run meanwhile); in control, it acts at least once and hands back as soon as the rule no longer fires.
* **optimality** (``expert_noise``): continuous: Gaussian noise of that standard deviation is added to every
  action the person takes and every label it gives, clipped to the action space; discrete: with that
  probability the action is replaced by a uniformly drawn *other* action. The rule itself judges against
  the expert's clean action (the person knows what is right, and executes it imperfectly).
* **budget**: at most ``label_budget`` labels in all (``None``: no limit). A state is labelled once: asked
  again about an observation it labelled, or was told of with :meth:`ExpertIntervener.remember`, it repeats
  that label for free. Continuous states rarely repeat exactly, so this mostly matters for discrete envs.

The expert's own per-episode state (e.g. the Avoiding expert's path, the Meta-World scripted policy of each
slot's task) is reset with every wave, from the seed given to :meth:`ExpertIntervener.reset`; so are the
intervener's noise draws, so a wave replays exactly. An expert that acts on the env's state rather than its
pictures reads it from the vec env's ``state_env`` (as :func:`clonekit.experts.collect.collect` does).

A caveat for multimodal experts: the Avoiding expert commits to one of its 8 paths per episode, so it judges
a policy on another valid path as wrong and steers it across (see the ``continuous-interactive``
experiment's module docstring for the measurement); unimodal experts (Meta-World's scripted policies) suit
this rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from clonekit.config import check
from clonekit.errors import ConfigError
from clonekit.experts.outside import Expert
from clonekit.interactive.interveners import SimulatedPerson
from clonekit.seeding import derive_seed


@dataclass(frozen=True)
class ExpertIntervenerConfig:
    """Quality of an expert-backed simulated intervener (see the module docstring for the rules).

    Args:
        threshold: Continuous actions: take over when the proposal is at least this far (L2, in action units)
            from the expert's action. Discrete actions take over at any disagreement and ignore it.
        delay: Steps between the rule firing and the take-over (reaction time).
        expert_noise: Continuous: standard deviation of Gaussian noise on the actions taken and labels given;
            discrete: probability that one of them is a uniformly drawn wrong action.
        label_budget: Labels in all (take-over steps plus requested labels); None for no limit.
    """

    threshold: float = 0.5
    delay: int = 0
    expert_noise: float = 0.0
    label_budget: int | None = None

    def __post_init__(self) -> None:
        check(self.threshold > 0 and np.isfinite(self.threshold), "threshold", "a finite number > 0", self.threshold)
        check(self.delay >= 0, "delay", ">= 0", self.delay)
        check(self.expert_noise >= 0 and np.isfinite(self.expert_noise), "expert_noise", ">= 0", self.expert_noise)
        check(self.label_budget is None or self.label_budget >= 0, "label_budget", "null or >= 0", self.label_budget)


class ExpertIntervener(SimulatedPerson):
    """A simulated person that judges the policy's proposals against an expert's actions.

    Args:
        expert: Any clonekit expert (``reset(env, seed)``, batched ``act(obs)``); its annotations are ignored.
        action_space: The env's action space: a ``Box`` (the distance rule, Gaussian noise clipped to the
            bounds) or a ``Discrete`` (the disagreement rule, wrong-action noise).
        config: The intervener's quality.
    """

    def __init__(
        self, expert: Expert, action_space: gym.spaces.Space[Any], config: ExpertIntervenerConfig | None = None
    ) -> None:
        super().__init__()
        if isinstance(action_space, gym.spaces.Box):
            self.continuous = True
        elif isinstance(action_space, gym.spaces.Discrete):
            self.continuous = False
        else:
            raise ConfigError(f"action space: expected a Box or a Discrete space, got {action_space}")
        self.expert = expert
        self.action_space = action_space
        self.config = config or ExpertIntervenerConfig()
        if not self.continuous:
            noise = self.config.expert_noise
            check(noise <= 1, "expert_noise", "a probability in [0, 1] for discrete actions", noise)
        self._state_env: Any = None
        self._vec: Any = None

    def reset(self, vec: Any, seed: int) -> None:
        """A new wave in ``vec``: reset the expert's per-episode state and this wave's draws from ``seed``."""
        self._vec = vec
        self._state_env = getattr(vec, "state_env", vec)
        self.expert.reset(self._state_env, derive_seed(seed, "expert"))
        self._start_wave(vec.num_envs, seed)

    def expert_actions(self, obs: np.ndarray) -> np.ndarray:
        """The expert's clean actions ``(B, *action_shape)`` for observations ``(B, ...)`` of the current wave."""
        seen = obs if self._state_env is self._vec else self._state_env.observe()
        actions, _ = self.expert.act(seen)
        return np.asarray(actions)

    def distance(self, proposed: np.ndarray, expert: np.ndarray) -> np.ndarray:
        """How far ``(B,)`` each proposal is from the expert's action: L2 of the clipped proposal (continuous),
        or 1 where they differ and 0 where they agree (discrete)."""
        proposed = np.asarray(proposed)
        if not self.continuous:
            return (proposed != expert).astype(np.float64)
        space = self.action_space
        assert isinstance(space, gym.spaces.Box)
        gap = np.clip(proposed, space.low, space.high).astype(np.float64) - expert
        return np.asarray(np.linalg.norm(gap.reshape(len(gap), -1), axis=1))

    def fires(self, proposed: np.ndarray, expert: np.ndarray) -> np.ndarray:
        """``(B,)`` bool: the rule fires for these proposals against the expert's actions."""
        distance = self.distance(proposed, expert)
        return distance >= (self.config.threshold if self.continuous else 1.0)

    def step(self, obs: np.ndarray, proposed: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For observations ``(B, ...)`` and proposals ``(B, *action_shape)``: ``(take over (B,), actions)``."""
        active = np.asarray(active, dtype=bool)
        expert = self.expert_actions(obs)
        take = self._take_over(self.fires(proposed, expert) & active, active)
        return take, self._noisy(expert, take)

    def _clean_labels(self, obs: np.ndarray) -> np.ndarray:
        return self.expert_actions(obs)

    def _noisy(self, actions: np.ndarray, given: np.ndarray) -> np.ndarray:
        """A copy of ``actions`` with noise on the ``given`` slots (see the module docstring)."""
        actions = actions.copy()
        noise = self.config.expert_noise
        if noise == 0:
            return actions
        # Drawn for every slot, so one slot's noise does not depend on which others were given labels.
        space = self.action_space
        if isinstance(space, gym.spaces.Box):
            noisy = np.clip(actions + self._rng.normal(0.0, noise, actions.shape), space.low, space.high)
            actions[given] = noisy[given].astype(actions.dtype)
            return actions
        assert isinstance(space, gym.spaces.Discrete)
        n, start = int(space.n), int(space.start)
        wrong = self._rng.random(len(actions)) < noise
        shift = self._rng.integers(1, max(n, 2), size=len(actions))
        other = (actions - start + shift) % n + start
        return np.where(given & wrong, other, actions)


__all__ = ["ExpertIntervener", "ExpertIntervenerConfig"]
