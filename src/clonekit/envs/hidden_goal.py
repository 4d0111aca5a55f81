"""Hidden-goal grids: a task family for in-context RL, stepped as one numpy batch.

A *task* is a small grid layout (``height`` x ``width`` cells, a few random obstacle cells), a start cell and
a goal cell. The goal is **hidden**: no observation shows it. One *episode* of a task is ``trials`` trials in a
row: a trial ends when the agent steps onto the goal (reward 1, a success) or after ``trial_steps`` steps
(reward 0); then the agent is put back on the start cell and the next trial begins, with the same goal. So an
agent that remembers where it found the reward in earlier trials can walk straight there in later ones; one
that does not has to search again each trial.

Observation ``(D,)`` float32, ``D = height * width + 8``: the agent's cell one-hot, its row and column scaled to
[0, 1], which of the 4 moves are blocked (wall or grid edge), the reward of the previous step and a flag that is
1 on the first step of every trial (so a policy sees the trial boundaries in its context).
Actions: ``0`` up, ``1`` down, ``2`` left, ``3`` right (as in :mod:`clonekit.envs.maze`); a blocked move stays put.

Train and test tasks come from disjoint seed streams and test tasks never share a train task's layout, so a
test task is a grid the agent never trained in. A ``1 x 3`` grid with no obstacles, the start in the middle and
``trial_steps=1`` is a two-armed bandit (left or right, one pull per trial).

The family is not registered as a clonekit env family: its episodes are multi-trial and its evaluation counts
success per trial (:func:`clonekit.rl.incontext.evaluate_trials`), which the generic rollout does not report.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass

import numpy as np

from clonekit.config import check
from clonekit.envs.maze import MOVES, NUM_ACTIONS
from clonekit.seeding import derive_seed

# Fixed observation fields after the position one-hot.
EXTRA_FEATURES = 8
REWARD_FEATURE = -2
NEW_TRIAL_FEATURE = -1


@dataclass(frozen=True)
class HiddenGoalSpec:
    """The shape of a hidden-goal task family.

    Args:
        height: Grid rows.
        width: Grid columns.
        obstacles: Random obstacle cells per layout (the free cells always stay connected).
        trials: Trials per episode (the agent returns to the start after each; the goal stays).
        trial_steps: Steps a trial may take before it ends without success.
        center_start: Start every task at the middle cell (else a random free cell).
        min_distance: Least number of moves from the start to the goal (the most is ``trial_steps``).
    """

    height: int = 5
    width: int = 5
    obstacles: int = 3
    trials: int = 4
    trial_steps: int = 12
    center_start: bool = False
    min_distance: int = 2

    def __post_init__(self) -> None:
        check(1 <= self.height <= 32, "height", "in [1, 32]", self.height)
        check(1 <= self.width <= 32, "width", "in [1, 32]", self.width)
        check(self.height * self.width >= 2, "height * width", ">= 2 cells", self.height * self.width)
        check(
            0 <= self.obstacles <= self.height * self.width // 3,
            "obstacles",
            f"in [0, {self.height * self.width // 3}] (a third of the cells)",
            self.obstacles,
        )
        check(1 <= self.trials <= 64, "trials", "in [1, 64]", self.trials)
        check(1 <= self.trial_steps <= 1024, "trial_steps", "in [1, 1024]", self.trial_steps)
        check(1 <= self.min_distance <= self.height + self.width, "min_distance", ">= 1", self.min_distance)

    @property
    def obs_dim(self) -> int:
        """Length of an observation vector."""
        return self.height * self.width + EXTRA_FEATURES

    @property
    def max_steps(self) -> int:
        """Most steps an episode can take: ``trials * trial_steps``."""
        return self.trials * self.trial_steps


@dataclass(frozen=True)
class HiddenGoalTask:
    """One task: obstacle layout ``(H, W)`` bool, start and goal cells ``(row, col)``."""

    walls: np.ndarray
    start: tuple[int, int]
    goal: tuple[int, int]

    @property
    def layout_key(self) -> str:
        """A short hash of the obstacle layout (train and test tasks never share one)."""
        return hashlib.sha256(self.walls.astype(np.uint8).tobytes() + bytes(self.walls.shape)).hexdigest()[:16]


def _distances(walls: np.ndarray, source: tuple[int, int]) -> np.ndarray:
    """Moves from ``source`` to every cell ``(H, W)`` over free cells; -1 where unreachable or wall."""
    h, w = walls.shape
    distance = np.full((h, w), -1, dtype=np.int64)
    distance[source] = 0
    queue: deque[tuple[int, int]] = deque([source])
    while queue:
        r, c = queue.popleft()
        for dr, dc in MOVES:
            nr, nc = r + int(dr), c + int(dc)
            if 0 <= nr < h and 0 <= nc < w and not walls[nr, nc] and distance[nr, nc] < 0:
                distance[nr, nc] = distance[r, c] + 1
                queue.append((nr, nc))
    return distance


def generate_task(spec: HiddenGoalSpec, rng: np.random.Generator) -> HiddenGoalTask:
    """One random task of ``spec``: connected free cells, a goal at least ``min_distance`` moves from the start."""
    center = (spec.height // 2, spec.width // 2)
    for _ in range(1000):
        walls = np.zeros((spec.height, spec.width), dtype=bool)
        cells = rng.permutation(spec.height * spec.width)
        placed = [int(c) for c in cells if spec.center_start is False or int(c) != center[0] * spec.width + center[1]]
        walls.flat[placed[: spec.obstacles]] = True
        free = np.argwhere(~walls)
        start = center if spec.center_start else tuple(int(v) for v in free[rng.integers(len(free))])
        distance = _distances(walls, start)  # type: ignore[arg-type]
        if (distance[~walls] < 0).any():
            continue  # obstacles cut the grid in two: draw again
        # Every goal is reachable within one trial, so a trial that knows where the goal is can succeed.
        far = np.argwhere((distance >= spec.min_distance) & (distance <= spec.trial_steps))
        if len(far) == 0:
            continue
        goal = far[rng.integers(len(far))]
        return HiddenGoalTask(walls, (int(start[0]), int(start[1])), (int(goal[0]), int(goal[1])))
    raise ValueError(
        f"hidden-goal spec {spec}: no task with a goal {spec.min_distance} to {spec.trial_steps} moves from the start"
    )


def train_test_tasks(
    spec: HiddenGoalSpec, seed: int, num_train: int, num_test: int
) -> tuple[list[HiddenGoalTask], list[HiddenGoalTask]]:
    """``num_train`` training tasks and ``num_test`` test tasks whose layouts no training task has.

    Grids too small to have unseen layouts (no obstacles) give test tasks from their own seed stream only."""
    train_rng = np.random.default_rng(derive_seed(seed, "hidden-goal:train"))
    train = [generate_task(spec, train_rng) for _ in range(num_train)]
    seen = {task.layout_key for task in train} if spec.obstacles > 0 else set()
    test_rng = np.random.default_rng(derive_seed(seed, "hidden-goal:test"))
    test: list[HiddenGoalTask] = []
    for _ in range(100 * num_test):
        if len(test) == num_test:
            break
        task = generate_task(spec, test_rng)
        if task.layout_key not in seen:
            test.append(task)
    if len(test) < num_test:
        raise ValueError(f"hidden-goal spec {spec}: only {len(test)} of {num_test} test layouts differ from train")
    return train, test


class HiddenGoalVecEnv:
    """``len(tasks)`` episodes of hidden-goal tasks stepped together (see the module docstring).

    ``step`` returns ``(obs (N, D), reward (N,), trial_end (N,), done (N,))``: ``trial_end`` marks a step that
    ended a trial (success or time), ``done`` one that ended the episode (its last trial). An episode that is
    done stays done; later steps leave it unchanged with reward 0. ``trial_index`` ``(N,)`` is the current trial.
    """

    def __init__(self, spec: HiddenGoalSpec, tasks: list[HiddenGoalTask]) -> None:
        self.spec = spec
        self.num_envs = len(tasks)
        self.walls = np.stack([t.walls for t in tasks])  # (N, H, W)
        self.starts = np.array([t.start for t in tasks], dtype=np.int64)
        self.goals = np.array([t.goal for t in tasks], dtype=np.int64)
        self.pos = self.starts.copy()
        self.trial_index = np.zeros(self.num_envs, dtype=np.int64)
        self.trial_step = np.zeros(self.num_envs, dtype=np.int64)
        self.done = np.zeros(self.num_envs, dtype=bool)
        self.last_reward = np.zeros(self.num_envs, dtype=np.float32)
        self.new_trial = np.ones(self.num_envs, dtype=bool)

    def reset(self) -> np.ndarray:
        """Put every episode at its first step (trial 0 at the start cell); returns ``obs (N, D)``."""
        self.pos = self.starts.copy()
        self.trial_index[:], self.trial_step[:], self.done[:] = 0, 0, False
        self.last_reward[:], self.new_trial[:] = 0.0, True
        return self.observe()

    def blocked(self) -> np.ndarray:
        """``(N, 4)`` bool: which moves from the current cell hit a wall or the grid edge."""
        target = self.pos[:, None, :] + MOVES[None]  # (N, 4, 2)
        h, w = self.spec.height, self.spec.width
        outside = (target[..., 0] < 0) | (target[..., 0] >= h) | (target[..., 1] < 0) | (target[..., 1] >= w)
        rows, cols = target[..., 0].clip(0, h - 1), target[..., 1].clip(0, w - 1)
        return outside | self.walls[np.arange(self.num_envs)[:, None], rows, cols]

    def observe(self) -> np.ndarray:
        """The observations ``(N, D)`` float32 (the goal is not among them)."""
        h, w = self.spec.height, self.spec.width
        obs = np.zeros((self.num_envs, self.spec.obs_dim), dtype=np.float32)
        obs[np.arange(self.num_envs), self.pos[:, 0] * w + self.pos[:, 1]] = 1.0
        obs[:, h * w] = self.pos[:, 0] / max(h - 1, 1)
        obs[:, h * w + 1] = self.pos[:, 1] / max(w - 1, 1)
        obs[:, h * w + 2 : h * w + 6] = self.blocked()
        obs[:, REWARD_FEATURE] = self.last_reward
        obs[:, NEW_TRIAL_FEATURE] = self.new_trial
        return obs

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Move every live episode by ``actions`` ``(N,)`` int; see the class docstring for what comes back."""
        actions = np.asarray(actions, dtype=np.int64)
        if actions.shape != (self.num_envs,) or ((actions < 0) | (actions >= NUM_ACTIONS)).any():
            raise ValueError(f"actions: expected ({self.num_envs},) ints in [0, {NUM_ACTIONS}), got {actions!r}")
        live = ~self.done
        move = live & ~self.blocked()[np.arange(self.num_envs), actions]
        self.pos[move] += MOVES[actions[move]]
        self.trial_step[live] += 1
        success = live & (self.pos == self.goals).all(axis=1)
        trial_end = success | (live & (self.trial_step >= self.spec.trial_steps))
        reward = success.astype(np.float32)
        self.pos[trial_end] = self.starts[trial_end]  # back to the start; the goal stays where it is
        self.trial_step[trial_end] = 0
        self.trial_index[trial_end] += 1
        now_done = trial_end & (self.trial_index >= self.spec.trials)
        self.done |= now_done
        self.trial_index = np.minimum(self.trial_index, self.spec.trials - 1)
        self.last_reward = np.where(live, reward, 0.0).astype(np.float32)
        self.new_trial = trial_end.copy()
        return self.observe(), reward, trial_end, now_done


__all__ = [
    "EXTRA_FEATURES",
    "NEW_TRIAL_FEATURE",
    "REWARD_FEATURE",
    "HiddenGoalSpec",
    "HiddenGoalTask",
    "HiddenGoalVecEnv",
    "generate_task",
    "train_test_tasks",
]
