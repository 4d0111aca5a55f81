"""Cheapest-route expert for weighted-terrain grids, which also writes down its search as the ``procedure``.

The expert runs Dijkstra's search outward from the goal (:func:`clonekit.envs.terrain.dijkstra_from_goal`) and
takes the first move of a cheapest route. Step costs are integers, so the search settles cells level by level
of cost-to-go ``t = 0, 1, 2, ...`` (Dial's bucket order). Its intermediate computation is the cost-to-go map it
has settled up to the agent's own level.

``procedure`` encoding, int16 array ``(2, H, W)`` per step (the layout of :mod:`clonekit.experts.bfs`):

* ``procedure[0]`` (``LAYER``): the cell's cost-to-go (the level at which the search settled it), or -1 when
  the search stopped before settling it (walls, cells dearer than the agent's).
* ``procedure[1]`` (``LABEL``): ``0`` not settled, ``1`` the goal, ``2 + a`` a cell from which action ``a`` starts
  a cheapest route.

The search stops after the level of the agent's cell, so the agent's label is the expert's action. Level ``t`` is
a local function of the levels before it: an unsettled cell is settled at ``t`` when a settled neighbour ``n``
has ``cost_to_go(n) + cost(n) == t`` (``cost(n)`` the cost of moving into ``n``), and takes the direction of the
first such neighbour in action order. Unlike breadth-first layers, level ``t`` depends on levels up to
``t - mud_cost``, so the learned step must also see how long ago each cell was settled.
"""

from __future__ import annotations

import numpy as np

from clonekit.data import StreamSpec, array_stream
from clonekit.envs.terrain import AGENT, MOVES, TerrainVecEnv, dijkstra_from_goal
from clonekit.experts.bfs import procedure_maps


class DijkstraExpert:
    """Cheapest-route terrain expert that writes its Dijkstra search as the procedure stream.

    See the module docstring for the encoding.
    """

    name = "dijkstra"

    def __init__(self) -> None:
        self._cost_to_go = np.zeros((0, 0, 0), dtype=np.int64)
        self._direction = np.zeros((0, 0, 0), dtype=np.int64)
        self._costs = np.zeros((0, 0, 0), dtype=np.int64)

    def streams(self, observation_shape: tuple[int, ...]) -> list[StreamSpec]:
        """Annotation streams this expert writes."""
        _, h, w = observation_shape
        return [array_stream("procedure", "int16", (2, h, w), "Dijkstra-from-goal cost-to-go and label maps")]

    def reset(self, env: TerrainVecEnv, seed: int | None = None) -> None:
        """Run the search for every slot's grid (walls, mud and goal are fixed for an episode); ``seed`` unused."""
        results = [dijkstra_from_goal(task, env.mud_cost) for task in env.tasks]
        self._cost_to_go = np.stack([v for v, _ in results])
        self._direction = np.stack([a for _, a in results])
        self._costs = env.costs.copy()
        if env.canvas is not None:  # maps the size of the observation: the canvas cells are walls, never settled
            h, w = self._cost_to_go.shape[1:]
            pad = ((0, 0), (0, env.canvas - h), (0, env.canvas - w))
            self._cost_to_go = np.pad(self._cost_to_go, pad, constant_values=-1)
            self._direction = np.pad(self._direction, pad, constant_values=-1)
            self._costs = np.pad(self._costs, pad, constant_values=0)

    def _agents(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b, _, _, w = obs.shape
        flat = obs[:, AGENT].reshape(b, -1).argmax(axis=1)
        return flat // w, flat % w

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Actions ``(B,)`` and annotations ``{"procedure": (B, 2, H, W)}`` for observations ``(B, 4, H, W)``."""
        rows, cols = self._agents(obs)
        idx = np.arange(len(obs))
        agent_cost = self._cost_to_go[idx, rows, cols]
        # At the goal the episode is over; any action is fine, 0 keeps it defined.
        actions = np.maximum(self._direction[idx, rows, cols], 0)
        return actions, {"procedure": procedure_maps(self._cost_to_go, self._direction, agent_cost)}

    def mistakes(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """``(B,)`` bool: the moves ``actions`` ``(B,)`` that start no cheapest route (any move at the goal is none)."""
        rows, cols = self._agents(obs)
        h, w = obs.shape[2:]
        moves = MOVES[np.asarray(actions, dtype=np.int64)]
        to_rows, to_cols = (rows + moves[:, 0]).clip(0, h - 1), (cols + moves[:, 1]).clip(0, w - 1)
        idx = np.arange(len(obs))
        before = self._cost_to_go[idx, rows, cols]
        after = self._cost_to_go[idx, to_rows, to_cols]
        step = self._costs[idx, to_rows, to_cols]
        return (before > 0) & ((after < 0) | (after + step != before))
