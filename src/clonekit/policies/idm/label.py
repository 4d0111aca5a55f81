"""``clonekit label``: fill the missing ``action`` stream of an observation-only dataset with an inverse
dynamics model's labels (VPT's pseudo-labelling), so any policy can then be trained on it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clonekit.checkpoint import CONFIG_FILE, MODEL_FILE, load_policy, load_run_config
from clonekit.data import Dataset, DatasetWriter, array_stream
from clonekit.data.formats.source import python_scalar
from clonekit.data.windows import window_indices
from clonekit.errors import CheckpointError, DatasetError
from clonekit.policies.idm.policy import InverseDynamicsModel


def idm_labels(model: InverseDynamicsModel, dataset: Dataset, batch_size: int = 4096) -> np.ndarray:
    """The model's label of every step of ``dataset``: ``(num_steps,)`` int64 (Discrete) or ``(num_steps, D)``
    float32 (Box). Each step's window is built as in training (clipped to its episode)."""
    config = model.config
    labels = []
    model.eval()
    for start in range(0, dataset.num_steps, batch_size):
        index = np.arange(start, min(start + batch_size, dataset.num_steps))
        rows = window_indices(dataset, index, config.window, -config.before)
        obs = dataset.gather(rows.ravel(), ["obs"])["obs"]
        window = torch.from_numpy(obs.reshape(len(index), config.window, *obs.shape[1:]))
        labels.append(model.predict(window).numpy())
    return np.concatenate(labels)


def run_fingerprint(run: Path) -> str:
    """``"sha256:" + hexdigest`` of a run's final weights file (which IDM labelled a dataset)."""
    digest = hashlib.sha256()
    with open(run / MODEL_FILE, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def load_idm(run: str | Path) -> InverseDynamicsModel:
    """The inverse dynamics model of run directory ``run``; a one-line ``CheckpointError`` for a run of
    anything else."""
    run = Path(run)
    trained = load_run_config(run)["policy"]
    if trained != InverseDynamicsModel.name:
        raise CheckpointError(
            f"{run / CONFIG_FILE}: run trains policy {trained!r}, not an inverse dynamics model "
            "(train one with: clonekit train idm --data LABELLED --out RUN)"
        )
    model = load_policy(run)
    assert isinstance(model, InverseDynamicsModel)
    return model


def check_fits(model: InverseDynamicsModel, dataset: Dataset, run: Path) -> None:
    """A one-line ``DatasetError`` unless ``dataset``'s observations (and recorded action space, if any) are
    those the model was trained on."""
    config = model.config
    spec = dataset.streams["obs"]
    if spec.kind != "array" or (spec.dtype, spec.shape) != (config.obs_dtype, tuple(config.obs_shape)):
        trained = array_stream("obs", config.obs_dtype, tuple(config.obs_shape)).describe()
        raise DatasetError(
            f"{dataset.path}: stream 'obs' is {spec.describe()}, but the inverse dynamics model {run} was trained "
            f"on {trained} observations"
        )
    space = dataset.spaces.get("action")
    if space and space != config.action_space:
        raise DatasetError(
            f"{dataset.path}: meta.json spaces['action'] is {space}, but the inverse dynamics model {run} "
            f"predicts {config.action_space}"
        )


def label_dataset(
    data: str | Path | Dataset,
    run: str | Path,
    out: str | Path,
    *,
    batch_size: int = 4096,
    overwrite: bool = False,
) -> Dataset:
    """Write ``data`` (observation-only; only read) to ``out`` with an ``action`` stream of the labels of the
    inverse dynamics model trained in ``run`` (argmax for Discrete actions); returns the new dataset.

    ``meta.json`` gets ``spaces['action']`` (the model's) and ``extra["action_labels"]``: the labels come from
    an IDM, which run, the fingerprint of its weights, the dataset it was trained on, and the source dataset.
    """
    dataset = data if isinstance(data, Dataset) else Dataset.open(data)
    run = Path(run)
    out = Path(out)
    if out.resolve() == dataset.path.resolve():
        raise DatasetError(f"{out}: is the source dataset; clonekit label only reads it, choose another --out")
    if not dataset.observation_only:
        raise DatasetError(
            f"{dataset.path}: already has an 'action' stream; clonekit label fills a missing one "
            "(an observation-only dataset)"
        )
    model = load_idm(run)
    check_fits(model, dataset, run)
    labels = idm_labels(model, dataset, batch_size)
    config = model.config
    description = f"inverse dynamics labels (run {run})"
    if config.discrete:
        action_spec = array_stream("action", "int64", (), description)
    else:
        action_spec = array_stream("action", "float32", (config.num_outputs,), description)
    run_config = load_run_config(run)
    extra: dict[str, Any] = {k: v for k, v in dataset.extra.items() if k != "observation_only"}
    extra["action_labels"] = {
        "source": "idm",
        "run": str(run),
        "run_fingerprint": run_fingerprint(run),
        "idm_trained_on": run_config.get("dataset", {}).get("fingerprint"),
        "labelled_dataset": str(dataset.path),
        "labelled_dataset_fingerprint": dataset.fingerprint,
    }
    info_names = list(dataset.meta.get("episode_info", []))
    writer = DatasetWriter(
        out,
        [*dataset.streams.values(), action_spec],
        spaces={**dataset.spaces, "action": config.action_space},
        env=dataset.env,
        episode_info=info_names,
        extra=extra,
        overwrite=overwrite,
    )
    with writer:
        for i in range(dataset.num_episodes):
            start = int(dataset.episode_starts[i])
            stop = start + int(dataset.episode_lengths[i])
            info = {n: python_scalar(f"{dataset.path}: episode {i}", dataset.episode_info(n)[i]) for n in info_names}
            writer.add_episode({**dataset.episode(i), "action": labels[start:stop]}, info)
        return writer.close()


__all__ = ["check_fits", "idm_labels", "label_dataset", "load_idm", "run_fingerprint"]
