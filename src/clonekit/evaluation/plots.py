"""PNG plots for reports (matplotlib, from the ``plot`` extra; without it, reports have tables only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any | None:
    """matplotlib's pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
