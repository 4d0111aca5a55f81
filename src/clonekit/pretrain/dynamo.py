"""DynaMo: in-domain dynamics pretraining of a visual encoder from demonstration frames alone.

After Cui et al., *DynaMo: In-Domain Dynamics Pretraining for Visuo-Motor Control* (NeurIPS 2024). No actions,
no rewards, no augmentations and no outside data: only consecutive frames ``(o_t, o_{t+1})`` of the
demonstrations. Three networks train together:

* the encoder ``e``: a :class:`~clonekit.nn.encoders.CNNEncoder` (the one policies build with
  ``encoder="cnn"``), ``o (B, C, H, W) -> s (B, D)``, after per-channel normalization fitted on the frames;
* an inverse dynamics model ``g``: ``(s_t, s_{t+1}) -> z_t (B, latent_action_dim)``, a latent action whose
  small width is a bottleneck: it cannot carry the whole next embedding, only what changed;
* a forward dynamics model ``f``: ``(s_t, z_t) -> s_hat_{t+1} (B, D)``.

Loss: ``1 - cos(s_hat_{t+1}, stopgrad(s_{t+1}))``, averaged over the batch, plus regularizers on the
embeddings ``s`` of the batch that rule out the collapsed solution (every frame the same embedding, which
predicts itself perfectly): a covariance term (mean squared off-diagonal covariance, as the paper's
covariance regularization) and a variance hinge (each dimension's standard deviation pushed up to 1, as
VICReg's), each with its own weight.

Simplifications against the paper, which suit short, Markov pixel streams: the inverse and forward models
are MLPs over one transition instead of causal transformers over a window of frames; the target is the
online encoder's embedding under a stop-gradient (no EMA copy).

:func:`pretrain_dynamo` writes an encoder directory (see :mod:`clonekit.pretrain.encoder_file`) that the
``bc`` and ``continuous_bc`` policies load with ``encoder_weights=ENC`` (``freeze_encoder`` to keep it fixed).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from clonekit import __version__
from clonekit.config import check, config_from_json, config_to_json
from clonekit.data import Dataset
from clonekit.errors import CheckpointError, DatasetError
from clonekit.io import make_temp_dir
from clonekit.nn.encoders import CNNEncoder, mlp
from clonekit.nn.normalize import Normalizer
from clonekit.policies.from_data import is_image_shape
from clonekit.pretrain.encoder_file import ENCODER_CONFIG, read_encoder_config, write_encoder_files
from clonekit.progress import progress_bar

METHOD = "dynamo"


@dataclass(frozen=True)
class DynamoConfig:
    """Settings of DynaMo pretraining.

    Args:
        conv_channels: Output channels of the encoder's stride-2 3x3 convolutions (a policy loading the encoder
            needs the same ``conv_channels``).
        hidden_sizes: Widths of the encoder's MLP after the convolutions; the last is the embedding width ``D``
            (a policy loading the encoder needs the same ``hidden_sizes``).
        latent_action_dim: Width of the latent action the inverse model infers (the bottleneck).
        dynamics_hidden: Widths of the hidden layers of the inverse and of the forward model.
        covariance_weight: Weight of the covariance regularizer (mean squared off-diagonal covariance of ``s``).
        variance_weight: Weight of the variance hinge (``mean(relu(1 - std(s)))`` over the dimensions).
        steps: Gradient steps.
        batch_size: Transitions ``(o_t, o_{t+1})`` per step, drawn uniformly with replacement.
        lr: Adam learning rate.
        seed: Seeds initialization and batch sampling.
    """

    conv_channels: tuple[int, ...] = (16, 32, 32)
    hidden_sizes: tuple[int, ...] = (128,)
    latent_action_dim: int = 8
    dynamics_hidden: tuple[int, ...] = (256,)
    covariance_weight: float = 0.04
    variance_weight: float = 1.0
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("conv_channels", "hidden_sizes", "dynamics_hidden"):
            sizes = getattr(self, name)
            check(
                1 <= len(sizes) <= 16 and all(0 < s <= 65536 for s in sizes),
                name,
                "1 to 16 widths in [1, 65536]",
                sizes,
            )
        check(1 <= self.latent_action_dim <= 4096, "latent_action_dim", "in [1, 4096]", self.latent_action_dim)
        for name in ("covariance_weight", "variance_weight"):
            value = getattr(self, name)
            check(math.isfinite(value) and value >= 0, name, "a finite number >= 0", value)
        check(self.steps >= 1, "steps", ">= 1", self.steps)
        check(self.batch_size >= 2, "batch_size", ">= 2 (the regularizers need a spread)", self.batch_size)
        check(math.isfinite(self.lr) and self.lr > 0, "lr", "a finite number > 0", self.lr)


class DynamoModel(nn.Module):
    """Encoder, inverse and forward dynamics models of DynaMo (see the module docstring).

    ``loss(obs, next_obs)`` takes two frame batches ``(B, C, H, W)`` (raw, e.g. uint8) and returns the total loss
    and its parts.
    """

    def __init__(self, obs_shape: tuple[int, ...], config: DynamoConfig) -> None:
        super().__init__()
        self.config = config
        self.normalizer = Normalizer(obs_shape, "per_channel")
        self.encoder = CNNEncoder(obs_shape, config.conv_channels, config.hidden_sizes)
        width = self.encoder.out_dim
        self.inverse = mlp(2 * width, config.dynamics_hidden, config.latent_action_dim)
        self.forward_model = mlp(width + config.latent_action_dim, config.dynamics_hidden, width)

    def embed(self, obs: Tensor) -> Tensor:
        """Embeddings ``(B, D)`` of raw frames ``(B, C, H, W)``."""
        return self.encoder(self.normalizer(obs))

    def loss(self, obs: Tensor, next_obs: Tensor) -> tuple[Tensor, dict[str, float]]:
        """The DynaMo loss of transitions ``obs -> next_obs`` (each ``(B, C, H, W)``) and its parts."""
        s = self.embed(torch.cat([obs, next_obs]))  # one pass for both frames
        s_t, s_next = s.chunk(2)
        latent_action = self.inverse(torch.cat([s_t, s_next], dim=1))
        predicted = self.forward_model(torch.cat([s_t, latent_action], dim=1))
        dynamics = (1 - nn.functional.cosine_similarity(predicted, s_next.detach(), dim=1)).mean()
        covariance = off_diagonal_covariance(s)
        variance = torch.relu(1 - torch.sqrt(s.var(dim=0) + 1e-4)).mean()
        total = dynamics + self.config.covariance_weight * covariance + self.config.variance_weight * variance
        parts = {
            "dynamics_loss": float(dynamics.detach()),
            "covariance": float(covariance.detach()),
            "variance_hinge": float(variance.detach()),
        }
        return total, parts


def off_diagonal_covariance(x: Tensor) -> Tensor:
    """Mean squared off-diagonal entry of the covariance ``(D, D)`` of embeddings ``x`` ``(B, D)``."""
    centred = x - x.mean(dim=0)
    cov = centred.T @ centred / max(len(x) - 1, 1)
    d = cov.shape[0]
    off = cov - torch.diag(torch.diagonal(cov))
    return off.square().sum() / max(d * (d - 1), 1)


def transition_starts(dataset: Dataset) -> np.ndarray:
    """Step indices ``t`` (int64) whose next step ``t + 1`` is in the same episode."""
    starts = np.asarray(dataset.episode_starts, dtype=np.int64)
    lengths = np.asarray(dataset.episode_lengths, dtype=np.int64)
    return np.concatenate([np.arange(s, s + n - 1, dtype=np.int64) for s, n in zip(starts, lengths, strict=True)])


def image_frames(dataset: Dataset, where: str) -> np.ndarray:
    """The ``obs`` column ``(N, C, H, W)`` of ``dataset`` (memory-mapped); a dataset without an image stream is
    one line naming ``where``."""
    if "obs" not in dataset.streams:
        raise DatasetError(f"{where}: no 'obs' stream; DynaMo needs an image stream")
    spec = dataset.streams["obs"]
    if spec.kind != "array" or not is_image_shape(tuple(spec.shape)):
        raise DatasetError(
            f"{where}: DynaMo needs image observations (C, H, W), found obs of shape {tuple(spec.shape)}"
        )
    return np.asarray(dataset.column("obs"))


def pretrain_dynamo(
    config: DynamoConfig, data: str | Path | Dataset, out: str | Path, show_progress: bool = True
) -> dict[str, Any]:
    """Pretrain a DynaMo encoder on the frames of ``data``; write the encoder directory ``out``; return its
    ``encoder.json`` contents.

    An ``out`` that holds a DynaMo encoder pretrained on the same dataset with the same ``config`` is reused
    as it is (a rerun resumes nothing, it is done); any other existing non-empty ``out`` is a one-line
    :class:`CheckpointError`, so an encoder is never overwritten. The directory is written under a temporary
    name and renamed into place when training ends.
    """
    dataset = data if isinstance(data, Dataset) else Dataset.open(data)
    out = Path(out)
    asked = config_to_json(config)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not (out / ENCODER_CONFIG).is_file():
            raise CheckpointError(f"{out}: already exists and is not an encoder directory; choose another --out")
        done = read_encoder_config(out)
        # Read back through the config class, so a setting added later with its default still matches.
        recorded = done.get("config")
        same = done.get("method") == METHOD and isinstance(recorded, dict)
        same = same and config_to_json(config_from_json(DynamoConfig, recorded, str(out / ENCODER_CONFIG))) == asked
        if not same or done.get("dataset", {}).get("fingerprint") != dataset.fingerprint:
            raise CheckpointError(
                f"{out}: holds an encoder pretrained with other settings or data; choose another --out"
            )
        return done
    frames = image_frames(dataset, str(dataset.path))
    starts = transition_starts(dataset)
    if len(starts) == 0:
        raise DatasetError(f"{dataset.path}: no episode has two steps; DynaMo needs consecutive frames")
    obs_shape = tuple(int(d) for d in frames.shape[1:])
    torch.manual_seed(config.seed)
    model = DynamoModel(obs_shape, config)
    model.normalizer.fit(dataset.column_chunks("obs"))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = np.random.default_rng(config.seed + 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out.parent, f".{out.name}.tmp-")
    try:
        history = _train(model, optimizer, frames, starts, generator, config, tmp, show_progress)
        description = {
            "method": METHOD,
            "encoder": "cnn",
            "obs_shape": list(obs_shape),
            "input_shape": list(obs_shape),
            "frame_stack": 1,
            "conv_channels": list(config.conv_channels),
            "hidden_sizes": list(config.hidden_sizes),
            "out_dim": model.encoder.out_dim,
            "normalize_obs": "per_channel",
            "dataset": {"path": str(dataset.path), "fingerprint": dataset.fingerprint, "env": dataset.env},
            "frames": len(frames),
            "transitions": len(starts),
            "config": asked,
            "first_loss": history[0],
            "final_loss": history[-1],
            "clonekit_version": __version__,
            "torch_version": torch.__version__,
        }
        write_encoder_files(tmp, model.encoder, model.normalizer, description)
        if out.exists():
            out.rmdir()  # empty (checked above): rename cannot replace a directory
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return read_encoder_config(out)


def _train(
    model: DynamoModel,
    optimizer: torch.optim.Optimizer,
    frames: np.ndarray,
    starts: np.ndarray,
    generator: np.random.Generator,
    config: DynamoConfig,
    directory: Path,
    show_progress: bool,
) -> list[float]:
    """The training loop; writes ``metrics.jsonl`` into ``directory`` (the loss and its parts, means over windows
    of up to 50 steps); returns the logged window means of the loss."""
    log_every = min(50, config.steps)
    window: list[float] = []
    part_sums: dict[str, float] = {}
    logged: list[float] = []
    model.train()
    with (
        (directory / "metrics.jsonl").open("w", encoding="utf-8") as metrics,
        progress_bar("pretrain dynamo", total=config.steps, enabled=show_progress) as advance,
    ):
        start = time.perf_counter()
        for step in range(1, config.steps + 1):
            t = np.sort(starts[generator.integers(len(starts), size=config.batch_size)])  # sorted: local reads
            obs = torch.from_numpy(np.ascontiguousarray(frames[t]))
            next_obs = torch.from_numpy(np.ascontiguousarray(frames[t + 1]))
            loss, parts = model.loss(obs, next_obs)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise CheckpointError(f"dynamo pretraining diverged at step {step}: loss is {value}; lower lr")
            window.append(value)
            for name, part in parts.items():
                part_sums[name] = part_sums.get(name, 0.0) + part
            if step % log_every == 0 or step == config.steps:
                mean = float(np.mean(window))
                logged.append(mean)
                means = {name: total / len(window) for name, total in part_sums.items()}
                record = {"step": step, "loss": mean, **means, "seconds": time.perf_counter() - start}
                metrics.write(json.dumps(record) + "\n")
                window, part_sums = [], {}
                advance(0, loss=mean)
            advance(1)
    return logged


__all__ = ["METHOD", "DynamoConfig", "DynamoModel", "image_frames", "off_diagonal_covariance", "pretrain_dynamo"]
