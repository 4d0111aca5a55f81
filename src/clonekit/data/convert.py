"""Convert demonstration datasets between clonekit, Minari, robomimic-style HDF5 and D4RL-style flat HDF5.

``convert(src, dst, to)`` detects the format of ``src``, writes ``dst`` in format ``to`` (``"clonekit"``,
``"minari"``, ``"hdf5"`` or ``"d4rl"``) and returns warnings, one line each, about everything it had to drop or
make up. ``src`` is only read. ``dst`` is written to a hidden temp path next to it and renamed into place at the
end, so a failure never leaves half a dataset at ``dst``.

    warnings = convert("data/maze", "maze.hdf5", to="hdf5")

Every conversion goes through the same two steps: a reader turns ``src`` into a ``Source`` (the clonekit header:
streams, spaces, env, episode info, extra, plus an iterator over episodes) and a writer turns that into ``dst``.
Each format's reader, writer and mapping to clonekit streams is documented in its module under
``clonekit.data.formats``: ``clonekit`` (holds everything, exactly), ``hdf5`` (robomimic-style), ``minari`` and
``d4rl``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from clonekit.data.formats.clonekit import read_clonekit, write_clonekit
from clonekit.data.formats.d4rl import D4RL_KEYS, read_d4rl, write_d4rl
from clonekit.data.formats.h5 import H5_ERRORS
from clonekit.data.formats.hdf5 import read_hdf5, write_hdf5
from clonekit.data.formats.minari import minari_data_path, read_minari, write_minari
from clonekit.data.formats.source import (
    HEADER_FORMAT,
    HEADER_VERSION,
    Episode,
    EpisodeInfo,
    Source,
    Steps,
    require_package,
)
from clonekit.data.messages import one_line
from clonekit.errors import ConfigError, DatasetError

FORMATS = ("clonekit", "minari", "hdf5", "d4rl")

_READERS: dict[str, Callable[[Path], Source]] = {
    "clonekit": read_clonekit,
    "hdf5": read_hdf5,
    "minari": read_minari,
    "d4rl": read_d4rl,
}
_WRITERS: dict[str, Callable[[Source, Path, bool], list[str]]] = {
    "clonekit": write_clonekit,
    "hdf5": write_hdf5,
    "minari": write_minari,
    "d4rl": write_d4rl,
}


def convert(src: str | Path, dst: str | Path, to: str, *, overwrite: bool = False) -> list[str]:
    """Convert the dataset at ``src`` (clonekit, Minari, robomimic-style or D4RL-style HDF5) to format ``to``.

    Args:
        src: a clonekit dataset directory, a Minari dataset directory (or its ``data`` directory), or an HDF5 file
            with a top-level ``data`` group (robomimic-style) or top-level ``observations``, ``actions``, ...
            datasets (D4RL-style). Never modified.
        dst: where to write: a directory for ``"clonekit"`` and ``"minari"``, a file for ``"hdf5"`` and ``"d4rl"``.
        to: ``"clonekit"``, ``"minari"``, ``"hdf5"`` or ``"d4rl"``.
        overwrite: replace an existing ``dst`` of the same format (anything else at ``dst`` is never replaced).

    Returns:
        Warnings, one line each, about what was dropped, flattened or made up (each format's module lists them).

    Raises:
        ConfigError: unknown ``to``, or the package a format needs is not installed.
        DatasetError: ``src`` is missing, of no known format or unreadable; ``dst`` exists (without
            ``overwrite``) or overlaps ``src``; the data cannot be stored in format ``to``.
    """
    if to not in FORMATS:
        raise ConfigError(f"to: expected one of {', '.join(FORMATS)}, found {to!r}")
    src_path, dst_path = Path(src), Path(dst)
    source_format = detect_format(src_path)
    _check_destination(src_path, dst_path, to, overwrite)
    source = _READERS[source_format](src_path)
    written = _WRITERS[to](source, dst_path, overwrite)
    return [*source.warnings, *written]


def detect_format(path: str | Path) -> str:
    """The format of the dataset at ``path``: ``"clonekit"``, ``"minari"``, ``"hdf5"`` or ``"d4rl"``.

    A directory with ``meta.json`` is clonekit, one with ``data/metadata.json`` (or ``metadata.json``) is Minari.
    A file with the HDF5 signature is D4RL-style when it has no top-level ``data`` group but one of the D4RL
    datasets (``observations``, ``actions``, ``rewards``, ``terminals``, ``timeouts``) at the top level, else
    robomimic-style ``hdf5``; the reader checks the rest. ``DatasetError`` when ``path`` is none of these.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / "meta.json").is_file():
            return "clonekit"
        if minari_data_path(path) is not None:
            return "minari"
        raise DatasetError(
            f"{path}: not a dataset directory: expected meta.json (clonekit) or data/metadata.json (Minari)"
        )
    require_package("h5py", "hdf5")
    import h5py

    if not h5py.is_hdf5(path):
        raise DatasetError(f"{path}: not an HDF5 file (no HDF5 signature) and not a dataset directory")
    try:
        with h5py.File(path, "r") as file:
            flat = "data" not in file and any(key in file for key in D4RL_KEYS)
    except H5_ERRORS as e:
        raise DatasetError(f"{path}: cannot read as HDF5: {one_line(e)}") from e
    return "d4rl" if flat else "hdf5"


def _check_destination(src: Path, dst: Path, to: str, overwrite: bool) -> None:
    """Refuse a ``dst`` that overlaps ``src``, or that exists unless ``overwrite`` and it is a ``to`` dataset."""
    src_resolved, dst_resolved = src.resolve(), dst.resolve()
    if dst_resolved.is_relative_to(src_resolved) or src_resolved.is_relative_to(dst_resolved):
        raise DatasetError(f"{dst}: overlaps the source {src}; the source is never modified, so write elsewhere")
    if not (dst.exists() or dst.is_symlink()):
        return
    if not overwrite:
        raise DatasetError(f"{dst}: already exists; pass overwrite=True (command line: --overwrite) to replace it")
    if not _is_replaceable(dst, to):
        raise DatasetError(f"{dst}: exists and is not a {to} dataset; refusing to replace it with overwrite=True")


def _is_replaceable(path: Path, to: str) -> bool:
    """Whether ``path`` holds a dataset of format ``to`` (or is an empty directory, for directory formats)."""
    if path.is_symlink():
        return False
    if to in ("hdf5", "d4rl"):
        # Either HDF5 layout may replace the other: both are single files clonekit wrote or reads.
        require_package("h5py", "hdf5")
        import h5py

        return path.is_file() and bool(h5py.is_hdf5(path))
    if not path.is_dir():
        return False
    marker = path / "meta.json" if to == "clonekit" else path / "data" / "metadata.json"
    return marker.is_file() or not any(path.iterdir())


__all__ = [
    "FORMATS",
    "HEADER_FORMAT",
    "HEADER_VERSION",
    "Episode",
    "EpisodeInfo",
    "Steps",
    "convert",
    "detect_format",
]
