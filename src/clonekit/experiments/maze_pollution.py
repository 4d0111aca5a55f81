"""Maze demonstrations with injected defects and the ground truth of every injection, for ``maze-quality``.

Every training maze gets ``starts`` start cells, and every demonstrator plays every (maze, start) pair once, so
each pair has one attempt per demonstrator (best-of-N selects among them). Demonstrator kinds:

* ``expert``: the BFS shortest path (:func:`clonekit.envs.maze.bfs_from_goal`); clean.
* ``noisy``: the expert, but at each step with probability ``noise_rate`` the executed action is drawn
  uniformly from the *other* three actions (so every injected step really differs from the expert's action);
  the expert carries on from wherever that leaves it. Ground truth: those steps (``defect`` = ``noise``).
* ``wanderer``: the expert, but at each step with probability ``detour_rate`` (at most ``max_detours`` an
  episode) it makes an extraneous detour that returns to the cell it left: idling (``idle_steps`` moves
  into an adjacent wall) or an excursion (``excursion_cells`` cells along corridors it has not visited in the
  episode, then the same way back). Ground truth: every detour step (``defect`` = ``detour``). Detours never
  enter a cell visited earlier in the episode, so the loop back is exactly the detour.
* ``greedy``: an incompatible style: it heads for the goal greedily instead of planning (the free move that
  brings it closest to the goal by Manhattan distance, ties to the later action; the same cell always gets
  the same action) and gives up (the episode ends truncated) when that move would take it back to a cell it
  visited, so its routes never loop; it fails where the maze winds away from the goal. Ground truth: all its
  steps (``defect`` = ``style``).
* ``pauser``: the expert, but at a corner of its route (where the expert turns and the way it was heading is a
  wall) it pauses with probability ``pause_rate``: it keeps pushing the way it was heading, into the wall, for
  ``idle_steps`` moves before it turns, like a teleoperator overshooting a turn. Unlike a wanderer's idling,
  the pause is systematic: the same kind of state (a corner) gets the same wrong action (the old heading).
  Ground truth: the pause steps (``defect`` = ``detour``: they can be cut without changing the outcome).

The dataset has the streams ``obs``, ``action``, ``reward``, ``terminated``, ``truncated``, ``demonstrator``
(text: ``expert_0``, ``noisy_1``, ...) and ``defect`` (text per step: ``""``, ``noise``, ``detour``, ``style``),
the episode info ``task_index`` (the maze) and ``start_index`` (the maze's start cell), and the env block of
``clonekit collect`` (so evaluation finds the unseen mazes and recovery splicing can replay episodes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clonekit.config import check
from clonekit.data import Dataset, DatasetWriter, array_stream, text_stream
from clonekit.data.spaces import space_to_json
from clonekit.envs import get_env_family
from clonekit.envs.maze import MOVES, NUM_ACTIONS, MazeTask, MazeVecEnv, bfs_from_goal
from clonekit.seeding import derive_seed

KINDS = ("expert", "noisy", "wanderer", "greedy", "pauser")
DEFECT_OF = {"noisy": "noise", "wanderer": "detour", "greedy": "style", "pauser": "detour"}
DEFECT_STREAM = text_stream("defect", "injected ground truth: '', noise, detour or style")
DEMONSTRATOR_STREAM = text_stream("demonstrator", "who demonstrated the episode")


@dataclass(frozen=True)
class PollutionConfig:
    """Who demonstrates, and how much of each defect they inject.

    Args:
        experts: Clean BFS demonstrators.
        noisy: Demonstrators with random actions.
        wanderers: Demonstrators with extraneous detours.
        greedy: Demonstrators with the incompatible greedy style.
        pausers: Demonstrators that pause at corners, pushing into the wall.
        starts: Start cells per training maze; every demonstrator plays each once.
        noise_rate: Probability that a noisy demonstrator's step is a random other action.
        detour_rate: Probability per step that a wanderer starts a detour.
        max_detours: Most detours per wanderer episode.
        idle_steps: ``(min, max)`` moves into a wall of an idling detour.
        excursion_cells: ``(min, max)`` cells of an excursion (it takes twice as many steps, out and back).
        pause_rate: Probability that a pauser pauses at a corner (for ``idle_steps`` moves).
    """

    experts: int = 3
    noisy: int = 3
    wanderers: int = 2
    greedy: int = 2
    pausers: int = 0
    starts: int = 4
    noise_rate: float = 0.15
    detour_rate: float = 0.25
    max_detours: int = 2
    idle_steps: tuple[int, int] = (4, 6)
    excursion_cells: tuple[int, int] = (2, 3)
    pause_rate: float = 1.0

    def __post_init__(self) -> None:
        for name in ("experts", "starts"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        for name in ("noisy", "wanderers", "greedy", "pausers", "max_detours"):
            check(getattr(self, name) >= 0, name, ">= 0", getattr(self, name))
        for name in ("noise_rate", "detour_rate", "pause_rate"):
            check(0 <= getattr(self, name) <= 1, name, "in [0, 1]", getattr(self, name))
        for name in ("idle_steps", "excursion_cells"):
            low, high = getattr(self, name)
            check(1 <= low <= high, name, "(min, max) with 1 <= min <= max", getattr(self, name))

    def demonstrators(self) -> list[str]:
        """Demonstrator ids in play order: ``expert_0``, ..., ``noisy_0``, ..., ``wanderer_0``, ..., ``greedy_0``,
        ..., ``pauser_0``, ..."""
        counts = {
            "expert": self.experts,
            "noisy": self.noisy,
            "wanderer": self.wanderers,
            "greedy": self.greedy,
            "pauser": self.pausers,
        }
        return [f"{kind}_{i}" for kind in KINDS for i in range(counts[kind])]


class _Demonstrator:
    """Plays one episode on a one-slot maze env; returns actions one at a time, with the defect they carry."""

    def __init__(self, kind: str, task: MazeTask, config: PollutionConfig, rng: np.random.Generator) -> None:
        self.kind = kind
        self.task = task
        self.config = config
        self.rng = rng
        self.distance, self.direction = bfs_from_goal(task)
        self.visited: set[tuple[int, int]] = set()
        self.queue: list[int] = []  # the rest of a detour under way
        self.detours = 0
        self.heading: int | None = None  # a pauser's last move (the expert's action it last took)

    def _free(self, cell: tuple[int, int], action: int) -> bool:
        r, c = cell[0] + int(MOVES[action][0]), cell[1] + int(MOVES[action][1])
        return not self.task.walls[r, c]

    def _target(self, cell: tuple[int, int], action: int) -> tuple[int, int]:
        return cell[0] + int(MOVES[action][0]), cell[1] + int(MOVES[action][1])

    def act(self, cell: tuple[int, int]) -> tuple[int | None, str]:
        """The action in ``cell`` and its defect (``""`` when clean); ``None``: the demonstrator gives up."""
        self.visited.add(cell)
        expert = int(self.direction[cell])
        if self.queue:
            return self.queue.pop(0), "detour"
        if self.kind == "noisy" and self.rng.random() < self.config.noise_rate:
            others = [a for a in range(NUM_ACTIONS) if a != expert]
            return int(self.rng.choice(others)), "noise"
        if (
            self.kind == "wanderer"
            and self.detours < self.config.max_detours
            and self.rng.random() < self.config.detour_rate
        ):
            detour = self._detour(cell)
            if detour:
                self.detours += 1
                self.queue = detour[1:]
                return detour[0], "detour"
        if self.kind == "pauser":
            heading, self.heading = self.heading, expert
            if (
                heading is not None
                and heading != expert
                and not self._free(cell, heading)
                and self.rng.random() < self.config.pause_rate
            ):
                low, high = self.config.idle_steps
                self.queue = [heading] * (int(self.rng.integers(low, high + 1)) - 1)
                return heading, "detour"
        if self.kind == "greedy":
            moves = [a for a in range(NUM_ACTIONS) if self._free(cell, a)]
            best = min(reversed(moves), key=lambda a: self._manhattan(self._target(cell, a)))
            return (None, "style") if self._target(cell, best) in self.visited else (best, "style")
        return expert, ""

    def _manhattan(self, cell: tuple[int, int]) -> int:
        return abs(cell[0] - self.task.goal[0]) + abs(cell[1] - self.task.goal[1])

    def _detour(self, cell: tuple[int, int]) -> list[int]:
        """The actions of an idle or an excursion from ``cell`` (empty when neither fits here)."""
        kinds = ["idle", "excursion"]
        self.rng.shuffle(kinds)
        for kind in kinds:
            if kind == "idle":
                walls = [a for a in range(NUM_ACTIONS) if not self._free(cell, a)]
                if walls:
                    low, high = self.config.idle_steps
                    return [int(self.rng.choice(walls))] * int(self.rng.integers(low, high + 1))
                continue
            low, high = self.config.excursion_cells
            wanted = int(self.rng.integers(low, high + 1))
            path: list[int] = []
            here, seen = cell, set(self.visited)
            while len(path) < wanted:
                options = [
                    a
                    for a in range(NUM_ACTIONS)
                    if self._free(here, a)
                    and self._target(here, a) not in seen
                    and self._target(here, a) != self.task.goal
                ]
                if not options:
                    break
                step = int(self.rng.choice(options))
                here = self._target(here, step)
                seen.add(here)
                path.append(step)
            if len(path) >= low:
                back = {0: 1, 1: 0, 2: 3, 3: 2}
                return path + [back[a] for a in reversed(path)]
        return []


def _agent_cell(obs: np.ndarray) -> tuple[int, int]:
    r, c = np.argwhere(obs[1])[0]
    return int(r), int(c)


def _play(vec: MazeVecEnv, demonstrator: _Demonstrator, start: np.ndarray, who: str) -> dict[str, Any]:
    """One episode from ``start``; the streams of the dataset."""
    obs = vec.reset(starts=start[None])
    steps: dict[str, list[Any]] = {n: [] for n in ("obs", "action", "reward", "terminated", "truncated")}
    defects: list[str] = []
    done = False
    while not done:
        action, defect = demonstrator.act(_agent_cell(obs[0]))
        if action is None:  # the greedy demonstrator gives up: its last step ends the episode, truncated
            steps["truncated"][-1] = True
            break
        steps["obs"].append(obs[0])
        steps["action"].append(action)
        defects.append(defect)
        obs, reward, terminated, truncated = vec.step(np.array([action]))
        steps["reward"].append(float(reward[0]))
        steps["terminated"].append(bool(terminated[0]))
        steps["truncated"].append(bool(truncated[0]))
        done = bool(terminated[0] or truncated[0])
    episode: dict[str, Any] = {
        "obs": np.stack(steps["obs"]),
        "action": np.asarray(steps["action"], dtype=np.int64),
        "reward": np.asarray(steps["reward"], dtype=np.float32),
        "terminated": np.asarray(steps["terminated"], dtype=bool),
        "truncated": np.asarray(steps["truncated"], dtype=bool),
        "demonstrator": [who] * len(defects),
        "defect": defects,
    }
    return episode


def polluted_demonstrations(
    out: str | Path, tasks: list[MazeTask], config: PollutionConfig, seed: int, env_kwargs: dict[str, Any]
) -> Dataset:
    """Write the demonstrations of every demonstrator of ``config`` on every (maze, start) of ``tasks`` to ``out``
    (see the module docstring); episodes are ordered by maze, start, then demonstrator."""
    family = get_env_family("maze")
    obs_space, act_space = family.spaces(**env_kwargs)
    assert obs_space.shape is not None
    streams = [
        array_stream("obs", "uint8", obs_space.shape, "observation"),
        array_stream("action", "int64", (), "executed action"),
        array_stream("reward", "float32", ()),
        array_stream("terminated", "bool", ()),
        array_stream("truncated", "bool", ()),
        DEMONSTRATOR_STREAM,
        DEFECT_STREAM,
    ]
    env = {
        "id": family.name,
        "kwargs": env_kwargs,
        "expert": "polluted demonstrators (clonekit.experiments.maze_pollution)",
        "seed": seed,
        "tasks": [family.task_to_json(t) for t in tasks],
    }
    who_list = config.demonstrators()
    writer = DatasetWriter(
        out,
        streams,
        spaces={"observation": space_to_json(obs_space), "action": space_to_json(act_space)},
        env=env,
        episode_info=("task_index", "start_index"),
        extra={"pollution": {"demonstrators": who_list, **pollution_settings(config)}},
    )
    with writer:
        for m, task in enumerate(tasks):
            vec = MazeVecEnv([task], max_steps=env_kwargs.get("max_steps"))
            rng = np.random.default_rng(derive_seed(seed, f"pollution:starts:{m}"))
            free = task.free_cells()
            free = free[(free[:, 0] != task.goal[0]) | (free[:, 1] != task.goal[1])]
            starts = free[rng.choice(len(free), size=min(config.starts, len(free)), replace=False)]
            for s, start in enumerate(starts):
                for who in who_list:
                    kind = who.rsplit("_", 1)[0]
                    play_rng = np.random.default_rng(derive_seed(seed, f"pollution:{who}:{m}:{s}"))
                    episode = _play(vec, _Demonstrator(kind, task, config, play_rng), start, who)
                    writer.add_episode(episode, {"task_index": m, "start_index": s})
    return Dataset.open(out)


def pollution_settings(config: PollutionConfig) -> dict[str, Any]:
    """``config`` as recorded in a polluted dataset's ``extra["pollution"]`` (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.__dict__.items()}


def ground_truth(dataset: Dataset) -> dict[str, np.ndarray]:
    """``{defect: (N,) bool}`` per step from the ``defect`` stream: ``noise``, ``detour``, ``style``."""
    defects = np.asarray(dataset.column(DEFECT_STREAM.name), dtype=object)
    return {name: defects == name for name in DEFECT_OF.values()}


__all__ = ["DEFECT_OF", "KINDS", "PollutionConfig", "ground_truth", "polluted_demonstrations"]
