"""PNG of 2-D rollout trajectories over the Avoiding obstacle field, one panel per policy, coloured by mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clonekit.envs.avoiding import ARENA_X, FINISH_Y, NUM_MODES, OBSTACLE_RADIUS, OBSTACLES
from clonekit.evaluation.plots import _pyplot, save_figure


def plot_avoiding_trajectories(
    path: Path,
    panels: dict[str, tuple[list[np.ndarray], np.ndarray, np.ndarray]],
    title: str,
) -> bool:
    """One panel per entry ``name: (paths, modes, success)``; False without matplotlib.

    ``paths`` is a list of ``(T_i, 2)`` positions, ``modes`` ``(N,)`` mode ids (-1: none) and ``success``
    ``(N,)`` bool. Successful paths are coloured by mode; failed ones are grey with a red cross at the end.
    """
    plt = _pyplot()
    if plt is None:
        return False
    tab10 = plt.get_cmap("tab10")
    palette = [tab10(i) for i in (0, 1, 2, 3, 4, 5, 6, 8, 9)]  # tab10 without its grey, kept for failures
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 2.6), squeeze=False)
    for ax, (name, (paths, modes, success)) in zip(axes[0], panels.items(), strict=True):
        for x, y in OBSTACLES:
            ax.add_patch(plt.Circle((x, y), OBSTACLE_RADIUS, color="black", alpha=0.8))
        ax.axhline(FINISH_Y, color="tab:green", lw=1.5, ls="--")
        for positions, mode, ok in zip(paths, modes, success, strict=True):
            if ok and mode >= 0:
                ax.plot(positions[:, 0], positions[:, 1], color=palette[int(mode) % len(palette)], lw=0.8, alpha=0.6)
            else:
                ax.plot(positions[:, 0], positions[:, 1], color="grey", lw=0.8, alpha=0.5)
                ax.scatter([positions[-1, 0]], [positions[-1, 1]], marker="x", color="tab:red", s=18, zorder=4)
        shown = np.asarray(modes)[np.asarray(success, dtype=bool)]
        distinct = len(set(shown[shown >= 0].tolist()))
        ax.set_title(f"{name}\n{np.mean(success):.0%} success, {distinct}/{NUM_MODES} modes", fontsize=9)
        ax.set_xlim(*ARENA_X)
        ax.set_ylim(-0.02, FINISH_Y + 0.08)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
    return True
