"""Per-task success bars: one group of bars per task (and one for all tasks), one bar per policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from clonekit.evaluation.plots import _pyplot, save_figure


def plot_task_success(
    results: dict[str, Any], path: Path, tasks: list[str], split: str = "test", metric: str = "success"
) -> bool:
    """Bars of ``metric`` with 95% CI whiskers for every policy on ``SPLIT:TASK`` and on ``split`` (all tasks).

    Reads ``results["metrics"][POLICY][SPLIT:TASK][metric]``; False without matplotlib.
    """
    plt = _pyplot()
    if plt is None:
        return False
    names = list(results["metrics"])
    groups = [*tasks, "all tasks"]
    keys = [f"{split}:{task}" for task in tasks] + [split]
    fig, ax = plt.subplots(figsize=(1.25 * len(groups) * max(len(names), 3) / 3 + 2, 3.8))
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        cells = [results["metrics"][name][key][metric] for key in keys]
        means = np.array([c["mean"] for c in cells])
        lows = means - np.array([c["ci95"][0] for c in cells])
        highs = np.array([c["ci95"][1] for c in cells]) - means
        x = np.arange(len(groups)) + (j - (len(names) - 1) / 2) * width
        ax.bar(x, means, width, yerr=[lows.clip(0), highs.clip(0)], capsize=2, label=name)
    ax.set_xticks(np.arange(len(groups)), [g.removesuffix("-v3") for g in groups], rotation=20)
    ax.set_ylabel(f"{metric} (95% CI)")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{results['experiment']}: {metric} per task on unseen seeds ({split})")
    ax.legend(ncol=len(names), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path)
    return True
