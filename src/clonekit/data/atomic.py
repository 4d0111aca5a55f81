"""Atomic installation of a finished dataset, directory or single file.

Writers fill a hidden temporary path next to the target (``temp_path``), flush it to stable storage, and only
then rename it into place (``install``), so a crash or an exception never leaves half a dataset at the target:
a reader sees the old dataset or the new one.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from clonekit.io import fsync_dir


def temp_path(dst: Path) -> Path:
    """A hidden unused path next to ``dst`` to write into before the final rename (``dst``'s parent is created).

    The name, ``.<name>.tmp-<pid>-<random>``, stays in the same directory so the rename cannot cross filesystems.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    return _sibling(dst, "tmp")


def install(tmp: Path, dst: Path) -> None:
    """Rename the finished ``tmp`` (file or directory) to ``dst``, replacing whatever is there.

    The caller has checked that anything at ``dst`` may be replaced. A file replaces atomically. A directory
    cannot be renamed over a non-empty one, so the old one is first renamed away, put back if the second rename
    fails, and deleted only once the new one is in place.
    """
    if tmp.is_file() or not (dst.exists() or dst.is_symlink()):
        os.replace(tmp, dst)
        fsync_dir(dst.parent)
        return
    old = _sibling(dst, "old")
    os.rename(dst, old)
    try:
        os.rename(tmp, dst)
    except BaseException:
        os.rename(old, dst)  # put the previous dataset back before reporting the failure
        raise
    fsync_dir(dst.parent)
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old)
    else:
        old.unlink()


def fsync_file(path: Path) -> None:
    """Flush the file at ``path`` to stable storage."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_tree(root: Path) -> None:
    """Flush every file and directory under ``root`` to stable storage before it is renamed into place."""
    for directory, _, files in os.walk(root):
        for name in files:
            fsync_file(Path(directory) / name)
        fsync_dir(Path(directory))


def _sibling(path: Path, kind: str) -> Path:
    return path.parent / f".{path.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"
