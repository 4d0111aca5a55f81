"""The observation encoder of thought cloning for grid observations ``(C, H, W)`` (e.g. the maze's walls, agent
and goal channels): a small CNN, then one linear layer to the feature width."""

from __future__ import annotations

from torch import Tensor, nn


class GridEncoder(nn.Module):
    """``(N, C, H, W)`` (or flattened ``(N, C*H*W)``) grid observations -> ``(N, hidden_size)`` features.

    Two 3x3 convolutions keep the grid's size (so every cell keeps its own features, as the agent's
    neighbourhood matters cell by cell), then a linear layer over the whole map.
    """

    def __init__(self, obs_shape: tuple[int, ...], hidden_size: int, channels: int = 32) -> None:
        super().__init__()
        self.obs_shape = tuple(int(n) for n in obs_shape)
        c, h, w = self.obs_shape
        self.conv = nn.Sequential(
            nn.Conv2d(c, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
        )
        self.mix = nn.Linear(channels * h * w, hidden_size)

    def forward(self, obs: Tensor) -> Tensor:
        grid = obs.reshape(-1, *self.obs_shape).float()
        return nn.functional.relu(self.mix(self.conv(grid).flatten(1)))
