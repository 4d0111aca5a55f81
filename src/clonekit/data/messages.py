"""How the data layer words its errors: one line, of bounded length, prefixed by the file concerned.

Every ``DatasetError`` raised while reading, writing or converting a dataset is printed by the CLI as one
``error:`` line, so text that comes from elsewhere (an exception from h5py or Arrow, a value read from a file)
is squeezed through these helpers before it enters a message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from clonekit.errors import DatasetError

T = TypeVar("T")


def one_line(error: BaseException) -> str:
    """``str(error)`` with every run of whitespace, newlines included, collapsed to one space."""
    return " ".join(str(error).split())


def short_repr(value: Any, limit: int = 120) -> str:
    """``repr(value)`` cut to ``limit`` characters, so junk from a file cannot flood an error line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def with_prefix(prefix: str, check: Callable[..., T], *args: Any) -> T:
    """Call ``check(*args)``, re-raising its ``DatasetError`` with ``prefix`` (the file or owner) in front."""
    try:
        return check(*args)
    except DatasetError as e:
        raise DatasetError(f"{prefix}: {e}") from e
