"""clonekit's gymnasium ids, registered by ``import clonekit``.

``import clonekit, gymnasium; gymnasium.make("clonekit/Maze-v0")`` works without importing ``clonekit.envs``:
the ids are registered with their entry points as strings, so gymnasium imports an env's module only when
the env is made, and ``import clonekit`` adds no import but gymnasium's own. Every env takes
``render_mode="rgb_array"`` (``render()`` draws an ``(H, W, 3)`` uint8 frame with numpy, no OpenGL).
"""

from __future__ import annotations

import gymnasium as gym

# gymnasium id -> entry point ("module:class").
GYMNASIUM_IDS: dict[str, str] = {
    "clonekit/Maze-v0": "clonekit.envs.maze:MazeEnv",
    "clonekit/MazePixels-v0": "clonekit.envs.pixels:MazePixelsEnv",
    "clonekit/Avoiding-v0": "clonekit.envs.avoiding:AvoidingEnv",
    "clonekit/AvoidingGoal-v0": "clonekit.envs.avoiding:AvoidingGoalEnv",
    "clonekit/AvoidingPixels-v0": "clonekit.envs.pixels:AvoidingPixelsEnv",
    "clonekit/Arm-v0": "clonekit.envs.arm:ArmEnv",
    "clonekit/Terrain-v0": "clonekit.envs.terrain:TerrainEnv",
}


def register_gymnasium_ids() -> None:
    """Register every id in ``GYMNASIUM_IDS`` with gymnasium (ids already registered are left as they are)."""
    for env_id, entry_point in GYMNASIUM_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point)
