"""The public registration API: add env families, experts and policies to clonekit's registries.

Each registry is one explicit dict (``clonekit.envs.ENVS``, ``clonekit.experts.EXPERTS``,
``clonekit.policies.POLICIES``), filled by the built-ins and by these calls:

    import clonekit
    clonekit.register_env("walk", WalkFamily())
    clonekit.register_expert("walk", "oracle", WalkOracle)
    clonekit.register_policy("my_bc", MyBCConfig, MyBCPolicy)

A registration made in one process is not seen by another one (a Ray worker, a torchrun rank, the CLI). To
reach every process, a package declares an entry point in the group ``clonekit.plugins``; each entry point
is a callable taking no arguments that makes its registrations. In ``pyproject.toml``::

    [project.entry-points."clonekit.plugins"]
    walk = "walk_plugin:register"

Entry points are loaded once per process, lazily, on the first registry lookup (``get_env_family``,
``make_expert``, ``policy_classes``, ``clonekit list``); importing clonekit loads none.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from clonekit.errors import ConfigError

PLUGIN_GROUP = "clonekit.plugins"
_ENV_METHODS = ("spaces", "sample_tasks", "task_to_json", "task_from_json", "task_key", "make_vec")
_POLICY_METHODS = ("compute_loss", "act", "initial_state")

_loaded = False


def load_plugins() -> list[str]:
    """Run every ``clonekit.plugins`` entry point once in this process; returns their names (first call only).

    A plugin that fails to load or register is a one-line :class:`ConfigError` naming it (not skipped: a
    registry missing half a plugin would fail later, further from the cause).
    """
    global _loaded
    if _loaded:
        return []
    _loaded = True  # set first: a plugin's registrations look names up, which must not recurse
    names = []
    for point in sorted(entry_points(group=PLUGIN_GROUP), key=lambda p: p.name):
        try:
            register = point.load()
            if not callable(register):
                raise TypeError(f"{point.value} is a {type(register).__name__}, not a callable")
            register()
        except Exception as err:  # a plugin's own code: any failure is reported as the plugin's, in one line
            detail = " ".join(str(err).split())
            raise ConfigError(
                f"clonekit plugin {point.name!r} ({point.value}, entry point group {PLUGIN_GROUP!r}) failed: "
                f"{type(err).__name__}: {detail}"
            ) from err
        names.append(point.name)
    return names


def _check_name(kind: str, name: Any) -> None:
    if not isinstance(name, str) or not name or ":" in name or name != name.strip():
        raise ConfigError(f"register_{kind}: name: expected a non-empty string without ':' or spaces, got {name!r}")


def register_env(name: str, family: Any, *, replace: bool = False) -> None:
    """Register env family ``family`` (an object following :class:`clonekit.envs.EnvFamily`) as ``name``.

    ``replace=True`` allows replacing an existing family of that name (the built-ins included).
    """
    from clonekit.envs import ENVS

    _check_name("env", name)
    missing = [m for m in _ENV_METHODS if not callable(getattr(family, m, None))]
    if missing:
        raise ConfigError(f"register_env({name!r}): the family lacks method(s) {missing} of clonekit.envs.EnvFamily")
    if name in ENVS and not replace and ENVS[name] is not family:
        raise ConfigError(f"register_env: env {name!r} is already registered; pass replace=True to replace it")
    ENVS[name] = family


def register_expert(env: str, name: str, factory: Callable[..., Any], *, replace: bool = False) -> None:
    """Register ``factory`` (a class or callable; called with the ``--expert-kwargs``) as expert ``name`` of
    env ``env`` (a family name, or ``gym:ID`` for one gymnasium env). It returns an object following
    :class:`clonekit.experts.Expert`."""
    from clonekit.experts import EXPERTS

    if not isinstance(env, str) or not env:
        raise ConfigError(f"register_expert: env: expected a non-empty string, got {env!r}")
    _check_name("expert", name)
    if not callable(factory):
        raise ConfigError(f"register_expert({env!r}, {name!r}): factory: expected a callable, got {factory!r}")
    if (env, name) in EXPERTS and not replace and EXPERTS[(env, name)] is not factory:
        raise ConfigError(f"register_expert: expert {name!r} of env {env!r} is already registered; pass replace=True")
    EXPERTS[(env, name)] = factory


def register_policy(name: str, config_cls: type[Any], policy_cls: type[Any], *, replace: bool = False) -> None:
    """Register a policy: ``config_cls`` (a frozen dataclass with ``obs_shape`` and the fields the dataset
    fills) and ``policy_cls`` (a :class:`clonekit.policies.Policy` subclass built from that config)."""
    import dataclasses

    from clonekit.policies import POLICIES

    _check_name("policy", name)
    if not dataclasses.is_dataclass(config_cls) or not isinstance(config_cls, type):
        raise ConfigError(f"register_policy({name!r}): config_cls: expected a dataclass, got {config_cls!r}")
    missing = [m for m in _POLICY_METHODS if not callable(getattr(policy_cls, m, None))]
    if not isinstance(policy_cls, type) or missing:
        raise ConfigError(f"register_policy({name!r}): policy_cls: expected a Policy class, lacking {missing}")
    if name in POLICIES and not replace and POLICIES[name] != (config_cls, policy_cls):
        raise ConfigError(f"register_policy: policy {name!r} is already registered; pass replace=True")
    POLICIES[name] = (config_cls, policy_cls)


# reST markup in docstrings: a role (``:class:`~a.B```, ``:mod:`x <a.b>```), an inline literal, a default role.
_ROLE = re.compile(r":[\w:.+-]+:`([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")
_DEFAULT_ROLE = re.compile(r"`([^`]+)`")


def describe(obj: Any) -> str:
    """The one-line description ``clonekit list`` shows for a registered class or object.

    It is the summary (first paragraph) of the docstring of a class or function, or of an instance's class
    (never one inherited from a base class), on one line, with reST markup reduced to its text:
    ``:class:`~a.B``` -> ``B``, ````x```` -> ``x``.
    """
    if inspect.isroutine(obj):
        doc = obj.__doc__ or ""
    else:
        doc = (obj if isinstance(obj, type) else type(obj)).__dict__.get("__doc__") or ""
    summary = " ".join(doc.strip().split("\n\n", 1)[0].split())
    summary = _ROLE.sub(lambda m: _role_text(m.group(1)), summary)
    summary = _LITERAL.sub(r"\1", summary)
    return _DEFAULT_ROLE.sub(r"\1", summary)


def _role_text(target: str) -> str:
    if target.endswith(">") and " <" in target:  # `title <target>`
        return target.rsplit(" <", 1)[0]
    return target.rsplit(".", 1)[-1] if target.startswith("~") else target


def catalog() -> list[tuple[str, str, str]]:
    """``(kind, name, description)`` of every registered env, expert, policy and experiment (plugins loaded)."""
    from clonekit.envs import ENVS
    from clonekit.experiments import EXPERIMENTS
    from clonekit.experts import EXPERTS
    from clonekit.policies import POLICIES

    load_plugins()
    rows = [("env", name, describe(family)) for name, family in ENVS.items()]
    rows += [("expert", f"{name} (env {env})", describe(factory)) for (env, name), factory in EXPERTS.items()]
    rows += [("policy", name, describe(policy_cls)) for name, (_, policy_cls) in POLICIES.items()]
    rows += [("experiment", name, spec.description) for name, spec in EXPERIMENTS.items()]
    return rows


__all__ = [
    "PLUGIN_GROUP",
    "catalog",
    "describe",
    "load_plugins",
    "register_env",
    "register_expert",
    "register_policy",
]
