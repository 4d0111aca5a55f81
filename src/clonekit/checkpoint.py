"""Run directories and checkpoints: safetensors weights + JSON, written atomically, never pickled.

Layout of a run directory::

    RUN/config.json                      policy name + config, train config, dataset fingerprint and env,
                                         seed, clonekit and torch versions
    RUN/model.safetensors                the final weights (written when training ends)
    RUN/checkpoints/step_00001000/       model.safetensors, optimizer.safetensors, trainer.json
    RUN/metrics.jsonl, RUN/tb/           training scalars

A checkpoint directory is written under a temporary name and renamed into place, so a directory named
``step_*`` is always complete.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from clonekit.errors import CheckpointError, ClonekitError
from clonekit.io import atomic_write_json, fsync_dir, make_temp_dir, make_temp_file, new_file_mode
from clonekit.policies import Policy, build_policy

RUN_FORMAT = "clonekit.run"
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
TRAINER_FILE = "trainer.json"
CHECKPOINTS_DIR = "checkpoints"


def atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Atomically write ``tensors`` as a safetensors file (mode as a plain write would give it)."""
    tmp = make_temp_file(path)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp)
        os.chmod(tmp, new_file_mode())  # save_file makes a new file of its own, mode 0600
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path, what: str) -> dict[str, Any]:
    """Read a JSON object; a missing or garbled file is a :class:`CheckpointError` naming it."""
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: expected JSON ({what}), found unreadable content ({err})") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object ({what}), found {type(data).__name__}")
    return data


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file; missing or corrupt files raise :class:`CheckpointError`."""
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from err


def load_state_into(module: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Copy ``tensors`` into ``module``; missing, extra or misshapen tensors are a one-line error."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{path}: weights do not fit the config: missing {missing[:5]}, unexpected {extra[:5]}")
    for name, value in tensors.items():
        if value.shape != expected[name].shape:
            raise CheckpointError(
                f"{path}: tensor {name!r} has shape {tuple(value.shape)}, "
                f"the config needs {tuple(expected[name].shape)}"
            )
    module.load_state_dict(tensors)


def save_policy(policy: Policy, directory: Path, run_config: dict[str, Any]) -> None:
    """Write ``config.json`` (``run_config``) and ``model.safetensors`` for ``policy`` into ``directory``."""
    atomic_save_tensors(dict(policy.state_dict()), directory / MODEL_FILE)
    atomic_write_json(directory / CONFIG_FILE, run_config)


def load_run_config(run_dir: Path) -> dict[str, Any]:
    """The validated ``config.json`` of a run directory."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: run directory not found")
    config = read_json(run_dir / CONFIG_FILE, "run config")
    if config.get("format") != RUN_FORMAT:
        raise CheckpointError(
            f"{run_dir / CONFIG_FILE}: expected format {RUN_FORMAT!r}, found {config.get('format')!r}"
        )
    for key, kind in (("policy", str), ("policy_config", dict)):
        if key not in config:
            raise CheckpointError(f"{run_dir / CONFIG_FILE}: missing key {key!r}")
        if not isinstance(config[key], kind):
            raise CheckpointError(
                f"{run_dir / CONFIG_FILE}: {key}: expected {'a string' if kind is str else 'a JSON object'}, "
                f"found {type(config[key]).__name__}"
            )
    dataset = config.get("dataset", {})
    where = f"{run_dir / CONFIG_FILE}: dataset"
    if not isinstance(dataset, dict):
        raise CheckpointError(f"{where}: expected a JSON object, found {type(dataset).__name__}")
    if not isinstance(dataset.get("fingerprint", ""), str):
        raise CheckpointError(f"{where}.fingerprint: expected a string, found {type(dataset['fingerprint']).__name__}")
    env = dataset.get("env", {})
    if not isinstance(env, dict):
        raise CheckpointError(f"{where}.env: expected a JSON object, found {type(env).__name__}")
    if "id" in env and not isinstance(env["id"], str):
        raise CheckpointError(f"{where}.env.id: expected a string, found {type(env['id']).__name__}")
    if not isinstance(env.get("kwargs", {}), dict):
        raise CheckpointError(f"{where}.env.kwargs: expected a JSON object, found {type(env['kwargs']).__name__}")
    return config


def load_policy(run_dir: str | Path, weights: Path | None = None) -> Policy:
    """Rebuild the policy of a run directory from ``config.json`` and its final (or given) weights."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    try:
        policy = build_policy(config["policy"], config["policy_config"], f"{run_dir / CONFIG_FILE} policy_config")
    except CheckpointError:
        raise
    except ClonekitError as err:
        raise CheckpointError(str(err)) from err
    path = weights or run_dir / MODEL_FILE
    if not path.is_file() and weights is None:
        raise CheckpointError(f"{path}: final weights not found; the run has not finished (resume it with --resume)")
    load_state_into(policy, load_tensors(path), path)
    policy.eval()
    return policy


# --- training checkpoints ------------------------------------------------------------------------------
def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoint directories of a run, oldest first."""
    root = run_dir / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_"))


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the hidden temp files/dirs a killed process left in ``run_dir`` and its checkpoints; return them.

    Every write here goes to ``.NAME.*`` and is renamed into place, so such leftovers never hold anything that
    was complete. Only call this while no other process writes to the run.
    """
    removed = []
    for directory in (run_dir, run_dir / CHECKPOINTS_DIR):
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            if path.name.startswith((f".{MODEL_FILE}.", f".{CONFIG_FILE}.", ".metrics.jsonl.", ".step_")):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def write_checkpoint(
    run_dir: Path,
    step: int,
    model: dict[str, torch.Tensor],
    optimizer: dict[str, torch.Tensor],
    trainer: dict[str, Any],
    keep: int,
) -> Path:
    """Write checkpoint ``step`` atomically (temp dir + rename) and keep only the newest ``keep``."""
    root = run_dir / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = make_temp_dir(root, f".step_{step:08d}.")
    try:
        atomic_save_tensors(model, tmp / MODEL_FILE)
        atomic_save_tensors(optimizer, tmp / OPTIMIZER_FILE)
        atomic_write_json(tmp / TRAINER_FILE, trainer, compact=True)  # RNG states: thousands of ints
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in checkpoint_dirs(run_dir)[:-keep]:
        shutil.rmtree(old)
    return final


def optimizer_to_tensors(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a torch optimizer ``state_dict`` into flat tensors and a JSON-able remainder."""
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for param_id, param_state in state["state"].items():
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{param_id}.{key}"] = value
            else:
                plain.setdefault(str(param_id), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "plain_state": plain}


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`optimizer_to_tensors`."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, param_id, key = name.split(".", 2)
        state.setdefault(int(param_id), {})[key] = value
    for param_id, values in rest.get("plain_state", {}).items():
        state.setdefault(int(param_id), {}).update(values)
    return {"state": state, "param_groups": rest["param_groups"]}
