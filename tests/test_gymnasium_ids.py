"""clonekit's gymnasium ids: registered by ``import clonekit`` (cheaply), named in the README, and rendering
``rgb_array`` frames. (``check_env`` and ``make_vec`` on every id are in ``tests/test_interop.py``.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gymnasium
import numpy as np
import pytest

from clonekit.errors import ConfigError
from clonekit.gymnasium_ids import GYMNASIUM_IDS

README = Path(__file__).resolve().parents[1] / "README.md"


def test_a_fresh_process_makes_a_clonekit_env_after_import_clonekit_without_importing_torch() -> None:
    script = (
        "import sys, clonekit, gymnasium\n"
        "assert 'torch' not in sys.modules and 'clonekit.envs' not in sys.modules, 'import clonekit is not cheap'\n"
        "env = gymnasium.make('clonekit/Maze-v0')\n"
        "obs, _ = env.reset(seed=0)\n"
        "print(obs.shape)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(3, 16, 16)"


def test_every_clonekit_gymnasium_id_is_registered_and_named_in_the_readme() -> None:
    registered = {env_id for env_id in gymnasium.registry if env_id.startswith("clonekit/")}
    assert registered == set(GYMNASIUM_IDS)
    readme = README.read_text(encoding="utf-8")
    assert [env_id for env_id in GYMNASIUM_IDS if f"`{env_id}`" not in readme] == []


@pytest.mark.parametrize("env_id", sorted(GYMNASIUM_IDS))
def test_every_env_renders_rgb_array_frames_of_its_state(env_id: str) -> None:
    env = gymnasium.make(env_id, render_mode="rgb_array")
    try:
        env.reset(seed=0)
        first = env.render()
        env.action_space.seed(0)
        frames = [first]
        for _ in range(5):  # Avoiding moves by a few pixels a step; the maze by one cell
            env.step(env.action_space.sample())
            frames.append(env.render())
    finally:
        env.close()
    assert isinstance(first, np.ndarray) and first.dtype == np.uint8
    assert first.ndim == 3 and first.shape[2] == 3 and min(first.shape[:2]) >= 32, first.shape
    assert len(np.unique(first.reshape(-1, 3), axis=0)) >= 3  # background, walls or obstacles, the agent
    assert any(not np.array_equal(first, frame) for frame in frames[1:])  # the frame follows the state


def test_an_unsupported_render_mode_is_a_one_line_error() -> None:
    error = pytest.raises(ConfigError, match=r"^render_mode: expected None or 'rgb_array', got 'ansi'$")
    with error, pytest.warns(UserWarning, match="not in the possible render_modes"):  # gymnasium's own warning
        gymnasium.make("clonekit/Avoiding-v0", render_mode="ansi")
