"""What a policy config takes from the dataset: its action fields, and observation defaults that fit the data.

Action fields follow the config class: a config with ``num_actions`` is for discrete actions and needs a
``Discrete`` action space, one with ``action_shape`` is for continuous actions and needs a ``Box``; one with
both (``transformer_bc``) gets the field that fits the dataset's action space. A dataset
whose action space does not fit is a one-line error naming the policy and the space, before any field is
filled in (so the user never reads about a field they did not pass).

Observation defaults: the ``encoder`` and ``normalize_obs`` fields of ``bc`` and ``continuous_bc`` default to
``"auto"``, which the config resolves in ``__post_init__`` from ``obs_shape`` (filled in from the dataset's
observation space):

* ``(C, H, W)`` (grid maps, pictures): encoder ``"conv"``, normalization ``"per_channel"``;
* any other shape, e.g. ``(D,)`` vectors: encoder ``"mlp"``, normalization ``"per_feature"``. Dict
  observations are vectors here: every importer and the ``gym`` family flatten them to float32 in sorted key
  order (recorded as ``obs_keys``), since a dataset stores one ``obs`` array per step.

The config keeps the resolved value, so a run's ``config.json`` records what was built and a saved run
reloads identically even if these defaults change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from clonekit.config import check
from clonekit.data.spaces import space_from_json
from clonekit.errors import ConfigError

AUTO = "auto"

# Action field of a config class -> the action space type it needs, and what that means in words.
ACTION_FIELDS = {"num_actions": ("Discrete", "discrete actions"), "action_shape": ("Box", "continuous actions")}


def is_image_shape(obs_shape: Sequence[int]) -> bool:
    """Whether observations of ``obs_shape`` are ``(C, H, W)`` maps or pictures."""
    return len(obs_shape) == 3


def auto_encoder(obs_shape: Sequence[int]) -> Literal["conv", "mlp"]:
    """The encoder ``"auto"`` means for observations of ``obs_shape``."""
    return "conv" if is_image_shape(obs_shape) else "mlp"


def auto_normalize_obs(obs_shape: Sequence[int]) -> Literal["per_channel", "per_feature"]:
    """The normalization ``"auto"`` means for observations of ``obs_shape``."""
    return "per_channel" if is_image_shape(obs_shape) else "per_feature"


def check_fits_shape(obs_shape: Sequence[int], encoder: str, normalize_obs: str) -> None:
    """A one-line ``ConfigError`` when a (resolved) encoder or normalization needs ``(C, H, W)`` observations
    and ``obs_shape`` is not."""
    image = is_image_shape(obs_shape)
    shape = tuple(obs_shape)
    check(
        image or encoder not in ("conv", "cnn"),
        "encoder",
        f"'mlp' or 'auto' for observations of shape {shape} (conv/cnn need (C, H, W))",
        encoder,
    )
    check(
        image or normalize_obs != "per_channel",
        "normalize_obs",
        f"'per_feature', 'none' or 'auto' for observations of shape {shape} (per_channel needs (C, H, W))",
        normalize_obs,
    )


def resolve_auto(config: Any, field: str, value: str) -> None:
    """Replace ``config.<field>`` by ``value`` when it is ``"auto"``; for ``__post_init__`` of frozen configs."""
    if getattr(config, field) == AUTO:
        object.__setattr__(config, field, value)  # frozen: set once, before the field checks run


def action_fields(
    policy: str, config_cls: type[Any], action_space: Mapping[str, Any], fitting: Mapping[str, Sequence[str]]
) -> dict[str, Any]:
    """The action field of ``config_cls`` (policy ``policy``) from a dataset's JSON ``action_space``.

    ``fitting`` maps each action space type to the policies that accept it (named in the error). Returns
    ``{}`` when the dataset records no action space or the config has no action field.
    """
    kind = action_space.get("type")
    names = {f.name for f in dataclasses.fields(config_cls)}
    for field, (needed, meaning) in ACTION_FIELDS.items():
        if field not in names or kind is None:
            continue
        if kind != needed:
            if any(ACTION_FIELDS[other][0] == kind for other in names & set(ACTION_FIELDS)):
                continue  # the config also has the field that fits: a policy for both kinds of actions
            others = ", ".join(fitting.get(kind, ())) or "none"
            raise ConfigError(
                f"policy {policy!r}: expected a {needed} action space ({meaning}), but the dataset's action space "
                f"is {space_from_json(action_space)}; policies for {kind} actions: {others}"
            )
        if field == "num_actions":
            return {"num_actions": int(action_space["n"])}
        return {"action_shape": list(action_space["shape"])}
    return {}


def fitting_policies(policies: Mapping[str, tuple[type[Any], type[Any]]]) -> dict[str, list[str]]:
    """Action space type (``"Discrete"``, ``"Box"``) -> names of the policies in ``policies`` that accept it."""
    fitting: dict[str, list[str]] = {}
    for name, (config_cls, _) in sorted(policies.items()):
        names = {f.name for f in dataclasses.fields(config_cls)}
        for field, (kind, _) in ACTION_FIELDS.items():
            if field in names:
                fitting.setdefault(kind, []).append(name)
    return fitting
