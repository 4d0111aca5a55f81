"""``py:module:attr``: a Python callable named on the command line (a recovery judge, an augmentation guide)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from clonekit.errors import ConfigError


def load_callable(spec: str, flag: str) -> Callable[..., Any]:
    """The callable ``attr`` (may be dotted) of ``module`` named by ``spec`` = ``py:module:attr``; a class is
    instantiated without arguments. ``flag`` names the option in errors (e.g. ``--guide``)."""
    module_name, sep, attr = spec.removeprefix("py:").partition(":")
    if not spec.startswith("py:") or not sep or not module_name or not attr:
        raise ConfigError(f"{flag}: expected py:module:attr (e.g. py:my_rules:plausible), got {spec!r}")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"{flag} {spec}: cannot import module {module_name!r} ({err})") from err
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"{flag} {spec}: module {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if isinstance(target, type):
        target = target()
    if not callable(target):
        raise ConfigError(f"{flag} {spec}: expected a callable, found {type(target).__name__}")
    function: Callable[..., Any] = target
    return function
