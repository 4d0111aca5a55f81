"""Configuration of weighted procedure cloning: procedure cloning of a cheapest-route (Dijkstra) search."""

from __future__ import annotations

from dataclasses import dataclass

from clonekit.config import check


@dataclass(frozen=True)
class WeightedProcedureCloningConfig:
    """Weighted procedure cloning: learn one level of the expert's Dijkstra search, then read the action off it.

    Args:
        obs_shape: ``(C, H, W)`` observation maps. Filled in from the dataset.
        num_actions: Number of discrete (move) actions. Filled in from the dataset.
        max_step_cost: The largest cost of one move, which bounds how many levels back a newly settled cell's
            neighbour may have been settled. Filled in from the dataset's procedure stream (the largest
            cost-to-go difference between two neighbouring settled cells).

        agent_channel: Observation channel marking the agent; every other channel (walls, goal, terrain) is an
            input of the search step.

        hidden_channels: Width of the per-cell network. The first layer is a 3x3 convolution restricted to a
            cell and its four neighbours, the rest are 1x1.
        num_layers: Number of layers after the 3x3 convolution (1x1, with ReLU).
        max_search_steps: Most search levels ``act`` will expand before it gives up and takes action 0;
            0 means ``max_step_cost * H * W``.
    """

    obs_shape: tuple[int, ...]
    num_actions: int
    max_step_cost: int = 1

    agent_channel: int = 1

    hidden_channels: int = 64
    num_layers: int = 2
    max_search_steps: int = 0

    def __post_init__(self) -> None:
        check(
            len(self.obs_shape) == 3 and self.obs_shape[0] >= 2 and all(d > 0 for d in self.obs_shape),
            "obs_shape",
            "(C, H, W) with C >= 2",
            self.obs_shape,
        )
        check(self.num_actions >= 2, "num_actions", ">= 2", self.num_actions)
        check(1 <= self.max_step_cost <= 64, "max_step_cost", "in [1, 64]", self.max_step_cost)
        channels = self.obs_shape[0]
        check(
            0 <= self.agent_channel < channels,
            "agent_channel",
            f"a channel index in [0, {channels})",
            self.agent_channel,
        )
        check(0 < self.hidden_channels <= 4096, "hidden_channels", "in [1, 4096]", self.hidden_channels)
        check(1 <= self.num_layers <= 64, "num_layers", "in [1, 64]", self.num_layers)
        check(self.max_search_steps >= 0, "max_search_steps", ">= 0", self.max_search_steps)
