"""Configuration of procedure cloning (PC) for grid maps."""

from __future__ import annotations

from dataclasses import dataclass

from clonekit.config import check


@dataclass(frozen=True)
class ProcedureCloningConfig:
    """Procedure cloning: learn the expert's search one layer at a time, then read the action off it.

    Args:
        obs_shape: ``(C, H, W)`` observation maps. Filled in from the dataset.
        num_actions: Number of discrete (move) actions. Filled in from the dataset.

        wall_channel: Observation channel marking walls.
        agent_channel: Observation channel marking the agent.
        goal_channel: Observation channel marking the goal.

        hidden_channels: Width of the per-cell network. The first layer is a 3x3 convolution restricted to a
            cell and its four neighbours, the rest are 1x1, so one application sees exactly the
            neighbourhood a search step needs.
        num_layers: Number of layers after the 3x3 convolution (1x1, with ReLU).
        max_search_steps: Most search layers ``act`` will expand before it gives up and takes action 0;
            0 means ``H * W``.
    """

    obs_shape: tuple[int, ...]
    num_actions: int

    wall_channel: int = 0
    agent_channel: int = 1
    goal_channel: int = 2

    hidden_channels: int = 64
    num_layers: int = 2
    max_search_steps: int = 0

    def __post_init__(self) -> None:
        check(
            len(self.obs_shape) == 3 and all(d > 0 for d in self.obs_shape),
            "obs_shape",
            "(C, H, W)",
            self.obs_shape,
        )
        check(self.num_actions >= 2, "num_actions", ">= 2", self.num_actions)
        for field in ("wall_channel", "agent_channel", "goal_channel"):
            value = getattr(self, field)
            check(0 <= value < self.obs_shape[0], field, f"a channel index in [0, {self.obs_shape[0]})", value)
        check(0 < self.hidden_channels <= 4096, "hidden_channels", "in [1, 4096]", self.hidden_channels)
        check(1 <= self.num_layers <= 64, "num_layers", "in [1, 64]", self.num_layers)
        check(self.max_search_steps >= 0, "max_search_steps", ">= 0", self.max_search_steps)
