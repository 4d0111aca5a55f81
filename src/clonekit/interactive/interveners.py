"""Interveners: who watches the policy act, steps in when it goes wrong, and labels states.

An :class:`Intervener` sees each batch of observations with the actions the policy proposes and returns
which slots it takes over and the actions it would take. The same object labels states on request (DAgger
asks it about every visited state). Every label it gives, by taking over or on request, counts against its
label budget; once the budget is spent it neither takes over nor labels.

:class:`MazeIntervener` simulates a person from the maze's breadth-first-search distances (the BFS expert's
"how far off" measure), with tunable quality (:class:`IntervenerConfig`):

* **threshold**: the *regret* of a proposed action is how many moves it costs against the best one,
  ``d(next cell) - d(cell) + 1``: 0 for a move towards the goal, 1 for bumping into a wall, 2 for a move
  away. The rule fires when the regret is ``>= min_regret``, or when the agent has not come closer to the
  goal than its best distance so far in this episode for ``stall_steps`` steps (it wanders without
  stepping wrong, e.g. with ``min_regret=2`` it bumps into walls). ``stall_steps=0`` turns the second
  rule off.
* **reaction delay**: the person takes over ``delay`` steps after the rule fired (the policy's own actions
  run meanwhile, and the take-over comes even if the policy recovered by then); in control, the person acts
  at least once and hands back as soon as the rule no longer fires for the policy's proposal.
* **optimality**: with probability ``expert_noise`` an action the person takes or a label it gives is
  replaced by a uniformly drawn *other* action (a sometimes-wrong expert).
* **budget**: at most ``label_budget`` labels in all (``None``: no limit). A state is labelled once: asked
  again about an observation it labelled (or was told of with :meth:`MazeIntervener.remember`, e.g. the
  demonstrations), it repeats that label without spending budget, as a person would not be asked twice.

Everything random comes from the seed given to :meth:`MazeIntervener.reset`, so a wave replays exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from clonekit.config import check
from clonekit.envs.maze import AGENT, MOVES, NUM_ACTIONS, bfs_from_goal


class Intervener(Protocol):
    """Watches a batch of episodes (one per env slot) and takes over or labels states.

    ``labels_used`` counts every label given so far (across waves); the budget, if any, caps it, and so does
    ``round_limit`` when set (the interactive loop sets it before each round from ``labels_per_round``: the
    ``labels_used`` at which that round must stop; None: no cap).
    """

    labels_used: int
    round_limit: int | None

    def reset(self, vec: Any, seed: int) -> None:
        """A new wave of episodes started in ``vec`` (one per slot); forget per-episode state."""

    def step(self, obs: np.ndarray, proposed: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For observations ``(B, ...)`` and the policy's ``proposed`` actions ``(B,)`` of the ``active`` slots:
        ``(intervene (B,) bool, actions (B,))``; ``actions`` matter where ``intervene`` is set, and each of
        those is one label."""
        ...

    def remember(self, obs: np.ndarray, labels: np.ndarray) -> None:
        """Labels ``(N,)`` already given for observations ``(N, ...)`` (e.g. a run's data so far)."""

    def label(self, obs: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Expert labels for the ``active`` slots: ``(labelled (B,) bool, actions (B,))``; a slot left
        unlabelled has no budget left for it. A state labelled before gets its label again, free."""
        ...


def labels_left(used: int, *caps: int | None) -> int | None:
    """Labels still allowed after ``used`` under the caps on the total that are set (None: no limit)."""
    limits = [cap for cap in caps if cap is not None]
    return max(0, min(limits) - used) if limits else None


@dataclass(frozen=True)
class IntervenerConfig:
    """Quality of a simulated maze intervener (see the module docstring for the rules).

    Args:
        min_regret: Take over when the proposed action costs at least this many moves against the best one
            (1: any move that is not towards the goal; 2: only moves away from it).
        stall_steps: Also take over after this many steps without coming closer to the goal than the best
            distance so far in the episode; 0 turns this rule off.
        delay: Steps between the rule firing and the take-over (reaction time).
        expert_noise: Probability that an action taken or a label given is a uniformly drawn wrong action.
        label_budget: Labels in all (take-over steps plus requested labels); None for no limit.
    """

    min_regret: int = 1
    stall_steps: int = 0
    delay: int = 0
    expert_noise: float = 0.0
    label_budget: int | None = None

    def __post_init__(self) -> None:
        check(self.min_regret in (1, 2), "min_regret", "1 or 2", self.min_regret)
        check(self.stall_steps >= 0, "stall_steps", ">= 0", self.stall_steps)
        check(self.delay >= 0, "delay", ">= 0", self.delay)
        check(0 <= self.expert_noise <= 1, "expert_noise", "in [0, 1]", self.expert_noise)
        check(self.label_budget is None or self.label_budget >= 0, "label_budget", "null or >= 0", self.label_budget)


class SimulatedPerson:
    """What every simulated intervener shares: the label budget, labelling each state once, and the take-over
    with a reaction delay (see the module docstring). A subclass sets ``config`` (with ``delay`` and
    ``label_budget``) and implements :meth:`_clean_labels` and :meth:`_noisy`; its ``reset`` calls
    :meth:`_start_wave` and its ``step`` :meth:`_take_over`."""

    config: Any

    def __init__(self) -> None:
        self.labels_used = 0
        # A cap on ``labels_used`` besides the budget: where the current round must stop (set by the
        # interactive loop from ``labels_per_round``; None: no cap).
        self.round_limit: int | None = None
        self._known: dict[bytes, Any] = {}  # observation -> label given: a state is labelled once
        self._rng = np.random.default_rng(0)
        self._alarm = np.zeros(0, dtype=np.int64)  # steps since the rule fired, -1 when it has not
        self._in_control = np.zeros(0, dtype=bool)

    @property
    def labels_left(self) -> int | None:
        """Labels the budget and the round's cap (:attr:`round_limit`) still allow (None: no limit)."""
        return labels_left(self.labels_used, self.config.label_budget, self.round_limit)

    def remember(self, obs: np.ndarray, labels: np.ndarray) -> None:
        """Labels ``(N, ...)`` already given for observations ``(N, ...)``: :meth:`label` reuses them for free."""
        for o, a in zip(obs, np.asarray(labels), strict=True):
            self._known[np.ascontiguousarray(o).tobytes()] = a

    def label(self, obs: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Expert labels for the ``active`` slots: ``(labelled (B,) bool, actions (B, ...))``; a slot left
        unlabelled has no budget left for it. A state labelled before gets its label again, free."""
        active = np.asarray(active, dtype=bool)
        keys = [np.ascontiguousarray(o).tobytes() for o in obs]
        known = active & np.array([key in self._known for key in keys], dtype=bool)
        labelled = self._spend(active & ~known)
        actions = self._noisy(self._clean_labels(obs), labelled)
        for slot in np.flatnonzero(labelled).tolist():
            self._known[keys[slot]] = actions[slot].copy()
        for slot in np.flatnonzero(known).tolist():
            actions[slot] = self._known[keys[slot]]
        return labelled | known, actions

    def _clean_labels(self, obs: np.ndarray) -> np.ndarray:
        """The expert's own actions ``(B, ...)`` for observations ``(B, ...)`` of the current wave."""
        raise NotImplementedError

    def _noisy(self, actions: np.ndarray, given: np.ndarray) -> np.ndarray:
        """``actions`` with the person's mistakes on the ``given`` slots (a new array)."""
        raise NotImplementedError

    def _start_wave(self, slots: int, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        self._alarm = np.full(slots, -1, dtype=np.int64)
        self._in_control = np.zeros(slots, dtype=bool)

    def _take_over(self, fires: np.ndarray, active: np.ndarray) -> np.ndarray:
        """``(B,)`` the slots the person controls this step, given where the rule ``fires`` (budget spent)."""
        # A person in control hands back once the policy's proposal is fine again.
        self._in_control &= fires
        # The rule firing raises an alarm; the person takes over `delay` steps later, whatever happens meanwhile.
        start = fires & ~self._in_control & (self._alarm < 0)
        self._alarm = np.where(start, 0, np.where(self._alarm >= 0, self._alarm + 1, -1))
        due = active & (self._alarm >= self.config.delay)
        self._alarm = np.where(due, -1, self._alarm)
        take = self._spend(active & (self._in_control | due))
        self._in_control = take
        return take

    def _spend(self, wanted: np.ndarray) -> np.ndarray:
        """``wanted`` with slots beyond the budget cleared (lowest slots first); counts the labels given."""
        left = self.labels_left
        if left is not None:
            wanted = wanted & (np.cumsum(wanted) <= left)
        self.labels_used += int(wanted.sum())
        return wanted


class MazeIntervener(SimulatedPerson):
    """A simulated person for the maze that judges moves by their BFS distance to the goal.

    See the module docstring; ``config`` sets its quality. Works on ``MazeVecEnv`` waves (the vec must have
    ``tasks``), reading the agent's cell from each observation's ``AGENT`` channel.
    """

    def __init__(self, config: IntervenerConfig | None = None) -> None:
        super().__init__()
        self.config = config or IntervenerConfig()
        self._distance = np.zeros((0, 0, 0), dtype=np.int64)
        self._direction = np.zeros((0, 0, 0), dtype=np.int64)
        self._best = np.zeros(0, dtype=np.int64)
        self._since_best = np.zeros(0, dtype=np.int64)

    def reset(self, vec: Any, seed: int) -> None:
        searched: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # slots often share a maze: search it once
        for task in vec.tasks:
            if id(task) not in searched:
                searched[id(task)] = bfs_from_goal(task)
        results = [searched[id(task)] for task in vec.tasks]
        self._distance = np.stack([d for d, _ in results])
        self._direction = np.stack([a for _, a in results])
        n = len(results)
        self._start_wave(n, seed)
        self._best = np.full(n, np.iinfo(np.int64).max)
        self._since_best = np.zeros(n, dtype=np.int64)

    def regret(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Moves ``(B,)`` that ``actions`` cost against the best action in each slot's cell: 0, 1 or 2."""
        cells = self._cells(obs)
        idx = np.arange(len(cells))
        here = self._distance[idx, cells[:, 0], cells[:, 1]]
        target = cells + MOVES[np.asarray(actions, dtype=np.int64)]
        there = self._distance[idx, target[:, 0], target[:, 1]]
        there = np.where(there < 0, here, there)  # into a wall: the agent stays where it is
        return there - here + 1

    def step(self, obs: np.ndarray, proposed: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cells = self._cells(obs)
        idx = np.arange(len(cells))
        here = self._distance[idx, cells[:, 0], cells[:, 1]]
        improved = active & (here < self._best)
        self._best = np.where(improved, here, self._best)
        self._since_best = np.where(improved, 0, self._since_best + active)
        fires = self.regret(obs, proposed) >= self.config.min_regret
        if self.config.stall_steps:
            fires |= self._since_best >= self.config.stall_steps
        take = self._take_over(fires & active, active)
        return take, self._noisy(self._best_actions(cells), take)

    def _clean_labels(self, obs: np.ndarray) -> np.ndarray:
        return self._best_actions(self._cells(obs))

    def _noisy(self, actions: np.ndarray, given: np.ndarray) -> np.ndarray:
        """``actions`` with each given one replaced, with probability ``expert_noise``, by another action."""
        if self.config.expert_noise == 0:
            return actions
        # Drawn for every slot, so one slot's noise does not depend on which others were given labels.
        wrong = self._rng.random(len(actions)) < self.config.expert_noise
        shift = self._rng.integers(1, NUM_ACTIONS, size=len(actions))
        return np.where(given & wrong, (actions + shift) % NUM_ACTIONS, actions)

    def _best_actions(self, cells: np.ndarray) -> np.ndarray:
        idx = np.arange(len(cells))
        return np.maximum(self._direction[idx, cells[:, 0], cells[:, 1]], 0)  # at the goal any action is fine

    @staticmethod
    def _cells(obs: np.ndarray) -> np.ndarray:
        """``(B, 2)`` agent cells of observations ``(B, C, H, W)``."""
        b, _, _, w = obs.shape
        flat = obs[:, AGENT].reshape(b, -1).argmax(axis=1)
        return np.stack([flat // w, flat % w], axis=1)


__all__ = ["Intervener", "IntervenerConfig", "MazeIntervener", "SimulatedPerson"]
