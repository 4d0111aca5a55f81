"""Pixel observations for the maze and Avoiding, drawn with numpy (no OpenGL).

The env option ``obs="pixels"`` of the ``maze``, ``avoiding`` and ``avoiding-goal`` families turns the
observation into an RGB picture, ``uint8 (3, H, W)``, of the same state; tasks, splits, dynamics and
rewards are those of the state env. Experts keep reading the state: a :class:`PixelVecEnv` keeps the
state env it draws as ``state_env``, and collection gives the expert that env and its observations.

* Maze: every cell is a ``cell_pixels`` x ``cell_pixels`` square (default 4, so a 16x16 maze is 64x64):
  floor light grey, walls dark blue-grey, the goal green, the agent red (the agent is drawn over the goal).
* Avoiding: an ``image_size`` x ``image_size`` picture (default 64) of the arena (x in [-1, 1] left to
  right, y in [0, 1.1] bottom to top): obstacles grey, the finish line green, the agent a red disc of
  radius ``AGENT_DRAW_RADIUS`` (larger than its collision radius, so it covers a few pixels).

Gymnasium ids: ``clonekit/MazePixels-v0`` and ``clonekit/AvoidingPixels-v0``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from clonekit.envs import avoiding, maze
from clonekit.errors import ConfigError

OBS_KINDS = ("state", "pixels")
DEFAULT_CELL_PIXELS = 4
DEFAULT_IMAGE_SIZE = 64
AGENT_DRAW_RADIUS = 0.04

# Options of the maze family about pixels (besides ``obs``), and of the Avoiding families.
MAZE_OPTIONS = ("obs", "cell_pixels")
AVOIDING_OPTIONS = ("obs", "image_size")

# Maze palette, indexed by what a cell holds: floor, wall, goal, agent (as ``maze.render_rgb``).
MAZE_PALETTE = np.array([(235, 235, 235), (40, 40, 60), (40, 170, 70), (220, 60, 50)], dtype=np.uint8)
AVOIDING_BACKGROUND = (235, 235, 235)
AVOIDING_OBSTACLE = (110, 110, 120)
AVOIDING_FINISH = (40, 170, 70)
AVOIDING_AGENT = (220, 60, 50)


def wants_pixels(kwargs: dict[str, Any]) -> bool:
    """Whether env options ``kwargs`` ask for pixel observations."""
    return kwargs.get("obs", "state") == "pixels"


def state_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Env options ``kwargs`` without the pixel options: those of the state env underneath."""
    return {k: v for k, v in kwargs.items() if k not in (*MAZE_OPTIONS, *AVOIDING_OPTIONS)}


def check_options(env: str, kwargs: dict[str, Any]) -> None:
    """Check the pixel options in env options ``kwargs`` of family ``env`` (errors name the option)."""
    kind = kwargs.get("obs", "state")
    if kind not in OBS_KINDS:
        raise ConfigError(f"env {env}: obs: expected one of {list(OBS_KINDS)}, got {kind!r}")
    for name, low, high in (("cell_pixels", 1, 32), ("image_size", 8, 512)):
        if name not in kwargs:
            continue
        value = kwargs[name]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ConfigError(f"env {env}: {name}: expected an integer in [{low}, {high}], got {value!r}")
        if kind != "pixels":
            raise ConfigError(f"env {env}: {name}: only used with obs 'pixels', but obs is {kind!r}")


def render_maze(obs: np.ndarray, cell_pixels: int = DEFAULT_CELL_PIXELS) -> np.ndarray:
    """RGB pictures ``(B, 3, H * cell_pixels, W * cell_pixels)`` uint8 of maze observations ``(B, 3, H, W)``."""
    content = np.where(obs[:, maze.WALL] > 0, 1, 0)
    content = np.where(obs[:, maze.GOAL] > 0, 2, content)
    content = np.where(obs[:, maze.AGENT] > 0, 3, content)  # (B, H, W)
    cells = content.repeat(cell_pixels, axis=1).repeat(cell_pixels, axis=2)
    return np.ascontiguousarray(MAZE_PALETTE[cells].transpose(0, 3, 1, 2))


def _pixel_centres(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Arena coordinates ``x (S,)`` (columns) and ``y (S,)`` (rows, top first) of the pixel centres."""
    steps = (np.arange(image_size) + 0.5) / image_size
    x = avoiding.ARENA_X[0] + steps * (avoiding.ARENA_X[1] - avoiding.ARENA_X[0])
    y = avoiding.ARENA_Y[1] - steps * (avoiding.ARENA_Y[1] - avoiding.ARENA_Y[0])
    return x, y


def avoiding_background(image_size: int = DEFAULT_IMAGE_SIZE) -> np.ndarray:
    """The arena without the agent, ``(S, S, 3)`` uint8: obstacles and the finish line."""
    x, y = _pixel_centres(image_size)
    image = np.empty((image_size, image_size, 3), dtype=np.uint8)
    image[:] = AVOIDING_BACKGROUND
    row_height = (avoiding.ARENA_Y[1] - avoiding.ARENA_Y[0]) / image_size
    image[np.abs(y - avoiding.FINISH_Y) <= row_height / 2] = AVOIDING_FINISH
    for ox, oy in avoiding.OBSTACLES:
        inside = (x[None, :] - ox) ** 2 + (y[:, None] - oy) ** 2 < avoiding.OBSTACLE_RADIUS**2
        image[inside] = AVOIDING_OBSTACLE
    return image


def render_avoiding(positions: np.ndarray, image_size: int = DEFAULT_IMAGE_SIZE) -> np.ndarray:
    """RGB pictures ``(B, 3, S, S)`` uint8 of agent positions ``(B, 2)`` in the Avoiding arena."""
    x, y = _pixel_centres(image_size)
    images = np.repeat(avoiding_background(image_size)[None], len(positions), axis=0)
    dx = x[None, None, :] - positions[:, 0, None, None]
    dy = y[None, :, None] - positions[:, 1, None, None]
    images[dx**2 + dy**2 < AGENT_DRAW_RADIUS**2] = AVOIDING_AGENT
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def maze_pixel_space(size: int, cell_pixels: int) -> gym.spaces.Box:
    """Observation space of the pixel maze: ``uint8 (3, size * cell_pixels, size * cell_pixels)``."""
    return gym.spaces.Box(0, 255, (3, size * cell_pixels, size * cell_pixels), dtype=np.uint8)


def avoiding_pixel_space(image_size: int) -> gym.spaces.Box:
    """Observation space of pixel Avoiding: ``uint8 (3, image_size, image_size)``."""
    return gym.spaces.Box(0, 255, (3, image_size, image_size), dtype=np.uint8)


class PixelVecEnv:
    """A batched env whose observations are pictures of another batched env's state.

    ``state_env`` (a :class:`~clonekit.envs.maze.MazeVecEnv` or
    :class:`~clonekit.envs.avoiding.AvoidingVecEnv`) does the stepping; ``draw`` maps its observations
    ``(B, ...)`` to pictures ``(B, 3, H, W)`` uint8. Experts read ``state_env`` (see
    :func:`clonekit.experts.collect.collect`).
    """

    def __init__(self, state_env: Any, draw: Callable[[np.ndarray], np.ndarray]) -> None:
        self.state_env = state_env
        self.draw = draw
        self.num_envs: int = state_env.num_envs
        self.tasks: list[Any] = state_env.tasks

    def reset(self, seed: int | None = None, **options: Any) -> np.ndarray:
        """Reset the state env (``options`` go to its ``reset``); returns pictures ``(B, 3, H, W)``."""
        return self.draw(self.state_env.reset(seed=seed, **options))

    def observe(self) -> np.ndarray:
        """Pictures ``(B, 3, H, W)`` uint8 of the current state."""
        return self.draw(self.state_env.observe())

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Step the state env; returns ``(pictures, reward, terminated, truncated)``."""
        obs, reward, terminated, truncated = self.state_env.step(actions)
        return self.draw(obs), reward, terminated, truncated

    def halt(self, mask: np.ndarray) -> None:
        """End the slots in ``mask`` now (see the state env's ``halt``)."""
        self.state_env.halt(mask)

    def policy_inputs(self) -> dict[str, np.ndarray]:
        """The state env's inputs for the policy besides ``obs`` (e.g. goals), if it gives any."""
        inputs = getattr(self.state_env, "policy_inputs", None)
        return inputs() if inputs is not None else {}


def maze_pixels(state_env: maze.MazeVecEnv, kwargs: dict[str, Any]) -> PixelVecEnv:
    """The pixel maze over ``state_env`` with the options in ``kwargs`` (``cell_pixels``)."""
    cell_pixels = int(kwargs.get("cell_pixels", DEFAULT_CELL_PIXELS))
    return PixelVecEnv(state_env, lambda obs: render_maze(obs, cell_pixels))


def avoiding_pixels(state_env: avoiding.AvoidingVecEnv, kwargs: dict[str, Any]) -> PixelVecEnv:
    """Pixel Avoiding over ``state_env`` with the options in ``kwargs`` (``image_size``)."""
    image_size = int(kwargs.get("image_size", DEFAULT_IMAGE_SIZE))
    return PixelVecEnv(state_env, lambda obs: render_avoiding(obs, image_size))


class MazePixelsEnv(maze.MazeEnv):
    """Gymnasium env of the pixel maze: :class:`~clonekit.envs.maze.MazeEnv` observed as an RGB picture."""

    def __init__(
        self,
        maze_seed: int | None = None,
        size: int = maze.DEFAULT_SIZE,
        loop_fraction: float = maze.DEFAULT_LOOP_FRACTION,
        max_steps: int | None = None,
        render_mode: str | None = None,
        cell_pixels: int = DEFAULT_CELL_PIXELS,
    ) -> None:
        super().__init__(maze_seed, size, loop_fraction, max_steps, render_mode)
        self.cell_pixels = cell_pixels
        self.observation_space = maze_pixel_space(size, cell_pixels)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = super().reset(seed=seed, options=options)
        return render_maze(obs[None], self.cell_pixels)[0], info

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        return render_maze(obs[None], self.cell_pixels)[0], reward, terminated, truncated, info


class AvoidingPixelsEnv(avoiding.AvoidingEnv):
    """Gymnasium env of pixel Avoiding: :class:`~clonekit.envs.avoiding.AvoidingEnv` observed as an RGB picture."""

    def __init__(
        self,
        start: tuple[float, float] | None = None,
        max_steps: int | None = None,
        image_size: int = DEFAULT_IMAGE_SIZE,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(start, max_steps, render_mode)
        self.image_size = image_size
        self.observation_space = avoiding_pixel_space(image_size)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = super().reset(seed=seed, options=options)
        return render_avoiding(obs[None], self.image_size)[0], info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        return render_avoiding(obs[None], self.image_size)[0], reward, terminated, truncated, info
