"""PNG plots for reports (matplotlib, from the ``plot`` extra; without it, reports have tables only)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from clonekit.io import atomic_write_bytes


def _pyplot() -> Any | None:
    """matplotlib's pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, dpi: int = 120) -> None:
    """Lay ``fig`` out, write it to ``path`` atomically (the image format from the suffix; a reader or a kill
    midway never finds half a file) and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(buffer, format=Path(path).suffix.lstrip(".") or "png", dpi=dpi)
    finally:
        plt.close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())


def plot_success_bars(results: dict[str, Any], path: Path, metric: str = "success") -> bool:
    """Grouped bars of ``metric`` per policy and split with 95% CI whiskers; False without matplotlib."""
    plt = _pyplot()
    if plt is None:
        return False
    names = list(results["metrics"])
    splits = list(dict.fromkeys(s for m in results["metrics"].values() for s in m))  # first-seen order
    fig, ax = plt.subplots(figsize=(1.4 * len(names) + 2, 3.6))
    width = 0.8 / len(splits)
    for j, split in enumerate(splits):
        means, lows, highs = [], [], []
        for name in names:
            m = results["metrics"][name][split][metric]
            means.append(m["mean"])
            lows.append(m["mean"] - m["ci95"][0])
            highs.append(m["ci95"][1] - m["mean"])
        x = np.arange(len(names)) + (j - (len(splits) - 1) / 2) * width
        ax.bar(x, means, width, yerr=[lows, highs], capsize=3, label=split)
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylabel(f"{metric} (95% CI)")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{results['experiment']}: {metric} on seen (train) and unseen (test) tasks")
    ax.legend(title="split")
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path)
    return True
