"""PASTA-style pretraining: a transformer over state-action tokens, one token per scalar, trained by masked
prediction on trajectories, then fine-tuned as the trunk of ``transformer_bc`` (Boige et al., "PASTA: Pretrained
Action-State Transformer Agents", 2023).

Tokens. A window of ``W`` consecutive steps of a trajectory becomes ``W * (D + A)`` tokens, one per state
dimension and one per action dimension of each step (component-level tokenization, which PASTA found better
than one token per state or action), each with a learned component embedding (which also tells state from
action) and a time-slot embedding (:class:`clonekit.nn.component_tokens.ComponentTransformer`). States are
normalized per feature, actions scaled to [-1, 1] by their range, both fitted on the pretraining data.

Objective. Masked-token prediction (PASTA's BERT-like objective): some tokens are hidden (a learned mask
embedding replaces their value) and the transformer predicts the hidden scalars, with an L1 loss. Each window
draws one of two masks: with probability ``prefix_mask_prob`` a *history* mask (the states of the first ``v``
slots are visible, ``v`` uniform in ``1..W``; every action and every later state is hidden: behaviour cloning,
inverse and forward dynamics at once), otherwise a *random* mask (each token hidden with a probability drawn
uniformly from ``[min_mask_ratio, max_mask_ratio]`` per window). Steps without action labels (a dataset with
no ``action`` stream, or ``use_actions=False``) keep every action token hidden and out of the loss, so state
trajectories alone (play, video-derived states) still train the state tokens.

How the weights transfer. ``transformer_bc`` with ``tokenization="component"`` builds the same module over
``h + k - 1`` slots (history ``h``, chunk ``k``) and feeds it exactly a history mask with ``v = h``: the ``h``
history states visible, every action and every later state hidden. It reads its chunk ``a_t .. a_{t+k-1}`` at
the hidden action tokens of slots ``h - 1 .. h + k - 2``, with the same per-component readout, and its L1 loss on
actions scaled to [-1, 1] is the pretraining loss restricted to those tokens. So every pretrained tensor (value,
component, time and mask embeddings, the layers, the readout) keeps its meaning in the policy, which also takes
over the pretraining normalization (the embeddings were learned in those coordinates).

Differences from the paper: values enter through a learned linear map per component and are regressed (L1),
where PASTA discretizes them (mu-law bins, cross-entropy); a continuous readout is what the policy's L1 action
head is, so the readout transfers as it is. Continuous actions and vector states only.

Output directory: ``config.json`` (format ``clonekit.pasta``, the config, dims, dataset fingerprint, losses) and
``model.safetensors`` (the module's tensors under ``trunk.``, the normalization under ``normalization.``), each
written atomically, ``config.json`` last, so a directory with a ``config.json`` is complete.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from clonekit import __version__
from clonekit.checkpoint import atomic_save_tensors, load_tensors
from clonekit.config import check, check_transformer, config_from_json, config_to_json
from clonekit.data import Dataset
from clonekit.data.windows import sample_batch
from clonekit.errors import CheckpointError, ConfigError, DatasetError
from clonekit.io import atomic_write_json
from clonekit.nn import Normalizer
from clonekit.nn.component_tokens import ComponentTransformer
from clonekit.nn.normalize import actions_to_unit, feature_range
from clonekit.progress import progress_bar

FORMAT = "clonekit.pasta"
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"


@dataclass(frozen=True)
class PastaConfig:
    """Settings of PASTA pretraining (see the module docstring).

    Args:
        window: Time slots ``W`` per training window; a policy loading the result needs ``history + chunk - 1``
            slots at most this many.
        d_model: Width of every token (the policy's ``d_model`` must match).
        num_heads: Attention heads per layer (the policy's must match).
        num_layers: Transformer layers (the policy's must match).
        feedforward: Width of each layer's feed-forward block (the policy's must match).
        dropout: Dropout inside the layers during pretraining.

        prefix_mask_prob: Probability that a window gets the history mask (the policy's input), else a random mask.
        min_mask_ratio: Smallest per-window probability of hiding a token under the random mask.
        max_mask_ratio: Largest one.
        use_actions: Read the dataset's action labels; False treats every trajectory as unlabelled (states only).

        steps: Gradient steps.
        batch_size: Windows per step.
        lr: Adam learning rate.
        seed: Seeds initialization, window sampling and masks.
        log_every: Record the training loss every this many steps.
        eval_windows: Fixed windows (and masks) drawn once, on which the loss is measured before and after
            training (``eval_loss_start``, ``eval_loss_end`` in ``config.json``).
    """

    window: int = 5
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 2
    feedforward: int = 128
    dropout: float = 0.0

    prefix_mask_prob: float = 0.5
    min_mask_ratio: float = 0.15
    max_mask_ratio: float = 0.95
    use_actions: bool = True

    steps: int = 2000
    batch_size: int = 128
    lr: float = 3e-4
    seed: int = 0
    log_every: int = 100
    eval_windows: int = 512

    def __post_init__(self) -> None:
        check(1 <= self.window <= 256, "window", "in [1, 256]", self.window)
        check_transformer(self, "d_model")
        check(0 <= self.prefix_mask_prob <= 1, "prefix_mask_prob", "in [0, 1]", self.prefix_mask_prob)
        check(
            0 < self.min_mask_ratio <= self.max_mask_ratio <= 1,
            "min_mask_ratio, max_mask_ratio",
            "0 < min_mask_ratio <= max_mask_ratio <= 1",
            (self.min_mask_ratio, self.max_mask_ratio),
        )
        for name in ("steps", "batch_size", "log_every", "eval_windows"):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check(math.isfinite(self.lr) and self.lr > 0, "lr", "a finite number > 0", self.lr)


def build_trunk(config: PastaConfig, num_components: int) -> ComponentTransformer:
    """The pretrained module for ``num_components = D + A`` scalars per slot."""
    return ComponentTransformer(
        num_components,
        config.window,
        config.d_model,
        config.num_heads,
        config.num_layers,
        config.feedforward,
        config.dropout,
    )


def _dims(dataset: Dataset) -> tuple[int, int]:
    """``(D, A)``: a vector observation and a continuous action space (``DatasetError`` otherwise)."""
    obs_shape = dataset.streams["obs"].shape
    if len(obs_shape) != 1:
        raise DatasetError(
            f"{dataset.path}: PASTA tokenizes vector states; expected obs of shape (D,), got {obs_shape}"
        )
    action_space = dataset.spaces.get("action", {})
    if action_space.get("type") != "Box" or len(action_space.get("shape", ())) != 1:
        raise DatasetError(
            f"{dataset.path}: PASTA needs a continuous action space of shape (A,) in meta.json, got {action_space}"
        )
    return obs_shape[0], int(action_space["shape"][0])


def draw_masks(config: PastaConfig, batch: int, num_obs: int, num_actions: int, generator: torch.Generator) -> Tensor:
    """Bool ``(B, W, D + A)``, True where a token is visible: the history or the random mask per window."""
    w, c = config.window, num_obs + num_actions
    history = torch.rand(batch, generator=generator) < config.prefix_mask_prob
    visible_slots = torch.randint(1, w + 1, (batch,), generator=generator)
    prefix = torch.zeros(batch, w, c, dtype=torch.bool)
    prefix[:, :, :num_obs] = (torch.arange(w)[None] < visible_slots[:, None])[:, :, None]
    ratio = config.min_mask_ratio + (config.max_mask_ratio - config.min_mask_ratio) * torch.rand(
        batch, generator=generator
    )
    random = torch.rand(batch, w, c, generator=generator) >= ratio[:, None, None]
    return torch.where(history[:, None, None], prefix, random)


def masked_l1(predictions: Tensor, targets: Tensor, visible: Tensor, labelled: Tensor) -> Tensor:
    """Mean absolute error over the hidden tokens that have a label (``labelled`` broadcasts to the tokens)."""
    counted = (~visible & labelled).float()
    return ((predictions - targets).abs() * counted).sum() / counted.sum().clamp_min(1.0)


class _Windows:
    """Normalized training windows ``(B, W, D + A)`` and which of their tokens carry labels."""

    def __init__(self, dataset: Dataset, config: PastaConfig, num_obs: int, num_actions: int) -> None:
        self.dataset, self.config = dataset, config
        self.labelled_actions = config.use_actions and not dataset.observation_only
        self.streams = ["obs", "action"] if self.labelled_actions else ["obs"]
        # Windows centred on the sampled step: some reach before an episode's start (padded with its first step,
        # as the policy's history is there) and some past its end (padded with its last step, as its chunks are).
        span = (config.window, -(config.window // 2))
        self.windows = {name: span for name in self.streams}
        self.normalizer = Normalizer((num_obs,), "per_feature")
        self.normalizer.fit(dataset.column_chunks("obs"))
        self.action_low = -torch.ones(num_actions)
        self.action_high = torch.ones(num_actions)
        if self.labelled_actions:
            low, high = feature_range(dataset.column_chunks("action"), (num_actions,))
            self.action_low, self.action_high = torch.from_numpy(low).float(), torch.from_numpy(high).float()
        self.labelled = torch.ones(num_obs + num_actions, dtype=torch.bool)
        self.labelled[num_obs:] = self.labelled_actions
        self.num_actions = num_actions

    def draw(self, batch_size: int, generator: torch.Generator) -> Tensor:
        batch = sample_batch(self.dataset, batch_size, generator, self.streams, self.windows)
        states = self.normalizer(batch["obs"])
        if self.labelled_actions:
            actions = actions_to_unit(batch["action"], self.action_low, self.action_high)
        else:
            actions = torch.zeros(*states.shape[:2], self.num_actions)
        return torch.cat([states, actions], dim=-1)

    def normalization(self) -> dict[str, Tensor]:
        tensors = {"obs_mean": self.normalizer.mean, "obs_std": self.normalizer.std}
        if self.labelled_actions:
            tensors |= {"action_low": self.action_low, "action_high": self.action_high}
        return {f"normalization.{k}": v.detach().clone().float().contiguous() for k, v in tensors.items()}


def pretrain_pasta(
    config: PastaConfig, data: str | Path | Dataset, out: str | Path, show_progress: bool = True
) -> dict[str, Any]:
    """Pretrain on every trajectory of ``data`` and write ``out`` (see the module docstring); returns the record
    written to ``out/config.json``. An existing ``out`` with a ``config.json`` is an error (never overwritten).

    Windows ``(B, W, D + A)`` are drawn uniformly over all steps of all episodes, whoever played them.
    """
    dataset = data if isinstance(data, Dataset) else Dataset.open(data)
    out = Path(out)
    if (out / CONFIG_FILE).exists():
        raise CheckpointError(f"{out}: already holds a pretrained model; choose another --out")
    num_obs, num_actions = _dims(dataset)
    windows = _Windows(dataset, config, num_obs, num_actions)
    torch.manual_seed(config.seed)
    trunk = build_trunk(config, num_obs + num_actions)
    generator = torch.Generator().manual_seed(config.seed + 1)
    eval_generator = torch.Generator().manual_seed(config.seed + 2)
    eval_values = windows.draw(config.eval_windows, eval_generator)
    eval_visible = draw_masks(config, config.eval_windows, num_obs, num_actions, eval_generator)

    def eval_loss() -> float:
        trunk.eval()
        with torch.no_grad():
            loss = masked_l1(trunk(eval_values, eval_visible), eval_values, eval_visible, windows.labelled)
        trunk.train()
        return float(loss)

    optimizer = torch.optim.Adam(trunk.parameters(), lr=config.lr)
    start_loss = eval_loss()
    losses: list[list[float]] = []
    started = time.perf_counter()
    trunk.train()
    with progress_bar("pretrain pasta", total=config.steps, enabled=show_progress) as advance:
        for step in range(1, config.steps + 1):
            values = windows.draw(config.batch_size, generator)
            visible = draw_masks(config, config.batch_size, num_obs, num_actions, generator)
            loss = masked_l1(trunk(values, visible), values, visible, windows.labelled)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step % config.log_every == 0 or step == config.steps:
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise ConfigError(f"pretraining diverged at step {step}: loss is {value}; lower lr")
                losses.append([step, value])
                advance(0, loss=value)
            advance(1)
    trunk.eval()
    record = {
        "format": FORMAT,
        "pasta_config": config_to_json(config),
        "obs_dim": num_obs,
        "action_dim": num_actions,
        "action_labels": windows.labelled_actions,
        "dataset": {"path": str(dataset.path), "fingerprint": dataset.fingerprint, "env": dataset.env},
        "num_steps": dataset.num_steps,
        "num_episodes": dataset.num_episodes,
        "eval_loss_start": start_loss,
        "eval_loss_end": eval_loss(),
        "train_losses": losses,
        "seconds": time.perf_counter() - started,
        "clonekit_version": __version__,
        "torch_version": torch.__version__,
    }
    out.mkdir(parents=True, exist_ok=True)
    tensors = {f"trunk.{k}": v.detach().clone().contiguous() for k, v in trunk.state_dict().items()}
    atomic_save_tensors({**tensors, **windows.normalization()}, out / MODEL_FILE)
    atomic_write_json(out / CONFIG_FILE, record)  # last: its presence marks a complete directory
    return record


@dataclass(frozen=True)
class PretrainedPasta:
    """What :func:`load_pasta` reads back: the config, the dims, the trunk's tensors and the normalization
    (``obs_mean``, ``obs_std`` ``(D,)``; ``action_low``, ``action_high`` ``(A,)`` when actions were labelled)."""

    config: PastaConfig
    obs_dim: int
    action_dim: int
    trunk: dict[str, Tensor]
    normalization: dict[str, Tensor]


def load_pasta(directory: str | Path) -> PretrainedPasta:
    """Read a directory written by :func:`pretrain_pasta`; a missing or malformed one is a one-line ``ConfigError``
    naming the file."""
    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"pretrained: {path} not found; expected a directory written by `clonekit pretrain pasta`")
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"pretrained: {path} is not readable JSON ({err})") from err
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise ConfigError(f"pretrained: {path}: expected format {FORMAT!r}, found {found!r}")
    config = config_from_json(PastaConfig, record.get("pasta_config"), f"pretrained: {path} pasta_config")
    try:
        tensors = load_tensors(directory / MODEL_FILE)
    except CheckpointError as err:
        raise ConfigError(f"pretrained: {err}") from err
    trunk = {k.removeprefix("trunk."): v for k, v in tensors.items() if k.startswith("trunk.")}
    normalization = {k.removeprefix("normalization."): v for k, v in tensors.items() if k.startswith("normalization.")}
    return PretrainedPasta(config, int(record["obs_dim"]), int(record["action_dim"]), trunk, normalization)


def load_trunk_into(
    trunk: ComponentTransformer, pretrained: PretrainedPasta, directory: str | Path, num_obs: int
) -> None:
    """Copy the pretrained tensors into ``trunk`` (a policy's, over ``trunk.window`` slots, at most the
    pretrained window: the first rows of the time embedding are taken); any mismatch of architecture or dims is a
    one-line ``ConfigError`` naming ``directory/config.json`` or ``model.safetensors``."""
    where = Path(directory) / CONFIG_FILE
    pc = pretrained.config
    expected = {"d_model": pc.d_model, "num_layers": pc.num_layers}
    layer = trunk.transformer.layers[0]
    found = {"d_model": trunk.mask.shape[0], "num_layers": len(trunk.transformer.layers)}
    for name, value in expected.items():
        if found[name] != value:
            raise ConfigError(f"pretrained: {where}: {name} is {value}, the policy has {found[name]}")
    if layer.self_attn.num_heads != pc.num_heads or layer.linear1.out_features != pc.feedforward:
        raise ConfigError(
            f"pretrained: {where}: num_heads, feedforward are {pc.num_heads}, {pc.feedforward}, the policy has "
            f"{layer.self_attn.num_heads}, {layer.linear1.out_features}"
        )
    dims = (pretrained.obs_dim, pretrained.action_dim)
    if dims != (num_obs, trunk.num_components - num_obs):
        raise ConfigError(
            f"pretrained: {where}: state, action dims are {dims}, the policy's data has "
            f"{(num_obs, trunk.num_components - num_obs)}"
        )
    if trunk.window > pc.window:
        raise ConfigError(
            f"pretrained: {where}: window is {pc.window}, the policy needs history + chunk - 1 = {trunk.window}"
        )
    tensors = dict(pretrained.trunk)
    if "time" in tensors:
        tensors["time"] = tensors["time"][: trunk.window]
    own = trunk.state_dict()
    if set(own) != set(tensors) or any(own[k].shape != tensors[k].shape for k in own):
        wrong = sorted(k for k in own if k not in tensors or own[k].shape != tensors[k].shape)
        raise ConfigError(f"pretrained: {Path(directory) / MODEL_FILE}: tensors do not fit the policy: {wrong[:5]}")
    with torch.no_grad():
        trunk.load_state_dict(tensors)


__all__ = [
    "CONFIG_FILE",
    "FORMAT",
    "MODEL_FILE",
    "PastaConfig",
    "PretrainedPasta",
    "build_trunk",
    "draw_masks",
    "load_pasta",
    "load_trunk_into",
    "masked_l1",
    "pretrain_pasta",
]
