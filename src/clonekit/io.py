"""Atomic file writes: a reader sees the old file or the new one, never half of one.

A temporary file from :mod:`tempfile` is created mode 0600 (and a temporary directory 0700), which the
rename would carry to the final path; :func:`new_file_mode` / :func:`new_dir_mode` give the modes a plain
``open(path, "w")`` / ``mkdir`` would, and every atomic write here applies them, so run files and exports
are as readable as the user's umask allows (e.g. 0644 under umask 022).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

_PROC_STATUS = Path("/proc/self/status")


def current_umask() -> int:
    """The process's umask, read without changing it (Linux: ``Umask:`` in ``/proc/self/status``).

    Where /proc cannot tell (not Linux, or a kernel before 4.7) it is the umask when first asked, read once by
    setting it (setting it each time would race with other threads creating files).
    """
    try:
        status = _PROC_STATUS.read_text(encoding="ascii")
    except OSError:
        return _umask_by_setting()
    for line in status.splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    return _umask_by_setting()


@functools.cache
def _umask_by_setting() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: ``0o666`` less the umask."""
    return 0o666 & ~current_umask()


def new_dir_mode() -> int:
    """The mode ``mkdir`` gives a new directory: ``0o777`` less the umask."""
    return 0o777 & ~current_umask()


def make_temp_file(path: Path) -> Path:
    """Create an empty hidden temporary file next to ``path`` (its parent created), mode :func:`new_file_mode`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, new_file_mode())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    return Path(tmp)


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """Create a temporary directory in ``parent`` named ``prefix...``, mode :func:`new_dir_mode`."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        os.chmod(tmp, new_dir_mode())
    except BaseException:
        tmp.rmdir()
        raise
    return tmp


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry (after a rename into it) to stable storage."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` via a temporary file in the same directory and an atomic rename."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and an atomic rename.

    The file gets the mode a plain write of a new file would (:func:`new_file_mode`).
    """
    tmp = make_temp_file(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any, compact: bool = False) -> None:
    """Atomically write ``data`` as indented JSON, or on one line with ``compact`` (for machine-read state such
    as random-generator states: with an indent, ``json`` falls back to its pure-Python encoder, ~40x slower)."""
    text = json.dumps(data, separators=(",", ":")) if compact else json.dumps(data, indent=2)
    atomic_write_text(path, text + "\n")


def remove_stale_datasets(run_dir: Path, current: str | None) -> None:
    """Delete the ``data-*`` dataset directories (and writers' temp directories) a killed round-by-round run
    left in ``run_dir`` beside its ``current`` one (None: it has none yet)."""
    for entry in run_dir.iterdir():
        if entry.is_dir() and entry.name.lstrip(".").startswith("data-") and entry.name != current:
            shutil.rmtree(entry)


def acknowledge_dataset(run_dir: Path, state_file: str, state: dict[str, Any], new_state: dict[str, Any]) -> None:
    """Switch a round-by-round run to the dataset ``new_state["dataset"]`` (already written in ``run_dir``): write
    ``new_state`` to ``run_dir/state_file`` atomically (the round is acknowledged there), update ``state`` in
    place and delete the dataset it named before (if any). A kill at any point leaves a readable run."""
    old = state.get("dataset")
    atomic_write_json(run_dir / state_file, new_state)
    state.update(new_state)
    if old is not None and old != new_state["dataset"]:
        shutil.rmtree(run_dir / old)
