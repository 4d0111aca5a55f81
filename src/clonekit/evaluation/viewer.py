"""Episode viewer: a PNG strip of frames with the agent's thought (and action) under each one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from clonekit.evaluation.plots import _pyplot, save_figure


def write_thought_strip(
    path: Path,
    frames: Sequence[np.ndarray],
    thoughts: Sequence[str],
    actions: Sequence[str] = (),
    title: str = "",
    max_frames: int = 16,
    per_row: int = 8,
) -> bool:
    """Write frames ``(H, W, 3)`` with their thoughts underneath as one PNG; False without matplotlib.

    Long episodes are subsampled evenly to ``max_frames`` frames (the first and last always shown).
    """
    plt = _pyplot()
    if plt is None or not frames:
        return False
    shown = np.unique(np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int))
    rows = (len(shown) + per_row - 1) // per_row
    cols = min(per_row, len(shown))
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, t in zip(axes.ravel(), shown, strict=False):
        ax.imshow(frames[t])
        label = thoughts[t] if t < len(thoughts) else ""
        action = f" → {actions[t]}" if t < len(actions) else ""
        ax.set_title(f"t={t}{action}", fontsize=7)
        ax.text(0.5, -0.08, label, transform=ax.transAxes, ha="center", va="top", fontsize=7, wrap=True)
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure(fig, path, dpi=100)
    return True
