"""Plots of the ``maze-procedure`` experiment: success bars and an unseen maze with the search procedure
cloning predicts and the paths PC and BC take."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from clonekit.envs.maze import MOVES, MazeTask, MazeVecEnv
from clonekit.evaluation.plots import _pyplot, plot_success_bars, save_figure
from clonekit.experts.bfs import FIRST_ACTION_LABEL, GOAL_LABEL
from clonekit.policies import Policy


def _trajectory(policy: Policy, task: MazeTask, start: np.ndarray) -> np.ndarray:
    env = MazeVecEnv([task])
    obs = env.reset(starts=start[None])
    path, state = [start.copy()], policy.initial_state(1)
    while not env.done[0]:
        with torch.inference_mode():
            action, state = policy.act({"obs": torch.from_numpy(obs)}, state)
        obs, *_ = env.step(action.numpy())
        path.append(env.agents[0].copy())
    return np.array(path)


def plot_maze_procedure(
    out: Path, results: dict[str, Any], policies: dict[str, Policy], task: MazeTask | None, seed: int
) -> list[str]:
    """Write ``success.png`` and ``procedure.png`` (an unseen maze with the predicted search and paths)."""
    written = []
    if plot_success_bars(results, out / "success.png"):
        written.append("success.png")
    plt = _pyplot()
    pc_names = [n for n in policies if n.startswith("pc_")]
    if plt is None or task is None or not pc_names:
        return written
    pc = policies[pc_names[-1]]
    free = task.free_cells()
    distance = np.abs(free - np.array(task.goal)).sum(1)
    start = free[np.argmax(distance)]  # the free cell farthest (in grid distance) from the goal
    env = MazeVecEnv([task])
    obs = torch.from_numpy(env.reset(starts=start[None]))
    with torch.inference_mode():
        explanation = pc.explain({"obs": obs})
    assert explanation is not None, "procedure cloning always explains its search"
    labels = explanation["procedure_labels"][0].numpy()
    fig, ax = plt.subplots(figsize=(6.4, 6.4))
    h, w = task.walls.shape
    image = np.where(task.walls, 0.15, 1.0)
    ax.imshow(image, cmap="gray", vmin=0, vmax=1)
    reached = labels >= FIRST_ACTION_LABEL
    ax.imshow(np.ma.masked_where(~reached, np.ones_like(labels)), cmap="Blues", alpha=0.25, vmin=0, vmax=1.5)
    for r, c in np.argwhere(reached):
        dr, dc = MOVES[labels[r, c] - FIRST_ACTION_LABEL]
        ax.arrow(c - 0.2 * dc, r - 0.2 * dr, 0.35 * dc, 0.35 * dr, head_width=0.18, color="tab:blue", alpha=0.7)
    for name, color in ((pc_names[-1], "tab:orange"), (pc_names[-1].replace("pc_", "bc_"), "tab:red")):
        if name in policies:
            path = _trajectory(policies[name], task, start)
            ax.plot(
                path[:, 1],
                path[:, 0],
                "-",
                color=color,
                lw=2.5,
                alpha=0.8,
                label=f"{name} path ({len(path) - 1} steps)",
            )
    gr, gc = task.goal
    ax.scatter([gc], [gr], marker="*", s=300, color="tab:green", zorder=5, label="goal")
    ax.scatter([start[1]], [start[0]], marker="o", s=120, color="black", zorder=5, label="start")
    goal_mark = labels == GOAL_LABEL
    if goal_mark.any():
        ax.contour(goal_mark, levels=[0.5], colors="tab:green")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_title(
        f"An unseen maze: the search {pc_names[-1]} predicts (arrows: move towards the goal)",
        fontsize=9,
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=2, fontsize=8)
    save_figure(fig, out / "procedure.png")
    written.append("procedure.png")
    return written
