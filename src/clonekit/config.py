"""Plain dataclass configs: JSON round-trip with validation that names the field, the rule and the value."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, TypeVar, Union

from clonekit.errors import CheckpointError, ConfigError

C = TypeVar("C")


def config_to_json(config: Any) -> dict[str, Any]:
    """A JSON-able dict of a dataclass config (tuples become lists)."""
    return {f.name: _to_json(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _to_json(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    return value


def config_from_json(cls: type[C], data: Any, where: str) -> C:
    """Build ``cls`` from a JSON object, checking keys and types.

    ``where`` names the source in errors (e.g. ``"run/config.json policy_config"``). Unknown keys, missing
    required keys and values of the wrong type raise :class:`ConfigError`; range checks are the config's own
    ``__post_init__``, whose errors also start with ``where``.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object, found {type(data).__name__}")
    assert dataclasses.is_dataclass(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        kwargs[name] = _coerce(value, hints[name], f"{where}.{name}")
    try:
        return cls(**kwargs)
    except (TypeError, ConfigError) as err:  # a required field is missing, or a check in __post_init__ failed
        raise ConfigError(f"{where}: {err}") from err


def check_same_config(config: Any, recorded: Any, where: str) -> None:
    """``CheckpointError`` naming every setting of ``config`` that differs from ``recorded`` (the JSON a resumable
    run saved when it started, read back through ``config``'s class, so a setting added later with its default
    still matches); ``where`` is the state file, for the message."""
    started = config_to_json(config_from_json(type(config), recorded, f"{where} config"))
    wanted = config_to_json(config)
    changed = {key: (started[key], value) for key, value in wanted.items() if started[key] != value}
    if changed:
        listed = ", ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in changed.items())
        raise CheckpointError(
            f"{where}: the run was started with other settings ({listed}); use the same settings to continue it, "
            "or another --out"
        )


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: unexpected value {value!r}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, found {value!r}")
        item = args[0] if args else Any
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, found {value!r}")
        return value
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, found {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, found {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, found {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, found {value!r}")
        return value
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object, found {value!r}")
        return value
    raise ConfigError(f"{where}: cannot read a value of type {hint!r}")


def check(condition: bool, field: str, rule: str, value: Any) -> None:
    """Raise ``ConfigError("field: expected rule, got value")`` unless ``condition``."""
    if not condition:
        raise ConfigError(f"{field}: expected {rule}, got {value!r}")


def check_transformer(config: Any, width_field: str) -> None:
    """The checks of a transformer's fields on ``config``: its width (the field named ``width_field``),
    ``num_heads`` (a divisor of the width), ``num_layers``, ``feedforward`` and ``dropout``."""
    width = getattr(config, width_field)
    check(1 <= width <= 4096, width_field, "in [1, 4096]", width)
    check(
        1 <= config.num_heads <= width and width % config.num_heads == 0,
        "num_heads",
        f"a divisor of {width_field}={width}",
        config.num_heads,
    )
    check(1 <= config.num_layers <= 32, "num_layers", "in [1, 32]", config.num_layers)
    check(1 <= config.feedforward <= 65536, "feedforward", "in [1, 65536]", config.feedforward)
    dropout = config.dropout
    check(math.isfinite(dropout) and 0 <= dropout < 1, "dropout", "a number in [0, 1)", dropout)
