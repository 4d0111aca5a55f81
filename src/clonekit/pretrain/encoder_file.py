"""Pretrained encoder directories: what a pretraining method writes and a policy loads.

Layout of an encoder directory::

    ENC/encoder.json          format, method, the encoder's architecture (kind, input and observation shapes,
                              conv_channels, hidden_sizes, out_dim), its input normalization, the dataset it
                              was fitted on, the method's settings and clonekit/torch versions
    ENC/encoder.safetensors   the encoder's weights (``encoder.*``) and normalization statistics (``normalizer.*``)
    ENC/metrics.jsonl         the method's training scalars

The whole directory is written under a temporary name and renamed into place, so an ``ENC`` that exists is
complete. The normalization statistics travel with the weights because the weights were fitted to inputs
normalized with them: a policy that loads the encoder uses those statistics, not ones fitted on its own data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from clonekit.errors import CheckpointError, ConfigError
from clonekit.io import atomic_write_json
from clonekit.nn.normalize import Normalizer

ENCODER_FORMAT = "clonekit.encoder"
ENCODER_CONFIG = "encoder.json"
ENCODER_WEIGHTS = "encoder.safetensors"
# The fields of encoder.json that must equal a policy's for the weights to fit it.
ARCHITECTURE_FIELDS = ("encoder", "input_shape", "conv_channels", "hidden_sizes", "normalize_obs")


def write_encoder_files(
    directory: Path, encoder: nn.Module, normalizer: Normalizer, description: Mapping[str, Any]
) -> None:
    """Write ``encoder.json`` (``description`` plus the format) and ``encoder.safetensors`` into ``directory``
    (a fresh temporary directory the caller renames into place)."""
    tensors = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    tensors |= {f"normalizer.{k}": v for k, v in normalizer.state_dict().items()}
    # Not clonekit.checkpoint's writers: checkpoint imports the policies, which import this module.
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(directory / ENCODER_WEIGHTS))
    atomic_write_json(directory / ENCODER_CONFIG, {"format": ENCODER_FORMAT, **description})


def read_encoder_config(directory: str | Path) -> dict[str, Any]:
    """``encoder.json`` of an encoder directory; a missing directory or file, or another format, is one line."""
    path = Path(directory) / ENCODER_CONFIG
    if not Path(directory).is_dir():
        raise CheckpointError(f"{directory}: pretrained encoder directory not found")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise CheckpointError(f"{path}: pretrained encoder config not found") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: expected JSON (pretrained encoder config), found unreadable content") from err
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object, found {type(config).__name__}")
    if config.get("format") != ENCODER_FORMAT:
        raise CheckpointError(f"{path}: expected format {ENCODER_FORMAT!r}, found {config.get('format')!r}")
    return config


def load_pretrained_encoder(
    directory: str | Path, encoder: nn.Module, normalizer: Normalizer, expected: Mapping[str, Any]
) -> None:
    """Copy the weights and normalization of the encoder directory ``directory`` into ``encoder`` and ``normalizer``.

    ``expected`` holds the policy's values of :data:`ARCHITECTURE_FIELDS` (lists for shapes and widths); the
    first that differs from the file's is a one-line :class:`ConfigError` naming the file, expected and found.
    """
    config = read_encoder_config(directory)
    path = Path(directory) / ENCODER_CONFIG
    for field in ARCHITECTURE_FIELDS:
        if config.get(field) != expected[field]:
            raise ConfigError(
                f"{path}: encoder_weights: the policy needs {field}={expected[field]!r}, "
                f"the pretrained encoder has {config.get(field)!r}"
            )
    weights = Path(directory) / ENCODER_WEIGHTS
    try:
        tensors = load_file(str(weights))
    except FileNotFoundError as err:
        raise CheckpointError(f"{weights}: pretrained encoder weights not found") from err
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({err})") from err
    for prefix, module in (("encoder.", encoder), ("normalizer.", normalizer)):
        part = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        state = module.state_dict()
        if set(part) != set(state) or any(part[k].shape != state[k].shape for k in state):
            found = {k: tuple(v.shape) for k, v in part.items()}
            raise CheckpointError(
                f"{weights}: {prefix[:-1]} tensors do not fit the policy: expected "
                f"{ {k: tuple(v.shape) for k, v in state.items()} }, found {found}"
            )
        with torch.no_grad():
            module.load_state_dict(part)


def policy_architecture(config: Any, input_shape: Sequence[int]) -> dict[str, Any]:
    """The :data:`ARCHITECTURE_FIELDS` of a policy config with ``encoder``, ``conv_channels``, ``hidden_sizes`` and
    ``normalize_obs``, whose encoder reads inputs of ``input_shape`` (frames stacked), as ``encoder.json`` has them."""
    return {
        "encoder": config.encoder,
        "input_shape": [int(d) for d in input_shape],
        "conv_channels": list(config.conv_channels),
        "hidden_sizes": list(config.hidden_sizes),
        "normalize_obs": config.normalize_obs,
    }


def freeze(module: nn.Module) -> None:
    """Exclude ``module``'s parameters from training: no gradient, so the optimizer never changes them."""
    module.requires_grad_(False)


__all__ = [
    "ARCHITECTURE_FIELDS",
    "ENCODER_CONFIG",
    "ENCODER_FORMAT",
    "ENCODER_WEIGHTS",
    "freeze",
    "load_pretrained_encoder",
    "policy_architecture",
    "read_encoder_config",
    "write_encoder_files",
]
