"""Errors a user can cause and fix.

Every error here is raised with one line that names the file or field, what was expected and what was
found. The CLI prints that line and exits with code 2, without a traceback.
"""

from __future__ import annotations


class ClonekitError(Exception):
    """Base class of every user-facing clonekit error."""


class DatasetError(ClonekitError):
    """A dataset is missing, corrupt, incompatible, or lacks a stream that is needed."""


class ConfigError(ClonekitError):
    """A configuration value is unknown, of the wrong type, or out of range."""


class CheckpointError(ClonekitError):
    """A checkpoint or run directory is missing, corrupt, or does not fit its config."""


class ExportError(ClonekitError):
    """A policy cannot be exported (or the export tools are not installed)."""


class UnknownNameError(ClonekitError):
    """A name (env, expert, policy, experiment) is not in the registry."""


def unknown_name(kind: str, name: str, known: object) -> UnknownNameError:
    """Build the error for a name missing from one of clonekit's registries."""
    choices = ", ".join(sorted(str(k) for k in known))  # type: ignore[attr-defined]
    return UnknownNameError(f"unknown {kind} {name!r}; expected one of: {choices}")
