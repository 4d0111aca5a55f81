"""Procedurally generated grid mazes: a batched numpy env and a gymnasium env.

A maze *task* is a layout of walls plus a goal cell, both determined by one integer ``maze_seed``; the agent
starts at a random free cell each episode (``start="random"``), or always at the free cell farthest from the
goal (``start="farthest"``: one long route a maze, the classic setting where demonstrations show only the
expert's path). Train and test tasks are drawn from disjoint seed streams and checked to have different
layouts, so "unseen maze" means a layout the policy never saw.

Layout: a ``size`` x ``size`` grid (default 16). The outer ring is wall. Corridors are carved by a randomized
depth-first search over the odd-indexed cells (a perfect maze), then a fraction ``loop_fraction`` of the
remaining inner walls that separate two corridors is knocked down, so there are loops and several routes.

Observation: ``uint8`` array ``(3, size, size)`` with channels ``WALL``, ``AGENT``, ``GOAL`` (1 where the
thing is). With ``canvas=C`` (``C >= size``) the maze sits in the top-left corner of a ``C`` x ``C`` canvas whose
other cells are wall, so mazes of several sizes share one observation shape (cell coordinates are unchanged;
see :func:`pad_to_canvas`).
Actions: ``0`` up, ``1`` down, ``2`` left, ``3`` right; a move into a wall leaves the agent in place.
Reward 1 and ``terminated`` on reaching the goal, otherwise 0; ``truncated`` after ``max_steps`` steps.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from clonekit.config import check
from clonekit.seeding import derive_seed

WALL, AGENT, GOAL = 0, 1, 2
NUM_CHANNELS = 3
NUM_ACTIONS = 4
ACTION_NAMES = ("up", "down", "left", "right")
# (row, col) displacement of each action.
MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.int64)

DEFAULT_SIZE = 16
DEFAULT_LOOP_FRACTION = 0.2
# Where an episode starts: a uniformly drawn free cell, or the free cell farthest from the goal.
START_RULES = ("random", "farthest")


@dataclass(frozen=True)
class MazeTask:
    """One maze: its seed, wall layout ``(H, W)`` bool and goal cell ``(row, col)``."""

    maze_seed: int
    walls: np.ndarray
    goal: tuple[int, int]

    @property
    def layout_hash(self) -> str:
        """A short content hash of the wall layout and goal, used to keep train and test mazes disjoint."""
        digest = hashlib.sha256(self.walls.astype(np.uint8).tobytes() + bytes(self.goal)).hexdigest()
        return digest[:16]

    def free_cells(self) -> np.ndarray:
        """``(K, 2)`` int64 coordinates of all non-wall cells."""
        return np.argwhere(~self.walls)


def generate_maze(maze_seed: int, size: int = DEFAULT_SIZE, loop_fraction: float = DEFAULT_LOOP_FRACTION) -> MazeTask:
    """Generate the maze task for ``maze_seed`` (same seed and arguments give the same maze)."""
    if size < 5:
        raise ValueError(f"maze size: expected >= 5, got {size}")
    rng = np.random.default_rng(maze_seed)
    walls = np.ones((size, size), dtype=bool)
    cells = [(r, c) for r in range(1, size - 1, 2) for c in range(1, size - 1, 2)]
    start = cells[rng.integers(len(cells))]
    walls[start] = False
    stack = [start]
    while stack:
        r, c = stack[-1]
        options = [
            (r + 2 * dr, c + 2 * dc, r + dr, c + dc)
            for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1))
            if 1 <= r + 2 * dr < size - 1 and 1 <= c + 2 * dc < size - 1 and walls[r + 2 * dr, c + 2 * dc]
        ]
        if not options:
            stack.pop()
            continue
        nr, nc, wr, wc = options[rng.integers(len(options))]
        walls[wr, wc] = False
        walls[nr, nc] = False
        stack.append((nr, nc))
    # Knock down some inner walls that separate two corridor cells, so the maze has loops.
    candidates = [
        (r, c)
        for r in range(1, size - 1)
        for c in range(1, size - 1)
        if walls[r, c]
        and (
            (not walls[r - 1, c] and not walls[r + 1, c] and walls[r, c - 1] and walls[r, c + 1])
            or (not walls[r, c - 1] and not walls[r, c + 1] and walls[r - 1, c] and walls[r + 1, c])
        )
    ]
    n_open = round(loop_fraction * len(candidates))
    for idx in rng.permutation(len(candidates))[:n_open]:
        walls[candidates[idx]] = False
    free = np.argwhere(~walls)
    goal = free[rng.integers(len(free))]
    return MazeTask(maze_seed=int(maze_seed), walls=walls, goal=(int(goal[0]), int(goal[1])))


def bfs_from_goal(task: MazeTask) -> tuple[np.ndarray, np.ndarray]:
    """Breadth-first search from the goal over free cells.

    Returns ``(distance, direction)``, both ``(H, W)`` int64: ``distance`` is the number of moves to the goal
    (-1 for walls and unreachable cells); ``direction`` is the action to take from the cell to move one step
    closer to the goal (-1 for the goal itself, walls and unreachable cells). When several neighbours are one
    step closer, the lowest action index wins, so the label of a cell depends only on its 3x3 neighbourhood
    in the previous search layer.
    """
    h, w = task.walls.shape
    distance = np.full((h, w), -1, dtype=np.int64)
    distance[task.goal] = 0
    queue: deque[tuple[int, int]] = deque([task.goal])
    while queue:
        r, c = queue.popleft()
        for dr, dc in MOVES:
            nr, nc = r + dr, c + dc
            if 0 <= nr < h and 0 <= nc < w and not task.walls[nr, nc] and distance[nr, nc] < 0:
                distance[nr, nc] = distance[r, c] + 1
                queue.append((nr, nc))
    direction = np.full((h, w), -1, dtype=np.int64)
    for r, c in np.argwhere(distance > 0):
        for a, (dr, dc) in enumerate(MOVES):
            nr, nc = r + dr, c + dc
            if 0 <= nr < h and 0 <= nc < w and distance[nr, nc] == distance[r, c] - 1:
                direction[r, c] = a
                break
    return distance, direction


def random_starts(tasks: list[Any], seed: int | None) -> np.ndarray:
    """``(len(tasks), 2)`` int64 start cells: per task a uniformly drawn free cell other than its goal (one
    generator seeded by ``seed``, tasks in order). Any task with ``free_cells()`` and ``goal`` (maze, terrain)."""
    rng = np.random.default_rng(seed)
    starts = np.zeros((len(tasks), 2), dtype=np.int64)
    for i, task in enumerate(tasks):
        free = task.free_cells()
        free = free[(free[:, 0] != task.goal[0]) | (free[:, 1] != task.goal[1])]
        starts[i] = free[rng.integers(len(free))]
    return starts


def farthest_cell(task: MazeTask) -> tuple[int, int]:
    """The free cell with the longest shortest path to the goal (the first in row-major order on a tie)."""
    distance, _ = bfs_from_goal(task)
    r, c = np.unravel_index(int(distance.argmax()), distance.shape)
    return int(r), int(c)


def sample_tasks(
    seed: int,
    split: str,
    count: int,
    *,
    size: int = DEFAULT_SIZE,
    loop_fraction: float = DEFAULT_LOOP_FRACTION,
    exclude_layouts: set[str] | frozenset[str] = frozenset(),
) -> list[MazeTask]:
    """Draw ``count`` distinct mazes for ``split`` (``"train"`` or ``"test"``) from ``seed``.

    Train and test mazes come from different seed streams; any maze whose layout appears in
    ``exclude_layouts`` (or earlier in this list) is skipped, so the splits are disjoint by content.
    """
    rng = np.random.default_rng(derive_seed(seed, f"maze-tasks:{split}"))
    tasks: list[MazeTask] = []
    seen = set(exclude_layouts)
    while len(tasks) < count:
        task = generate_maze(int(rng.integers(0, 2**62)), size=size, loop_fraction=loop_fraction)
        if task.layout_hash in seen:
            continue
        seen.add(task.layout_hash)
        tasks.append(task)
    return tasks


def sample_train_test_tasks(
    seed: int, num_train: int, num_test: int, **maze_kwargs: Any
) -> tuple[list[MazeTask], list[MazeTask]]:
    """Train mazes and test mazes for ``seed``, disjoint by layout."""
    train = sample_tasks(seed, "train", num_train, **maze_kwargs)
    test = sample_tasks(seed, "test", num_test, exclude_layouts={t.layout_hash for t in train}, **maze_kwargs)
    return train, test


def pad_to_canvas(obs: np.ndarray, canvas: int) -> np.ndarray:
    """Observations ``(..., 3, H, W)`` placed in the top-left corner of a ``canvas`` x ``canvas`` map whose other
    cells are wall: ``(..., 3, canvas, canvas)``, same dtype. Row and column indices of every cell are unchanged."""
    h, w = obs.shape[-2:]
    if canvas < max(h, w):
        raise ValueError(f"canvas: expected >= the maze size {max(h, w)}, got {canvas}")
    out = np.zeros((*obs.shape[:-2], canvas, canvas), dtype=obs.dtype)
    out[..., WALL, :, :] = 1
    out[..., :h, :w] = obs
    return out


class MazeVecEnv:
    """Many mazes stepped together with numpy.

    Each of the ``num_envs`` slots plays one episode on its own task; ``reset`` takes the task of every slot
    and draws start cells. Slots whose episode has ended keep their last observation and report
    ``done``; callers stop reading them. This episode-per-slot design keeps recurrent and chunking policies
    simple: the batch of slots never changes order during a rollout. ``canvas``: observe every maze in the
    top-left corner of a ``canvas`` x ``canvas`` map padded with wall (:func:`pad_to_canvas`); ``None``: as is.
    ``start``: one of ``START_RULES`` (``"farthest"``: every episode of a maze starts at :func:`farthest_cell`).
    """

    def __init__(
        self, tasks: list[MazeTask], max_steps: int | None = None, canvas: int | None = None, start: str = "random"
    ) -> None:
        if not tasks:
            raise ValueError("MazeVecEnv needs at least one task")
        if start not in START_RULES:
            raise ValueError(f"start: expected one of {list(START_RULES)}, got {start!r}")
        shapes = {t.walls.shape for t in tasks}
        if len(shapes) != 1:
            raise ValueError(f"MazeVecEnv: all mazes must have one size, got {sorted(shapes)}")
        self.tasks = list(tasks)
        self.num_envs = len(tasks)
        h, w = tasks[0].walls.shape
        if canvas is not None and canvas < max(h, w):
            raise ValueError(f"canvas: expected >= the maze size {max(h, w)}, got {canvas}")
        self.size = (h, w)
        self.canvas = canvas
        self.max_steps = max_steps if max_steps is not None else h * w // 2
        self.walls = np.stack([t.walls for t in tasks])
        self.goals = np.array([t.goal for t in tasks], dtype=np.int64)
        self.start = start
        self._farthest: np.ndarray | None = None  # (B, 2), searched on the first reset that needs it
        self.agents = np.zeros((self.num_envs, 2), dtype=np.int64)
        self.steps = np.zeros(self.num_envs, dtype=np.int64)
        self.done = np.zeros(self.num_envs, dtype=bool)
        self._rows = np.arange(self.num_envs)

    def reset(self, seed: int | None = None, starts: np.ndarray | None = None) -> np.ndarray:
        """Start one episode per slot; returns observations ``(B, 3, H, W)`` uint8.

        ``starts`` ``(B, 2)`` fixes the start cells; otherwise each slot starts at a uniformly drawn free
        cell other than its goal (``start="random"``) or at its maze's farthest cell (``start="farthest"``).
        """
        if starts is None and self.start == "farthest":
            if self._farthest is None:
                self._farthest = np.array([farthest_cell(task) for task in self.tasks], dtype=np.int64)
            starts = self._farthest
        if starts is None:
            starts = random_starts(self.tasks, seed)
        self.agents = np.asarray(starts, dtype=np.int64).copy()
        self.steps[:] = 0
        self.done[:] = False
        return self.observe()

    def observe(self) -> np.ndarray:
        """Observations of all slots, ``(B, 3, H, W)`` uint8."""
        h, w = self.size
        obs = np.zeros((self.num_envs, NUM_CHANNELS, h, w), dtype=np.uint8)
        obs[:, WALL] = self.walls
        obs[self._rows, AGENT, self.agents[:, 0], self.agents[:, 1]] = 1
        obs[self._rows, GOAL, self.goals[:, 0], self.goals[:, 1]] = 1
        return obs if self.canvas is None else pad_to_canvas(obs, self.canvas)

    def halt(self, mask: np.ndarray) -> None:
        """End the slots in ``mask`` now: the next :meth:`step` leaves them unchanged (their action never runs)."""
        self.done |= np.asarray(mask, dtype=bool)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Apply ``actions`` ``(B,)``; returns ``(obs, reward, terminated, truncated)``.

        Slots already done are left unchanged and report ``terminated=truncated=False``.
        """
        actions = np.asarray(actions, dtype=np.int64)
        if actions.shape != (self.num_envs,) or actions.min(initial=0) < 0 or actions.max(initial=0) >= NUM_ACTIONS:
            raise ValueError(
                f"actions: expected shape ({self.num_envs},) with values in [0, {NUM_ACTIONS}), got {actions}"
            )
        active = ~self.done
        target = self.agents + MOVES[actions]
        h, w = self.size
        target[:, 0] = target[:, 0].clip(0, h - 1)
        target[:, 1] = target[:, 1].clip(0, w - 1)
        blocked = self.walls[self._rows, target[:, 0], target[:, 1]]
        move = active & ~blocked
        self.agents[move] = target[move]
        self.steps[active] += 1
        at_goal = (self.agents == self.goals).all(axis=1)
        terminated = active & at_goal
        truncated = active & ~at_goal & (self.steps >= self.max_steps)
        self.done |= terminated | truncated
        reward = terminated.astype(np.float32)
        return self.observe(), reward, terminated, truncated


class MazeEnv(gym.Env[np.ndarray, np.int64]):
    """Gymnasium env for one maze (a one-slot :class:`MazeVecEnv`).

    ``maze_seed`` fixes the maze; without it, every ``reset(seed=...)`` draws a new maze from the seed.
    ``canvas``: observe the maze in a ``canvas`` x ``canvas`` map padded with wall (see :class:`MazeVecEnv`).
    ``start``: where episodes start, one of ``START_RULES`` (as the maze env option).
    ``render_mode="rgb_array"``: ``render()`` draws the maze as an ``(8H, 8W, 3)`` uint8 frame (numpy, no GL).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012 - gymnasium reads this

    def __init__(
        self,
        maze_seed: int | None = None,
        size: int = DEFAULT_SIZE,
        loop_fraction: float = DEFAULT_LOOP_FRACTION,
        max_steps: int | None = None,
        render_mode: str | None = None,
        canvas: int | None = None,
        start: str = "random",
    ) -> None:
        check(render_mode in (None, "rgb_array"), "render_mode", "None or 'rgb_array'", render_mode)
        check(start in START_RULES, "start", f"one of {list(START_RULES)}", start)
        check(canvas is None or canvas >= size, "canvas", f"None or >= size ({size})", canvas)
        self.maze_seed = maze_seed
        self.size = size
        self.loop_fraction = loop_fraction
        self.max_steps = max_steps
        self.render_mode = render_mode
        self.canvas = canvas
        self.start = start
        side = canvas if canvas is not None else size
        self.observation_space = gym.spaces.Box(0, 1, (NUM_CHANNELS, side, side), dtype=np.uint8)
        self.action_space = gym.spaces.Discrete(NUM_ACTIONS)
        self._vec: MazeVecEnv | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        maze_seed = self.maze_seed if self.maze_seed is not None else int(self.np_random.integers(0, 2**62))
        task = generate_maze(maze_seed, size=self.size, loop_fraction=self.loop_fraction)
        self._vec = MazeVecEnv([task], max_steps=self.max_steps, canvas=self.canvas, start=self.start)
        obs = self._vec.reset(seed=int(self.np_random.integers(0, 2**62)))
        return obs[0], {"maze_seed": maze_seed}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._vec is None:
            raise RuntimeError("MazeEnv.step called before reset")
        obs, reward, terminated, truncated = self._vec.step(np.array([action]))
        return obs[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), {}

    def render(self) -> np.ndarray:
        if self._vec is None:
            raise RuntimeError("MazeEnv.render called before reset")
        return render_rgb(self._vec.observe()[0])


def render_rgb(obs: np.ndarray, cell: int = 8) -> np.ndarray:
    """An ``(H*cell, W*cell, 3)`` uint8 picture of one observation ``(3, H, W)``."""
    img = np.full((*obs.shape[1:], 3), 235, dtype=np.uint8)
    img[obs[WALL] > 0] = (40, 40, 60)
    img[obs[GOAL] > 0] = (40, 170, 70)
    img[obs[AGENT] > 0] = (220, 60, 50)
    return np.kron(img, np.ones((cell, cell, 1), dtype=np.uint8))
