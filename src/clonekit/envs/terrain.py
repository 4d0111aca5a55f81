"""Weighted-terrain grids: mazes with mud, where the cheapest route is not the shortest one.

A terrain *task* is a maze layout (walls and goal from :func:`clonekit.envs.maze.generate_maze`) plus patches
of mud on free cells, all fixed by one integer ``terrain_seed``. Moving into a road cell costs 1, into a mud cell
``mud_cost`` (default 3); a move into a wall leaves the agent in place and costs 1. The cheapest route to the goal
often walks around a mud patch that the shortest route (in moves) would cross, so a breadth-first search gives
the wrong moves there: the expert runs Dijkstra's search instead (:mod:`clonekit.experts.dijkstra`).

Observation: ``uint8`` array ``(4, size, size)`` with channels ``WALL``, ``AGENT``, ``GOAL``, ``MUD`` (1 where the
thing is). With ``canvas=C`` the grid sits in the top-left corner of a ``C`` x ``C`` map whose other cells are wall
(:func:`clonekit.envs.maze.pad_to_canvas`). Actions as the maze: ``0`` up, ``1`` down, ``2`` left, ``3`` right.
Reward 1 and ``terminated`` on reaching the goal, otherwise 0 (as the maze, so success means the same); the cost
of the route so far is ``TerrainVecEnv.path_cost`` (``info["cost"]`` of the gymnasium env's steps).
``truncated`` after ``max_steps`` moves (default ``size * size / 2``).
"""

from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from clonekit.config import check
from clonekit.envs import maze
from clonekit.envs.maze import MOVES, NUM_ACTIONS, WALL, pad_to_canvas, random_starts
from clonekit.errors import ConfigError
from clonekit.seeding import derive_seed

AGENT, GOAL, MUD = maze.AGENT, maze.GOAL, 3
NUM_CHANNELS = 4
ROAD_COST = 1
DEFAULT_SIZE = 16
# More loops than the maze's default: the cheap detour around a mud patch needs a second route.
DEFAULT_LOOP_FRACTION = 0.5
DEFAULT_MUD_FRACTION = 0.3
DEFAULT_MUD_COST = 3


@dataclass(frozen=True)
class TerrainTask:
    """One terrain grid: its seed, walls ``(H, W)`` bool, mud ``(H, W)`` bool and goal cell ``(row, col)``."""

    terrain_seed: int
    walls: np.ndarray
    mud: np.ndarray
    goal: tuple[int, int]

    @property
    def layout_hash(self) -> str:
        """A short content hash of walls, mud and goal, used to keep train and test grids disjoint."""
        content = self.walls.astype(np.uint8).tobytes() + self.mud.astype(np.uint8).tobytes() + bytes(self.goal)
        return hashlib.sha256(content).hexdigest()[:16]

    def free_cells(self) -> np.ndarray:
        """``(K, 2)`` int64 coordinates of all non-wall cells."""
        return np.argwhere(~self.walls)

    def step_costs(self, mud_cost: int) -> np.ndarray:
        """``(H, W)`` int64 cost of moving into each cell (walls: 0, they cannot be entered)."""
        return np.where(self.walls, 0, np.where(self.mud, mud_cost, ROAD_COST)).astype(np.int64)


def generate_terrain(
    terrain_seed: int,
    size: int = DEFAULT_SIZE,
    loop_fraction: float = DEFAULT_LOOP_FRACTION,
    mud_fraction: float = DEFAULT_MUD_FRACTION,
) -> TerrainTask:
    """The terrain task of ``terrain_seed`` (same seed and arguments give the same grid).

    Mud comes in patches: diamonds of radius 1 or 2 around random free cells, added until about
    ``mud_fraction`` of the free cells are mud; the goal cell is always road.
    """
    layout = maze.generate_maze(terrain_seed, size=size, loop_fraction=loop_fraction)
    rng = np.random.default_rng(derive_seed(terrain_seed, "terrain-mud"))
    free = layout.free_cells()
    mud = np.zeros_like(layout.walls)
    rows, cols = np.indices(layout.walls.shape)
    target = round(mud_fraction * len(free))
    while int(mud.sum()) < target:
        r, c = free[rng.integers(len(free))]
        radius = int(rng.integers(1, 3))
        mud |= (np.abs(rows - r) + np.abs(cols - c) <= radius) & ~layout.walls
        mud[layout.goal] = False
    return TerrainTask(terrain_seed=int(terrain_seed), walls=layout.walls, mud=mud, goal=layout.goal)


def dijkstra_from_goal(task: TerrainTask, mud_cost: int = DEFAULT_MUD_COST) -> tuple[np.ndarray, np.ndarray]:
    """Cheapest routes to the goal: Dijkstra's search outward from the goal.

    Returns ``(cost_to_go, direction)``, both ``(H, W)`` int64: ``cost_to_go`` is the least total cost of the moves
    from the cell to the goal (-1 for walls and unreachable cells); ``direction`` the action whose move starts a
    cheapest route (-1 for the goal, walls and unreachable cells). When several moves do, the lowest action
    index wins, so a cell's direction depends only on its neighbours' costs and cost-to-go.
    """
    h, w = task.walls.shape
    costs = task.step_costs(mud_cost)
    cost_to_go = np.full((h, w), -1, dtype=np.int64)
    queue: list[tuple[int, int, int]] = [(0, *task.goal)]
    while queue:
        value, r, c = heapq.heappop(queue)
        if cost_to_go[r, c] >= 0:
            continue
        cost_to_go[r, c] = value
        # From a neighbour n, the move into (r, c) costs costs[r, c].
        for dr, dc in MOVES:
            nr, nc = r + dr, c + dc
            if 0 <= nr < h and 0 <= nc < w and not task.walls[nr, nc] and cost_to_go[nr, nc] < 0:
                heapq.heappush(queue, (value + int(costs[r, c]), int(nr), int(nc)))
    direction = np.full((h, w), -1, dtype=np.int64)
    for r, c in np.argwhere(cost_to_go > 0):
        for a, (dr, dc) in enumerate(MOVES):
            nr, nc = r + dr, c + dc
            inside = 0 <= nr < h and 0 <= nc < w
            if inside and cost_to_go[nr, nc] >= 0 and cost_to_go[nr, nc] + costs[nr, nc] == cost_to_go[r, c]:
                direction[r, c] = a
                break
    return cost_to_go, direction


def route_cost(task: TerrainTask, direction: np.ndarray, start: tuple[int, int], mud_cost: int) -> int:
    """Cost of following ``direction`` ``(H, W)`` (a field of moves towards the goal, -1 at the goal) from
    ``start`` to the goal; e.g. the breadth-first field of :func:`clonekit.envs.maze.bfs_from_goal`."""
    costs = task.step_costs(mud_cost)
    r, c = start
    total = 0
    for _ in range(task.walls.size):
        if (r, c) == task.goal:
            return total
        dr, dc = MOVES[direction[r, c]]
        r, c = r + int(dr), c + int(dc)
        total += int(costs[r, c])
    raise ValueError(f"route_cost: the direction field does not lead from {start} to the goal {task.goal}")


def sample_tasks(
    seed: int,
    split: str,
    count: int,
    *,
    size: int = DEFAULT_SIZE,
    loop_fraction: float = DEFAULT_LOOP_FRACTION,
    mud_fraction: float = DEFAULT_MUD_FRACTION,
    exclude_layouts: set[str] | frozenset[str] = frozenset(),
) -> list[TerrainTask]:
    """Draw ``count`` distinct grids for ``split`` from ``seed``; each split has its own seed stream and no grid
    whose layout is in ``exclude_layouts`` (or earlier in the list) is drawn."""
    rng = np.random.default_rng(derive_seed(seed, f"terrain-tasks:{split}"))
    tasks: list[TerrainTask] = []
    seen = set(exclude_layouts)
    while len(tasks) < count:
        task = generate_terrain(int(rng.integers(0, 2**62)), size, loop_fraction, mud_fraction)
        if task.layout_hash in seen:
            continue
        seen.add(task.layout_hash)
        tasks.append(task)
    return tasks


class TerrainVecEnv:
    """Many terrain grids stepped together with numpy, one episode per slot (as the maze's ``MazeVecEnv``).

    ``path_cost`` ``(B,)``: the cost of each slot's moves so far this episode.
    """

    def __init__(
        self,
        tasks: list[TerrainTask],
        mud_cost: int = DEFAULT_MUD_COST,
        max_steps: int | None = None,
        canvas: int | None = None,
    ) -> None:
        if not tasks:
            raise ValueError("TerrainVecEnv needs at least one task")
        shapes = {t.walls.shape for t in tasks}
        if len(shapes) != 1:
            raise ValueError(f"TerrainVecEnv: all grids must have one size, got {sorted(shapes)}")
        h, w = tasks[0].walls.shape
        if canvas is not None and canvas < max(h, w):
            raise ValueError(f"canvas: expected >= the grid size {max(h, w)}, got {canvas}")
        self.tasks = list(tasks)
        self.num_envs = len(tasks)
        self.size = (h, w)
        self.canvas = canvas
        self.mud_cost = mud_cost
        self.max_steps = max_steps if max_steps is not None else h * w // 2
        self.walls = np.stack([t.walls for t in tasks])
        self.mud = np.stack([t.mud for t in tasks])
        self.costs = np.stack([t.step_costs(mud_cost) for t in tasks])
        self.goals = np.array([t.goal for t in tasks], dtype=np.int64)
        self.agents = np.zeros((self.num_envs, 2), dtype=np.int64)
        self.steps = np.zeros(self.num_envs, dtype=np.int64)
        self.path_cost = np.zeros(self.num_envs, dtype=np.int64)
        self.done = np.zeros(self.num_envs, dtype=bool)
        self._rows = np.arange(self.num_envs)

    def reset(self, seed: int | None = None, starts: np.ndarray | None = None) -> np.ndarray:
        """Start one episode per slot at ``starts`` ``(B, 2)`` or at uniformly drawn free cells other than the
        goal; returns observations ``(B, 4, H, W)`` uint8."""
        if starts is None:
            starts = random_starts(self.tasks, seed)
        self.agents = np.asarray(starts, dtype=np.int64).copy()
        self.steps[:] = 0
        self.path_cost[:] = 0
        self.done[:] = False
        return self.observe()

    def observe(self) -> np.ndarray:
        """Observations of all slots, ``(B, 4, H, W)`` uint8 (``(B, 4, C, C)`` on a canvas)."""
        h, w = self.size
        obs = np.zeros((self.num_envs, NUM_CHANNELS, h, w), dtype=np.uint8)
        obs[:, WALL] = self.walls
        obs[:, MUD] = self.mud
        obs[self._rows, AGENT, self.agents[:, 0], self.agents[:, 1]] = 1
        obs[self._rows, GOAL, self.goals[:, 0], self.goals[:, 1]] = 1
        return obs if self.canvas is None else pad_to_canvas(obs, self.canvas)

    def halt(self, mask: np.ndarray) -> None:
        """End the slots in ``mask`` now: the next :meth:`step` leaves them unchanged."""
        self.done |= np.asarray(mask, dtype=bool)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Apply ``actions`` ``(B,)``; returns ``(obs, reward, terminated, truncated)``. Slots already done are
        left unchanged and report ``terminated=truncated=False``."""
        actions = np.asarray(actions, dtype=np.int64)
        if actions.shape != (self.num_envs,) or actions.min(initial=0) < 0 or actions.max(initial=0) >= NUM_ACTIONS:
            raise ValueError(
                f"actions: expected shape ({self.num_envs},) with values in [0, {NUM_ACTIONS}), got {actions}"
            )
        active = ~self.done
        h, w = self.size
        target = self.agents + MOVES[actions]
        target[:, 0] = target[:, 0].clip(0, h - 1)
        target[:, 1] = target[:, 1].clip(0, w - 1)
        blocked = self.walls[self._rows, target[:, 0], target[:, 1]]
        move = active & ~blocked
        self.agents[move] = target[move]
        cost = np.where(blocked, ROAD_COST, self.costs[self._rows, target[:, 0], target[:, 1]])
        self.path_cost += np.where(active, cost, 0)
        self.steps[active] += 1
        at_goal = (self.agents == self.goals).all(axis=1)
        terminated = active & at_goal
        truncated = active & ~at_goal & (self.steps >= self.max_steps)
        self.done |= terminated | truncated
        return self.observe(), terminated.astype(np.float32), terminated, truncated


def render_rgb(obs: np.ndarray, cell: int = 8) -> np.ndarray:
    """An ``(H*cell, W*cell, 3)`` uint8 picture of one observation ``(4, H, W)``: mud brown, road light."""
    img = maze.render_rgb(obs[:3], cell=1)
    img[(obs[MUD] > 0) & (obs[AGENT] == 0) & (obs[GOAL] == 0)] = (165, 125, 80)
    return np.kron(img, np.ones((cell, cell, 1), dtype=np.uint8))


def check_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The terrain options of ``kwargs`` (``--env-kwargs``) with defaults filled in; a bad one is a one-line
    ``ConfigError`` naming it."""
    unknown = set(kwargs) - set(TerrainFamily.KWARGS)
    if unknown:
        raise ConfigError(
            f"env terrain: unknown option(s) {sorted(unknown)}; expected some of {list(TerrainFamily.KWARGS)}"
        )
    size = kwargs.get("size", DEFAULT_SIZE)
    options = {
        "size": size,
        "loop_fraction": kwargs.get("loop_fraction", DEFAULT_LOOP_FRACTION),
        "mud_fraction": kwargs.get("mud_fraction", DEFAULT_MUD_FRACTION),
        "mud_cost": kwargs.get("mud_cost", DEFAULT_MUD_COST),
        "max_steps": kwargs.get("max_steps"),
        "canvas": kwargs.get("canvas"),
    }

    def integer(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    check(integer(size) and 5 <= size <= 256, "env terrain: size", "an integer in [5, 256]", size)
    for name in ("loop_fraction", "mud_fraction"):
        value = options[name]
        check(isinstance(value, int | float) and 0 <= value <= 1, f"env terrain: {name}", "in [0, 1]", value)
    mud_cost = options["mud_cost"]
    check(integer(mud_cost) and 1 <= mud_cost <= 64, "env terrain: mud_cost", "an integer in [1, 64]", mud_cost)
    steps = options["max_steps"]
    check(steps is None or (integer(steps) and steps >= 1), "env terrain: max_steps", "an integer >= 1", steps)
    canvas = options["canvas"]
    check(
        canvas is None or (integer(canvas) and canvas >= size),
        "env terrain: canvas",
        f"an integer >= size ({size})",
        canvas,
    )
    return options


class TerrainFamily:
    """Weighted-terrain grids (mazes with mud); a task is one grid. See :mod:`clonekit.envs.terrain`.

    Env kwargs: ``size`` (int, default 16), ``loop_fraction`` (float in [0, 1], default 0.5), ``mud_fraction``
    (float in [0, 1], default 0.3: about that share of free cells is mud), ``mud_cost`` (int, default 3: the cost
    of moving into mud; road costs 1), ``max_steps`` (int, default size*size/2) and ``canvas`` (int >= size:
    observe the grid in the top-left of a ``canvas`` x ``canvas`` map padded with wall).
    """

    name = "terrain"
    KWARGS = ("size", "loop_fraction", "mud_fraction", "mud_cost", "max_steps", "canvas")
    deterministic_tasks = False  # the start cell is drawn from the episode's seed
    action_names = maze.ACTION_NAMES

    def spaces(self, **kwargs: Any) -> tuple[gym.Space[Any], gym.Space[Any]]:
        options = check_options(kwargs)
        side = int(options["canvas"] or options["size"])
        obs = gym.spaces.Box(0, 1, (NUM_CHANNELS, side, side), dtype=np.uint8)
        return obs, gym.spaces.Discrete(NUM_ACTIONS)

    def _layout_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        options = check_options(kwargs)
        return {k: options[k] for k in ("size", "loop_fraction", "mud_fraction")}

    def sample_tasks(self, seed: int, split: str, count: int, exclude: set[str], **kwargs: Any) -> list[TerrainTask]:
        return sample_tasks(seed, split, count, exclude_layouts=exclude, **self._layout_kwargs(kwargs))

    def task_to_json(self, task: TerrainTask) -> dict[str, Any]:
        return {"terrain_seed": task.terrain_seed, "layout": task.layout_hash}

    def task_from_json(self, data: dict[str, Any], **kwargs: Any) -> TerrainTask:
        if not isinstance(data, dict) or not isinstance(data.get("terrain_seed"), int):
            raise ConfigError(f"terrain task: expected an object with an integer 'terrain_seed', found {data!r}")
        task = generate_terrain(data["terrain_seed"], **self._layout_kwargs(kwargs))
        if "layout" in data and data["layout"] != task.layout_hash:
            raise ConfigError(
                f"terrain task {data['terrain_seed']}: layout hash {data['layout']} recorded, but this clonekit "
                f"generates {task.layout_hash}; the terrain generator changed"
            )
        return task

    def task_key(self, task: TerrainTask) -> str:
        return task.layout_hash

    def make_vec(self, tasks: list[TerrainTask], **kwargs: Any) -> TerrainVecEnv:
        options = check_options(kwargs)
        return TerrainVecEnv(tasks, options["mud_cost"], options["max_steps"], options["canvas"])

    def restart(self, vec: TerrainVecEnv, first_obs: np.ndarray) -> np.ndarray:
        """Reset ``vec`` so that every slot starts at the agent cell of a recorded first observation ``(B, 4, H, W)``;
        returns the observations."""
        b, _, _, w = first_obs.shape
        flat = first_obs[:, AGENT].reshape(b, -1).argmax(axis=1)
        return vec.reset(starts=np.stack([flat // w, flat % w], axis=1))


class TerrainEnv(gym.Env[np.ndarray, np.int64]):
    """Gymnasium env for one terrain grid (a one-slot :class:`TerrainVecEnv`); ``info["cost"]`` is each step's cost.

    ``terrain_seed`` fixes the grid; without it, every ``reset(seed=...)`` draws a new grid from the seed. The other
    arguments are the family's env kwargs. ``render_mode="rgb_array"``: ``render()`` draws ``(8H, 8W, 3)`` uint8.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012 - gymnasium reads this

    def __init__(self, terrain_seed: int | None = None, render_mode: str | None = None, **kwargs: Any) -> None:
        check(render_mode in (None, "rgb_array"), "render_mode", "None or 'rgb_array'", render_mode)
        self.options = check_options(kwargs)
        self.terrain_seed = terrain_seed
        self.render_mode = render_mode
        side = int(self.options["canvas"] or self.options["size"])
        self.observation_space = gym.spaces.Box(0, 1, (NUM_CHANNELS, side, side), dtype=np.uint8)
        self.action_space = gym.spaces.Discrete(NUM_ACTIONS)
        self._vec: TerrainVecEnv | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        terrain_seed = self.terrain_seed if self.terrain_seed is not None else int(self.np_random.integers(0, 2**62))
        o = self.options
        task = generate_terrain(terrain_seed, o["size"], o["loop_fraction"], o["mud_fraction"])
        self._vec = TerrainVecEnv([task], o["mud_cost"], o["max_steps"], o["canvas"])
        obs = self._vec.reset(seed=int(self.np_random.integers(0, 2**62)))
        return obs[0], {"terrain_seed": terrain_seed}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._vec is None:
            raise RuntimeError("TerrainEnv.step called before reset")
        before = int(self._vec.path_cost[0])
        obs, reward, terminated, truncated = self._vec.step(np.array([action]))
        cost = int(self._vec.path_cost[0]) - before
        return obs[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), {"cost": cost}

    def render(self) -> np.ndarray:
        if self._vec is None:
            raise RuntimeError("TerrainEnv.render called before reset")
        return render_rgb(self._vec.observe()[0])
