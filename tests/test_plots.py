"""Report figures: written whole (a PNG or SVG by the file's suffix), atomically, and closed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clonekit.evaluation.plots import _pyplot, plot_success_bars, save_figure


def test_a_figure_is_written_whole_by_its_suffix_and_closed(tmp_path: Path) -> None:
    plt = _pyplot()
    assert plt is not None  # matplotlib is in .[dev]
    for name, magic in (("f.png", b"\x89PNG\r\n\x1a\n"), ("f.svg", b"<?xml")):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        save_figure(fig, tmp_path / name)
        assert (tmp_path / name).read_bytes().startswith(magic)
        assert not plt.fignum_exists(fig.number)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png", "f.svg"]  # no temporary left behind


def test_a_figure_that_fails_to_render_leaves_the_previous_file(tmp_path: Path) -> None:
    plt = _pyplot()
    assert plt is not None
    results = {"experiment": "x", "metrics": {"bc": {"test": {"success": {"mean": 0.5, "ci95": [0.4, 0.6]}}}}}
    path = tmp_path / "success.png"
    assert plot_success_bars(results, path)
    before = path.read_bytes()
    fig, _ = plt.subplots()

    def dies_midway(target: Any, **kwargs: Any) -> None:
        target.write(b"\x89PNG\r\n\x1a\n half an image")
        raise RuntimeError("renderer died")

    fig.savefig = dies_midway  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="renderer died"):
        save_figure(fig, path)
    assert not plt.fignum_exists(fig.number)  # closed all the same
    with pytest.raises(ValueError, match="not supported"):
        save_figure(plt.subplots()[0], tmp_path / "success.nope")
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["success.png"]
