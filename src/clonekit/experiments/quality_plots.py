"""Plot panels and table rows shared by the data-quality experiments (``maze-quality``, ``avoiding-quality``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clonekit.evaluation.stats import format_metric


def errorbar(ax: Any, x: float, cell: dict[str, Any], color: str, label: str | None, width: float = 0.38) -> None:
    """A bar at ``x`` of a metric cell's mean with its 95% interval."""
    lo, hi = cell["ci95"]
    ax.bar(x, cell["mean"], width, color=color, alpha=0.6, label=label)
    ax.errorbar(x, cell["mean"], yerr=[[cell["mean"] - lo], [hi - cell["mean"]]], color="black", capsize=3)


def detector_panel(ax: Any, metrics: dict[str, Any], detectors: Sequence[str]) -> None:
    """Precision, recall and F1 (split ``train``) of each ``detect_*`` key against the injected ground truth, with
    the F1 >= 0.8 target drawn."""
    for i, key in enumerate(detectors):
        for j, metric in enumerate(("precision", "recall", "f1")):
            errorbar(
                ax, i + (j - 1) * 0.27, metrics[key]["train"][metric], f"C{j + 2}", metric if i == 0 else None, 0.25
            )
    ax.axhline(0.8, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(detectors)), [k.removeprefix("detect_") for k in detectors])
    ax.set_ylim(0, 1.05)
    ax.set_title("detectors vs injected ground truth")
    ax.legend(fontsize=8)


def detector_rows(metrics: dict[str, Any], detectors: Sequence[str]) -> list[tuple[str, ...]]:
    """Table rows ``(key, F1 with its interval, precision / recall)`` of the ``detect_*`` keys."""
    rows: list[tuple[str, ...]] = []
    for key in detectors:
        cells = metrics[key]["train"]
        f1, precision, recall = format_metric(cells["f1"]), cells["precision"]["mean"], cells["recall"]["mean"]
        rows.append((key, f"F1 {f1}", f"P {precision:.2f} / R {recall:.2f}"))
    return rows
