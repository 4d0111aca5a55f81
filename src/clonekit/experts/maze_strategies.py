"""Maze experts that reach the goal by different procedures and think aloud: ``thought`` and ``strategy`` streams.

Each expert reads the whole map (walls and goal of its slot's maze, the agent cell from the observation) and
plans its episode from the start cell, keeping memory of the cells it visited. Per step it writes a short
thought from a small vocabulary and the id of its strategy:

* ``bfs`` (shortest path): "follow shortest path" every step; each step brings it one move closer to the goal.
* ``dfs`` (depth-first exploration, fixed order up, down, left, right): "explore DIR" into an unvisited cell;
  at a junction (two or more unvisited neighbours) a verification first, "check DIR not visited", then the
  move; "check goal ahead" when the goal is a neighbour; at a dead end "dead end go back", then
  "backtrack DIR" back along the visited path until a cell with an unvisited neighbour.
* ``wall`` (left-hand wall following, heading up at the start): "keep left wall turn left" (the left cell is
  open), "keep left wall go straight" (left is wall, ahead open), "wall ahead turn right", "dead end turn
  around". It can circle forever around a loop that does not touch the goal; the episode then runs out.
* ``greedy`` (reduce the Manhattan distance to the goal): "move closer DIR" to an unvisited neighbour nearer
  the goal, "detour DIR" to the best unvisited one when none is nearer, "check goal ahead" next to the goal,
  and when stuck (no unvisited neighbour) "stuck go back", then "backtrack DIR" as ``dfs``.
* ``choose`` (the teacher): plans all four from the start and runs the one with the shortest successful
  episode; ties go to the procedure that searches least (``greedy``, ``wall``, ``dfs``, then ``bfs``). BFS is
  always among the shortest, so it is chosen where every cheaper procedure would take a detour, and every
  episode the teacher plays is a shortest path: the choice changes the narration, never how long the way is.
  With ``choice="random"`` it instead runs a uniformly drawn one of the procedures that reach the goal within
  the episode limit (drawn from the seed given to ``reset``), so the chosen procedures act differently too.

``strategy`` stream: int64 per step, the index in :data:`STRATEGIES` (``0`` bfs, ``1`` dfs, ``2`` wall,
``3`` greedy) of the procedure that produced the step (for ``choose``, the chosen one). With
``prefix_thoughts=True`` every thought starts with that strategy's name ("dfs explore up"), so a thought
cloning agent trained on the data states its choice in words.

Each procedure's words are its own, so a thought names its strategy even without the prefix
(:func:`thought_strategies` reads it back; :data:`VOCABULARY` lists every pattern). With
``shared_vocabulary=True`` all four narrate the same steps in one vocabulary, "go DIR", "check DIR" (a dfs
junction check, a greedy detour, a wall ahead) and "go back DIR" (a dead end and the way back), with DIR the
move's direction: then only the prefix tells the strategies apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from clonekit.data import StreamSpec, array_stream, text_stream
from clonekit.envs.maze import ACTION_NAMES, AGENT, MOVES, MazeTask, MazeVecEnv, bfs_from_goal
from clonekit.errors import ConfigError

STRATEGIES = ("bfs", "dfs", "wall", "greedy")
# The chooser's tie order among equally short episodes: the procedure that searches least first.
CHOICE_ORDER = ("greedy", "wall", "dfs", "bfs")
CHOICES = ("shortest", "random")  # how the chooser picks among the successful procedures
UP, DOWN, LEFT, RIGHT = 0, 1, 2, 3
LEFT_OF = {UP: LEFT, LEFT: DOWN, DOWN: RIGHT, RIGHT: UP}
RIGHT_OF = {UP: RIGHT, RIGHT: DOWN, DOWN: LEFT, LEFT: UP}
BACK_OF = {UP: DOWN, DOWN: UP, LEFT: RIGHT, RIGHT: LEFT}

Cell = tuple[int, int]


@dataclass
class Plan:
    """One planned episode: the cell before each step, its action and thought, and whether it reaches the goal."""

    strategy: str
    cells: list[Cell] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    thoughts: list[str] = field(default_factory=list)
    success: bool = False

    def add(self, cell: Cell, action: int, thought: str) -> Cell:
        """Record one step from ``cell``; returns the cell it leads to."""
        self.cells.append(cell)
        self.actions.append(action)
        self.thoughts.append(thought)
        return _step(cell, action)


def _step(cell: Cell, action: int) -> Cell:
    return cell[0] + int(MOVES[action][0]), cell[1] + int(MOVES[action][1])


def _free(walls: np.ndarray, cell: Cell) -> bool:
    h, w = walls.shape
    return 0 <= cell[0] < h and 0 <= cell[1] < w and not walls[cell]


def _manhattan(a: Cell, b: Cell) -> int:
    return abs(a[0] - b[0]) + abs(a[1] - b[1])


def plan_bfs(task: MazeTask, start: Cell, max_steps: int) -> Plan:
    """Shortest path along the BFS-from-goal directions."""
    plan, cell = Plan("bfs"), start
    _, direction = bfs_from_goal(task)
    while cell != task.goal and len(plan.actions) < max_steps and direction[cell] >= 0:
        cell = plan.add(cell, int(direction[cell]), "follow shortest path")
    plan.success = cell == task.goal
    return plan


def _explore(task: MazeTask, start: Cell, max_steps: int, greedy: bool) -> Plan:
    """Depth-first exploration with backtracking: fixed action order (``dfs``) or nearest-to-goal first
    (``greedy``)."""
    plan = Plan("greedy" if greedy else "dfs")
    path, visited, backtracking = [start], {start}, False
    while path[-1] != task.goal and len(plan.actions) < max_steps:
        cell = path[-1]
        options = [a for a in range(4) if _free(task.walls, _step(cell, a)) and _step(cell, a) not in visited]
        if greedy:
            options.sort(key=lambda a: (_manhattan(_step(cell, a), task.goal), a))
        goal_moves = [a for a in options if _step(cell, a) == task.goal]
        if options:
            action = goal_moves[0] if goal_moves else options[0]
            name = ACTION_NAMES[action]
            if goal_moves:
                thought = "check goal ahead"
            elif greedy:
                closer = _manhattan(_step(cell, action), task.goal) < _manhattan(cell, task.goal)
                thought = f"move closer {name}" if closer else f"detour {name}"
            else:
                thought = f"check {name} not visited" if len(options) >= 2 else f"explore {name}"
            nxt = plan.add(cell, action, thought)
            visited.add(nxt)
            path.append(nxt)
            backtracking = False
        elif len(path) >= 2:
            back = path[-2]
            action = next(a for a in range(4) if _step(cell, a) == back)
            first = "stuck go back" if greedy else "dead end go back"
            plan.add(cell, action, f"backtrack {ACTION_NAMES[action]}" if backtracking else first)
            path.pop()
            backtracking = True
        else:  # everything reachable was visited: the goal is not reachable
            break
    plan.success = path[-1] == task.goal
    return plan


def plan_dfs(task: MazeTask, start: Cell, max_steps: int) -> Plan:
    """Depth-first exploration in action order, with junction checks and dead-end backtracking."""
    return _explore(task, start, max_steps, greedy=False)


def plan_greedy(task: MazeTask, start: Cell, max_steps: int) -> Plan:
    """Greedy descent of the Manhattan distance, detours when none is closer, backtracking when stuck."""
    return _explore(task, start, max_steps, greedy=True)


WALL_THOUGHTS = {
    "left": "keep left wall turn left",
    "straight": "keep left wall go straight",
    "right": "wall ahead turn right",
    "back": "dead end turn around",
}


def plan_wall(task: MazeTask, start: Cell, max_steps: int) -> Plan:
    """Left-hand wall following from heading up: turn left if open, else straight, else right, else back."""
    plan, cell, heading = Plan("wall"), start, UP
    while cell != task.goal and len(plan.actions) < max_steps:
        turns = [("left", LEFT_OF[heading]), ("straight", heading), ("right", RIGHT_OF[heading])]
        turns.append(("back", BACK_OF[heading]))
        open_turns = [(turn, a) for turn, a in turns if _free(task.walls, _step(cell, a))]
        if not open_turns:  # a walled-in start cell
            break
        turn, heading = open_turns[0]
        cell = plan.add(cell, heading, WALL_THOUGHTS[turn])
    plan.success = cell == task.goal
    return plan


PLANNERS = {"bfs": plan_bfs, "dfs": plan_dfs, "wall": plan_wall, "greedy": plan_greedy}

# Every thought a procedure writes, as a word pattern ("DIR": a direction in ACTION_NAMES), and its wording in
# the shared vocabulary: the same rule, in words that no longer tell the procedures apart.
VOCABULARY: dict[str, dict[str, str]] = {
    "bfs": {"follow shortest path": "go DIR"},
    "dfs": {
        "explore DIR": "go DIR",
        "check DIR not visited": "check DIR",
        "check goal ahead": "go DIR",
        "dead end go back": "go back DIR",
        "backtrack DIR": "go back DIR",
    },
    "wall": {
        WALL_THOUGHTS["left"]: "go DIR",
        WALL_THOUGHTS["straight"]: "go DIR",
        WALL_THOUGHTS["right"]: "check DIR",
        WALL_THOUGHTS["back"]: "go back DIR",
    },
    "greedy": {
        "move closer DIR": "go DIR",
        "detour DIR": "check DIR",
        "check goal ahead": "go DIR",
        "stuck go back": "go back DIR",
        "backtrack DIR": "go back DIR",
    },
}
SHARED_VOCABULARY = ("go DIR", "check DIR", "go back DIR")


def _fits(pattern: str, words: list[str]) -> bool:
    expected = pattern.split()
    return len(expected) == len(words) and all(
        e == w or (e == "DIR" and w in ACTION_NAMES) for e, w in zip(expected, words, strict=True)
    )


def shared_thought(strategy: str, thought: str, action: int) -> str:
    """``thought``, written by ``strategy`` for ``action``, in the shared vocabulary ("detour up" -> "check up")."""
    words = thought.split()
    for pattern, shared in VOCABULARY[strategy].items():
        if _fits(pattern, words):
            return shared.replace("DIR", ACTION_NAMES[action])
    raise ValueError(f"{strategy}: thought {thought!r} matches none of {list(VOCABULARY[strategy])}")


def thought_strategies(thought: str) -> frozenset[str]:
    """The strategies whose vocabulary holds ``thought``, with or without a leading strategy name.

    One strategy for words only it uses ("move closer up": greedy), several for words they share ("backtrack
    up": dfs and greedy; any shared-vocabulary thought: all four), none for words of no vocabulary.
    """
    words = thought.split()
    # "wall ahead turn right" starts with a strategy's name but is no prefixed thought: try both readings.
    readings = [words, words[1:]] if words and words[0] in STRATEGIES else [words]
    if any(_fits(pattern, r) for pattern in SHARED_VOCABULARY for r in readings):
        return frozenset(STRATEGIES)
    return frozenset(s for s, patterns in VOCABULARY.items() for p in patterns for r in readings if _fits(p, r))


def strategy_switches(labels: Sequence[frozenset[str]]) -> int:
    """The fewest changes of strategy along an episode whose step ``t`` may come from any strategy in
    ``labels[t]`` (e.g. :func:`thought_strategies` of its thought); empty sets (no vocabulary) are skipped.

    0 when one strategy explains every step. Greedy: keep the strategies that explain the steps since the last
    change, and count a change where none explains the next step (this gives the fewest).
    """
    current, switches = frozenset(STRATEGIES), 0
    for label in labels:
        if not label:
            continue
        if current & label:
            current &= label
        else:
            current, switches = label, switches + 1
    return switches


def plan_strategy(
    strategy: str, task: MazeTask, start: Cell, max_steps: int, rng: np.random.Generator | None = None
) -> Plan:
    """The episode that ``strategy`` (one of :data:`STRATEGIES`, or ``"choose"``, with ``rng`` the random
    choice) plays from ``start``."""
    if strategy != "choose":
        return PLANNERS[strategy](task, start, max_steps)
    return choose_plan(task, start, max_steps, rng)


def choose_plan(task: MazeTask, start: Cell, max_steps: int, rng: np.random.Generator | None = None) -> Plan:
    """The teacher's choice: the shortest successful plan of the four (ties: :data:`CHOICE_ORDER`), or with
    ``rng`` a uniformly drawn successful one."""
    plans = [PLANNERS[name](task, start, max_steps) for name in CHOICE_ORDER]
    successful = [p for p in plans if p.success]
    if not successful:  # the goal is unreachable from start (never in generated mazes): BFS's empty plan
        return plans[-1]
    if rng is not None:
        return successful[int(rng.integers(len(successful)))]
    return min(successful, key=lambda p: len(p.actions))  # min keeps the first of equals: the tie order


class MazeStrategyExpert:
    """A maze expert following one procedure (see the module docstring), writing ``thought`` and ``strategy``.

    Args:
        strategy: One of ``bfs``, ``dfs``, ``wall``, ``greedy``, or ``choose`` (per episode, the shortest
            successful procedure from the start).
        prefix_thoughts: Start every thought with the strategy's name ("dfs explore up").
        shared_vocabulary: Narrate in the vocabulary all strategies share ("go up", "check left", "go back
            down"; see :data:`VOCABULARY`) instead of each strategy's own words.
        choice: How ``choose`` picks: ``"shortest"`` (the shortest successful procedure) or ``"random"`` (a
            uniformly drawn successful one, from the seed given to :meth:`reset`). Only for ``choose``.
    """

    name = "strategies"

    def __init__(
        self,
        strategy: str = "bfs",
        prefix_thoughts: bool = False,
        shared_vocabulary: bool = False,
        choice: str = "shortest",
    ) -> None:
        if strategy not in (*STRATEGIES, "choose"):
            raise ConfigError(f"maze expert: strategy: expected one of {[*STRATEGIES, 'choose']}, got {strategy!r}")
        if choice not in CHOICES:
            raise ConfigError(f"maze expert: choice: expected one of {list(CHOICES)}, got {choice!r}")
        if choice != "shortest" and strategy != "choose":
            raise ConfigError(f"maze expert: choice: only the 'choose' expert chooses, got {choice!r} for {strategy!r}")
        self.strategy = strategy
        self.prefix_thoughts = bool(prefix_thoughts)
        self.shared_vocabulary = bool(shared_vocabulary)
        self.choice = choice
        self._rng: np.random.Generator | None = None
        self._tasks: list[MazeTask] = []
        self._max_steps = 0
        self._plans: list[Plan | None] = []
        self._progress: list[int] = []

    def streams(self, observation_shape: tuple[int, ...]) -> list[StreamSpec]:
        """Annotation streams this expert writes."""
        return [
            text_stream("thought", "what the maze expert is doing, e.g. 'dead end go back'"),
            array_stream("strategy", "int64", (), f"index of the procedure in {list(STRATEGIES)}"),
        ]

    def reset(self, env: MazeVecEnv, seed: int | None = None) -> None:
        """Forget the plans; each slot plans from its first observed cell. The procedures are deterministic;
        ``seed`` (None: 0) seeds only the random choice."""
        self._rng = np.random.default_rng(seed or 0) if self.choice == "random" else None
        self._tasks = list(env.tasks)
        self._max_steps = int(env.max_steps)
        self._plans = [None] * len(self._tasks)
        self._progress = [0] * len(self._tasks)

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Actions ``(B,)`` and ``{"thought": (B,) str, "strategy": (B,) int64}`` for observations ``(B, 3, H, W)``.

        A slot whose agent is not where its plan expected (its previous action was not the planned one) plans
        again from there, with a fresh memory. A slot at its goal gets action 0 and an empty thought.
        """
        b, _, _, w = obs.shape
        flat = obs[:, AGENT].reshape(b, -1).argmax(axis=1)
        actions = np.zeros(b, dtype=np.int64)
        strategies = np.zeros(b, dtype=np.int64)
        thoughts = np.array([""] * b, dtype=object)
        for i in range(b):
            cell = (int(flat[i] // w), int(flat[i] % w))
            plan, t = self._plans[i], self._progress[i]
            if plan is None or t >= len(plan.cells) or plan.cells[t] != cell:
                plan, t = plan_strategy(self.strategy, self._tasks[i], cell, self._max_steps, self._rng), 0
                self._plans[i] = plan
            strategies[i] = STRATEGIES.index(plan.strategy)
            if t < len(plan.actions):
                actions[i] = plan.actions[t]
                thought = plan.thoughts[t]
                if self.shared_vocabulary:
                    thought = shared_thought(plan.strategy, thought, plan.actions[t])
                thoughts[i] = f"{plan.strategy} {thought}" if self.prefix_thoughts else thought
            self._progress[i] = t + 1
        return actions, {"thought": thoughts, "strategy": strategies}


def strategy_expert(strategy: str) -> type[MazeStrategyExpert]:
    """A :class:`MazeStrategyExpert` subclass fixed to ``strategy`` (the registered ``STRATEGY-thoughts``)."""

    class Fixed(MazeStrategyExpert):
        def __init__(
            self, prefix_thoughts: bool = False, shared_vocabulary: bool = False, choice: str = "shortest"
        ) -> None:
            super().__init__(strategy, prefix_thoughts, shared_vocabulary, choice)

    Fixed.name = f"{strategy}-thoughts"
    Fixed.__name__ = Fixed.__qualname__ = f"{strategy.capitalize()}ThoughtsExpert"
    Fixed.__doc__ = f"The ``{strategy}`` maze expert with thoughts (see :class:`MazeStrategyExpert`)."
    return Fixed


__all__ = [
    "CHOICES",
    "CHOICE_ORDER",
    "SHARED_VOCABULARY",
    "STRATEGIES",
    "VOCABULARY",
    "MazeStrategyExpert",
    "Plan",
    "choose_plan",
    "plan_bfs",
    "plan_dfs",
    "plan_greedy",
    "plan_strategy",
    "plan_wall",
    "shared_thought",
    "strategy_expert",
    "strategy_switches",
    "thought_strategies",
]
