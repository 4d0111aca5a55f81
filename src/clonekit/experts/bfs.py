"""Breadth-first-search expert for the maze, which also writes down its search as the ``procedure``.

The expert runs a BFS outward from the goal and moves along the shortest path. Its intermediate
computation is the map of labels the search writes, layer by layer, until the frontier reaches the agent.

``procedure`` encoding, int16 array ``(2, H, W)`` per step:

* ``procedure[0]`` (``LAYER``): the BFS layer (= moves to the goal) at which the cell was labelled, or -1
  when the search stopped before reaching it (walls, cells farther from the goal than the agent).
* ``procedure[1]`` (``LABEL``): ``0`` not labelled, ``1`` the goal, ``2 + a`` a cell from which action ``a``
  (0 up, 1 down, 2 left, 3 right) moves one step closer to the goal.

The search stops after the layer that contains the agent, so the agent's own label is the expert action.
Layer ``k`` is a local function of layer ``k - 1``: an unlabelled free cell next to a labelled one gets the
direction of its first labelled neighbour in action order. That locality is what lets a convolutional
network learn the procedure on a few mazes and run it on new ones.
"""

from __future__ import annotations

import numpy as np

from clonekit.data import StreamSpec, array_stream
from clonekit.envs.maze import AGENT, MOVES, MazeVecEnv, bfs_from_goal

LAYER, LABEL = 0, 1
UNLABELLED, GOAL_LABEL, FIRST_ACTION_LABEL = 0, 1, 2
NUM_LABELS = 6


def procedure_maps(distance: np.ndarray, direction: np.ndarray, agent_distance: np.ndarray) -> np.ndarray:
    """Procedure maps ``(B, 2, H, W)`` int16 for search results ``(B, H, W)`` stopped at ``agent_distance`` ``(B,)``."""
    reached = (distance >= 0) & (distance <= agent_distance[:, None, None])
    labels = np.where(direction >= 0, direction + FIRST_ACTION_LABEL, GOAL_LABEL)
    out = np.empty((distance.shape[0], 2, *distance.shape[1:]), dtype=np.int16)
    out[:, LAYER] = np.where(reached, distance, -1)
    out[:, LABEL] = np.where(reached, labels, UNLABELLED)
    return out


class BFSExpert:
    """Shortest-path maze expert that writes its breadth-first search as the procedure stream.

    See the module docstring for the encoding.
    """

    name = "bfs"

    def __init__(self) -> None:
        self._distance = np.zeros((0, 0, 0), dtype=np.int64)
        self._direction = np.zeros((0, 0, 0), dtype=np.int64)

    def streams(self, observation_shape: tuple[int, ...]) -> list[StreamSpec]:
        """Annotation streams this expert writes."""
        _, h, w = observation_shape
        return [array_stream("procedure", "int16", (2, h, w), "BFS-from-goal layer and label maps")]

    def reset(self, env: MazeVecEnv, seed: int | None = None) -> None:
        """Run the search for every slot's maze (the goal and walls are fixed for an episode).

        The search is deterministic, so ``seed`` (the collection's per-batch seed) is not used.
        """
        results = [bfs_from_goal(task) for task in env.tasks]
        self._distance = np.stack([d for d, _ in results])
        self._direction = np.stack([a for _, a in results])
        canvas = getattr(env, "canvas", None)
        if canvas is not None:  # maps the size of the observation: the canvas cells are walls, never reached
            h, w = self._distance.shape[1:]
            pad = ((0, 0), (0, canvas - h), (0, canvas - w))
            self._distance = np.pad(self._distance, pad, constant_values=-1)
            self._direction = np.pad(self._direction, pad, constant_values=-1)

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Actions ``(B,)`` and annotations ``{"procedure": (B, 2, H, W)}`` for observations ``(B, 3, H, W)``."""
        b, _, _, w = obs.shape
        flat = obs[:, AGENT].reshape(b, -1).argmax(axis=1)
        rows, cols = flat // w, flat % w
        idx = np.arange(b)
        agent_distance = self._distance[idx, rows, cols]
        # At the goal (distance 0) the episode is over; any action is fine, 0 keeps it defined.
        actions = np.maximum(self._direction[idx, rows, cols], 0)
        return actions, {"procedure": procedure_maps(self._distance, self._direction, agent_distance)}

    def mistakes(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """``(B,)`` bool: the moves ``actions`` ``(B,)`` from observations ``(B, 3, H, W)`` that do not bring the
        agent closer to the goal (the judge of :mod:`clonekit.quality.recovery`); any move at the goal is none."""
        b, _, h, w = obs.shape
        flat = obs[:, AGENT].reshape(b, -1).argmax(axis=1)
        rows, cols = flat // w, flat % w
        moves = MOVES[np.asarray(actions, dtype=np.int64)]
        target_rows, target_cols = (rows + moves[:, 0]).clip(0, h - 1), (cols + moves[:, 1]).clip(0, w - 1)
        idx = np.arange(b)
        before = self._distance[idx, rows, cols]
        after = self._distance[idx, target_rows, target_cols]
        return (before > 0) & ((after < 0) | (after >= before))
