"""The one training loop: every policy is trained here.

Seeded (the seed fixes initialization, batch sampling and any noise a loss draws), with a rich progress
bar, scalars to ``metrics.jsonl`` and TensorBoard (when installed), periodic atomic checkpoints, and an
exact ``resume``: a run continued from a checkpoint ends with the same weights as one never interrupted.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from clonekit import __version__
from clonekit.checkpoint import (
    CONFIG_FILE,
    MODEL_FILE,
    OPTIMIZER_FILE,
    RUN_FORMAT,
    TRAINER_FILE,
    atomic_save_tensors,
    checkpoint_dirs,
    load_run_config,
    load_state_into,
    load_tensors,
    optimizer_from_tensors,
    optimizer_to_tensors,
    read_json,
    remove_stale_temporaries,
    write_checkpoint,
)
from clonekit.config import check, config_from_json, config_to_json
from clonekit.data import Dataset
from clonekit.data.spaces import space_from_json
from clonekit.data.windows import EpisodeSubset, StepWeights, sample_batch
from clonekit.errors import CheckpointError, ConfigError, DatasetError
from clonekit.evaluation.attacks import AttackConfig, adversarial_batch
from clonekit.holdout import ValidationLoss, holdout_split
from clonekit.io import atomic_write_json, atomic_write_text
from clonekit.policies import POLICIES, Policy, build_policy, policy_classes
from clonekit.policies.from_data import action_fields, fitting_policies
from clonekit.progress import progress_bar

LR_SCHEDULES = ("constant", "cosine")


def check_lr_schedule(value: str) -> None:
    """A config's ``lr_schedule`` is one of :data:`LR_SCHEDULES` (else :class:`ConfigError` naming it)."""
    check(value in LR_SCHEDULES, "lr_schedule", f"one of {list(LR_SCHEDULES)}", value)


@dataclass(frozen=True)
class TrainConfig:
    """Settings of the training loop (the policy's own settings live in its config).

    Args:
        steps: Number of gradient steps.
        batch_size: Transitions per step, sampled uniformly with replacement.
        lr: Adam learning rate (the peak one with a schedule).
        lr_schedule: ``"constant"``, or ``"cosine"``: the learning rate falls from ``lr`` at the first step
            along a half cosine towards 0 at the last (a function of the step, so a resumed run follows it
            exactly), which keeps the last steps from moving the weights far: the final weights are then
            less an accident of the last few batches.
        weight_decay: Adam weight decay.
        grad_clip: Clip the global gradient norm to this value; 0 turns clipping off.
        fused_adam: Use torch's fused Adam: one kernel updates every parameter instead of a Python loop over
            them, which cuts the per-step overhead on small networks; same update up to float rounding.
        seed: Seeds initialization, batch sampling and any noise inside the loss.
        checkpoint_every: Write a resumable checkpoint every this many steps (and at the end).
        keep_checkpoints: How many checkpoints to keep.
        log_every: Record scalars every this many steps.
        tensorboard: Also write TensorBoard scalars under ``RUN/tb`` (needs ``clonekit[tensorboard]``).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (cuda when available).
        deterministic: On a CUDA device, use torch's deterministic kernels (cuDNN's and cuBLAS's included), so a
            run repeats and a resumed run continues exactly as on the CPU; ops without a deterministic CUDA
            kernel warn instead of failing. False: the faster, nondeterministic kernels. No effect on the CPU.
        action_labels: The stream the policy imitates as its ``action``: ``"action"`` (what was executed) or
            ``"expert_action"`` (labels given by the expert where another action ran: DAgger relabeling, or
            noise-injected demonstrations as in DART).
        adversarial_epsilon: Adversarial training (off at 0): train on observations perturbed by untargeted PGD
            within this L-infinity radius, in the policy's normalized observation units, that maximizes the
            policy's own loss against the current model (see :mod:`clonekit.evaluation.attacks`).
        adversarial_steps: PGD iterations per adversarial batch.
        adversarial_fraction: Fraction of each batch that is perturbed (the rest stays clean).
        val_fraction: Episodes held out for a validation loss (``val_loss``, logged with the other scalars):
            ``None`` uses the dataset's recorded validation split if it has one (else none), ``0`` none, a
            fraction in (0, 1) that share of the episodes, the same for every seed (see :mod:`clonekit.holdout`).
        val_batches: Batches of ``batch_size`` held-out samples the validation loss averages (drawn once).
        sample_weights: Name of a float stream of per-step sampling weights (>= 0; e.g. ``weight`` from
            :mod:`clonekit.interactive`): training draws step ``t`` with probability proportional to its weight,
            so a zero-weight step is never drawn; ``None`` draws uniformly.
    """

    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    lr_schedule: str = "constant"
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    fused_adam: bool = True
    seed: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 50
    tensorboard: bool = True
    device: str = "cpu"
    deterministic: bool = True
    action_labels: str = "action"
    adversarial_epsilon: float = 0.0
    adversarial_steps: int = 5
    adversarial_fraction: float = 0.5
    val_fraction: float | None = None
    val_batches: int = 4
    sample_weights: str | None = None

    def __post_init__(self) -> None:
        check(self.steps >= 1, "steps", ">= 1", self.steps)
        check(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
        check(self.lr > 0 and math.isfinite(self.lr), "lr", "a finite number > 0", self.lr)
        check_lr_schedule(self.lr_schedule)
        check(self.weight_decay >= 0, "weight_decay", ">= 0", self.weight_decay)
        check(self.grad_clip >= 0, "grad_clip", ">= 0", self.grad_clip)
        check(self.checkpoint_every >= 1, "checkpoint_every", ">= 1", self.checkpoint_every)
        check(self.keep_checkpoints >= 1, "keep_checkpoints", ">= 1", self.keep_checkpoints)
        check(self.log_every >= 1, "log_every", ">= 1", self.log_every)
        labels = ("action", "expert_action")
        check(self.action_labels in labels, "action_labels", f"one of {list(labels)}", self.action_labels)
        check(self.device in ("cpu", "cuda", "auto"), "device", "cpu|cuda|auto", self.device)
        eps = self.adversarial_epsilon
        check(math.isfinite(eps) and eps >= 0, "adversarial_epsilon", "a finite number >= 0", eps)
        check(1 <= self.adversarial_steps <= 1000, "adversarial_steps", "in [1, 1000]", self.adversarial_steps)
        fraction = self.adversarial_fraction
        check(0 < fraction <= 1, "adversarial_fraction", "in (0, 1]", fraction)
        val = self.val_fraction
        check(val is None or 0 <= val < 1, "val_fraction", "null or a number in [0, 1)", val)
        check(1 <= self.val_batches <= 1000, "val_batches", "in [1, 1000]", self.val_batches)


def policy_config_for(name: str, dataset: Dataset, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config dict of policy ``name`` for ``dataset``: shapes from the dataset, then ``overrides``.

    An action space the policy cannot use is a one-line error naming both (see
    :mod:`clonekit.policies.from_data`, which also says how encoder and normalization follow the data).
    """
    config_cls, policy_cls = policy_classes(name)
    config: dict[str, Any] = {"obs_shape": list(dataset.streams["obs"].shape)}
    action_space = dataset.spaces.get("action", {})
    start = action_space.get("start", 0) if action_space.get("type") == "Discrete" else 0
    if start != 0:
        raise DatasetError(
            f"{dataset.path / 'meta.json'}: spaces.action: expected a Discrete space starting at 0 (the discrete "
            f"policies act in 0..n-1), found {space_from_json(action_space)}; record them as 0..n-1 (action - start) "
            "instead, e.g. with a gymnasium ActionWrapper"
        )
    config.update(action_fields(name, config_cls, action_space, fitting_policies(POLICIES)))
    if "goal" in policy_cls.required_streams and "goal" in dataset.streams:
        config["goal_shape"] = list(dataset.streams["goal"].shape)
    config.update(policy_cls.config_from_data(dataset))
    config.update(overrides or {})
    return config


def _require_same_settings(
    run_dir: Path, run_config: dict[str, Any], stored: TrainConfig, asked: TrainConfig, overrides: dict[str, Any]
) -> None:
    """Raise :class:`CheckpointError` unless ``asked`` (``steps`` aside) equals the run's recorded training
    settings and every policy setting in ``overrides`` equals the recorded one."""
    recorded_policy = run_config["policy_config"]
    asked_policy = json.loads(json.dumps(overrides))  # tuples as lists, as recorded
    pairs = [("policy setting", {k: recorded_policy.get(k) for k in overrides}, asked_policy)]
    pairs.append(("train setting", config_to_json(stored), config_to_json(replace(asked, steps=stored.steps))))
    for kind, before, now in pairs:
        for field, value in before.items():
            if now[field] != value:
                raise CheckpointError(
                    f"{run_dir / CONFIG_FILE}: run was trained with {kind} {field}={value!r}, asked for "
                    f"{now[field]!r}; resume with the run's settings or choose another output directory"
                )


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' requested but no CUDA device is available")
    return torch.device(name)


def _logged_before(line: str, start_step: int) -> bool:
    """Whether a metrics.jsonl line is whole and was logged at or before ``start_step``.

    A process killed while writing leaves a cut-off last line; it is dropped (that step runs again).
    """
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return False
    return isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= start_step


class ScalarLog:
    """metrics.jsonl (always) and TensorBoard (when installed and enabled)."""

    def __init__(self, run_dir: Path, start_step: int, tensorboard: bool) -> None:
        self.path = run_dir / "metrics.jsonl"
        # On resume, drop what was logged after the checkpoint: those steps are run again.
        if self.path.exists():
            lines = self.path.read_text(encoding="utf-8").splitlines()
            kept = [line for line in lines if _logged_before(line, start_step)]
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        self.file = self.path.open("a", encoding="utf-8")
        self.tb: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self.tb = None  # tensorboard is an optional extra; metrics.jsonl still has every scalar
            else:
                self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=start_step or None)

    def log(self, step: int, values: dict[str, float]) -> None:
        self.file.write(json.dumps({"step": step, **values}) + "\n")
        self.file.flush()
        if self.tb is not None:
            for key, value in values.items():
                # val_loss -> val/loss beside train/loss, so TensorBoard groups the two curves alike
                tag = f"val/{key[4:]}" if key.startswith("val_") else f"train/{key}"
                self.tb.add_scalar(tag, value, step)

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


def train(
    policy: str,
    data: str | Path | Dataset,
    out: str | Path,
    config: TrainConfig | None = None,
    policy_overrides: dict[str, Any] | None = None,
    resume: bool = False,
    show_progress: bool = True,
    init_from: str | Path | None = None,
    same_settings: bool = False,
) -> Policy:
    """Train policy ``policy`` on ``data``; write the run directory ``out``; return the trained policy.

    With ``resume=True`` an existing run continues from its newest checkpoint with its recorded settings
    (``config.steps`` may raise the step count). Without it, an existing non-empty ``out`` is an error, so a
    run is never overwritten by accident. With ``same_settings`` (the CLI's ``--resume``, and the experiments,
    which rerun into finished runs) a resumed run must be asked for with its recorded training settings
    (``steps`` aside) and, for each policy setting in ``policy_overrides``, its recorded value: a rerun whose
    settings changed is a one-line :class:`CheckpointError` naming the first differing field, never a silent
    reuse of a run trained otherwise (policy settings left out of ``policy_overrides`` continue as recorded).

    ``init_from`` (fine-tuning, e.g. :mod:`clonekit.continual`): a finished run directory whose final weights,
    normalization included, replace the fresh initialization of a new run (its policy config must build the
    same tensors); the optimizer starts fresh. A resumed run continues from its own checkpoint instead.
    """
    dataset = data if isinstance(data, Dataset) else Dataset.open(data)
    run_dir = Path(out)
    config = config or TrainConfig()
    world = _DistributedContext.from_env(config)
    _, policy_cls = policy_classes(policy)
    if "action" in policy_cls.required_streams:  # observation-only data: say so before the action space is read
        dataset.require_streams(("action",), f"policy {policy!r}")
    existing = run_dir.exists() and any(run_dir.iterdir())
    if existing and not resume:
        raise CheckpointError(f"{run_dir}: already exists; pass --resume to continue it, or choose another --out")
    if existing:
        run_config = load_run_config(run_dir)
        if run_config["policy"] != policy:
            raise CheckpointError(
                f"{run_dir / CONFIG_FILE}: run trains policy {run_config['policy']!r}, not {policy!r}"
            )
        recorded = run_config.get("dataset", {}).get("fingerprint")
        if recorded != dataset.fingerprint:
            raise CheckpointError(
                f"{run_dir / CONFIG_FILE}: run was trained on dataset {recorded}, "
                f"but {dataset.path} is {dataset.fingerprint}"
            )
        recorded_train = run_config["train_config"]
        if isinstance(recorded_train, dict) and "val_fraction" not in recorded_train:
            # A run recorded before val_fraction existed trained on every episode; it continues so.
            recorded_train = {**recorded_train, "val_fraction": 0.0}
        stored = config_from_json(TrainConfig, recorded_train, f"{run_dir / CONFIG_FILE} train_config")
        if same_settings:
            _require_same_settings(run_dir, run_config, stored, config, policy_overrides or {})
        config = replace(stored, steps=max(stored.steps, config.steps))
        policy_config = run_config["policy_config"]
    else:
        policy_config = policy_config_for(policy, dataset, policy_overrides)
    dataset.require_streams(policy_cls.required_streams, f"policy {policy!r}")
    dataset.require_streams((config.action_labels,), f"action_labels={config.action_labels!r}")
    raw_weights = _sample_weights(dataset, config, policy_cls)
    step_weights: StepWeights | None = None
    world.barrier()  # every process has looked at the run directory before the first one writes to it
    if config.batch_size % world.size:
        raise ConfigError(
            f"batch_size: expected a multiple of the number of processes ({world.size}), got {config.batch_size}"
        )
    torch.manual_seed(config.seed)
    model = build_policy(policy, policy_config)
    dataset.require_streams(model.batch_streams(), f"policy {policy!r}")  # streams its config names
    if world.size > 1:
        # Same initial weights everywhere, but each process draws its own noise inside the loss.
        torch.manual_seed(config.seed + 7919 * world.rank)
    device = world.device
    generator = torch.Generator().manual_seed(config.seed + 1 + world.rank)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=config.fused_adam or None
    )
    run_config = {
        "format": RUN_FORMAT,
        "policy": policy,
        "policy_config": config_to_json(model.config),
        "train_config": config_to_json(config),
        "seed": config.seed,
        "dataset": {"path": str(dataset.path), "fingerprint": dataset.fingerprint, "env": dataset.env},
        "clonekit_version": __version__,
        "torch_version": torch.__version__,
    }

    if init_from is not None:
        run_config["init_from"] = str(init_from)
    start_step = 0
    checkpoints = checkpoint_dirs(run_dir)
    if checkpoints:
        start_step = _restore(checkpoints[-1], model, optimizer, generator, world)
    else:
        model.prepare(dataset)
        if init_from is not None:
            weights = Path(init_from) / MODEL_FILE
            load_state_into(model, load_tensors(weights), weights)
    model.to(device)
    _move_optimizer_state(optimizer, device)
    if world.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(run_dir)
        atomic_write_json(run_dir / CONFIG_FILE, run_config)
    if start_step >= config.steps and (run_dir / MODEL_FILE).is_file():
        model.eval()
        return model

    # With several processes, DistributedDataParallel averages the gradients; it hooks into forward(),
    # which for a Policy is compute_loss.
    trainer: torch.nn.Module = model if world.size == 1 else world.wrap(model)
    scalars = ScalarLog(run_dir, start_step, config.tensorboard) if world.is_main else None
    # The action labels may come from another stream (expert_action): gathered under its name, renamed.
    source = {"action": config.action_labels}
    streams = [source.get(s, s) for s in model.batch_streams() if dataset.streams[s].kind == "array"]
    windows = {source.get(name, name): k for name, k in model.sample_windows().items()}
    encoded = {
        s: model.encode_text(s, list(dataset.column(s)))
        for s in policy_cls.required_streams
        if dataset.streams[s].kind == "text"
    }
    for name, values in model.derived_streams(dataset).items():  # e.g. returns-to-go, gathered like the rest
        if name in encoded or name in streams or len(values) != dataset.num_steps:
            raise ConfigError(
                f"policy {policy!r}: derived stream {name!r}: expected a new name and {dataset.num_steps} steps, "
                f"found {len(values)} steps (streams read: {', '.join([*streams, *encoded])})"
            )
        encoded[name] = values
    local_batch = config.batch_size // world.size

    def draw(
        generator: torch.Generator, subset: EpisodeSubset | None, weights: StepWeights | None = None
    ) -> dict[str, torch.Tensor]:
        batch = sample_batch(
            dataset,
            local_batch,
            generator,
            streams,
            windows,
            encoded,
            model.windows_from_episode_start,
            subset,
            weights,
        )
        return {("action" if k == config.action_labels else k): v for k, v in batch.items()}

    train_subset, held_out = holdout_split(dataset, config.val_fraction)
    if raw_weights is not None:  # the cumulative weights over the training steps, built once
        step_weights = StepWeights(raw_weights, None if train_subset is None else train_subset.steps)
    validation = None
    if len(held_out) and world.is_main:
        validation = ValidationLoss(dataset, held_out, draw, config.val_batches, config.seed)
    adversary = _Adversary(config, dataset, device) if config.adversarial_epsilon > 0 else None
    parameters = list(model.parameters())
    grad_norm: torch.Tensor | None = None
    scheduled = config.lr_schedule != "constant"
    model.train()
    try:
        with (
            deterministic_kernels(device.type == "cuda" and config.deterministic),
            progress_bar(f"train {policy}", total=config.steps, enabled=show_progress and world.is_main) as advance,
        ):
            advance(start_step)
            window_start, window_steps = time.perf_counter(), 0
            for step in range(start_step + 1, config.steps + 1):
                drawn = draw(generator, train_subset, step_weights)
                batch = {k: v.to(device, non_blocking=True) for k, v in drawn.items()}
                if adversary is not None:
                    batch = adversary.perturb(model, batch, generator)
                loss, info = trainer(batch)
                for parameter in parameters:  # ``optimizer.zero_grad(set_to_none=True)`` minus its profiler hooks
                    parameter.grad = None
                loss.backward()
                if config.grad_clip > 0:
                    grad_norm = clip_grad_norm(parameters, config.grad_clip)
                if scheduled:
                    for group in optimizer.param_groups:
                        group["lr"] = learning_rate(config, step)
                optimizer.step()
                with torch.no_grad():
                    model.after_optimizer_step(step)
                window_steps += 1
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):
                    raise ConfigError(f"training diverged at step {step}: loss is {loss_value}; lower --lr")
                if scalars is not None and (step % config.log_every == 0 or step == config.steps):
                    elapsed = time.perf_counter() - window_start
                    info |= {
                        "loss": loss_value,
                        "samples_per_s": window_steps * config.batch_size / max(elapsed, 1e-9),
                        "lr": float(optimizer.param_groups[0]["lr"]),
                    }
                    if grad_norm is not None:  # read only when logged: no host sync per step
                        info["grad_norm"] = float(grad_norm)
                    if validation is not None:
                        info["val_loss"] = validation(model, device)
                    scalars.log(step, info)
                    window_start, window_steps = time.perf_counter(), 0
                    advance(0, loss=loss_value)
                if step % config.checkpoint_every == 0 or step == config.steps:
                    _checkpoint(run_dir, step, model, optimizer, generator, config.keep_checkpoints, world)
                advance(1)
    finally:
        if scalars is not None:
            scalars.close()
    if world.is_main:
        atomic_save_tensors(dict(model.state_dict()), run_dir / MODEL_FILE)
    world.barrier()
    model.eval()
    return model


@contextmanager
def deterministic_kernels(enabled: bool) -> Iterator[None]:
    """Within the block, torch runs deterministic kernels only (``torch.use_deterministic_algorithms``, warning
    where an op has none; cuDNN without autotuning); torch's previous settings come back afterwards. cuBLAS
    needs ``CUBLAS_WORKSPACE_CONFIG`` before its first use in the process: set to ``:4096:8`` unless already
    set. Does nothing when not ``enabled``."""
    if not enabled:
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]


def learning_rate(config: TrainConfig, step: int) -> float:
    """The learning rate of gradient step ``step`` (1 to ``config.steps``) under ``config.lr_schedule``."""
    if config.lr_schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * (step - 1) / config.steps))
    return config.lr


def clip_grad_norm(parameters: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Scale the gradients of ``parameters`` (on one device) so that their global L2 norm is at most ``max_norm``;
    return the norm before clipping (a 0-d tensor, left on the device).

    The same computation as ``torch.nn.utils.clip_grad_norm_(parameters, max_norm)``, op for op, so the same
    result bit for bit: per-gradient norms, their norm, ``min(max_norm / (norm + 1e-6), 1)`` as the scale. The
    library call also regroups the gradients by device and dtype and checks which kernels fit, twice, on every
    call: on a small network that cost more than the clipping itself (a tenth of a training step).
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    scale = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    # Scaling by exactly 1 changes nothing: on the CPU, where reading the scale costs no device sync, that
    # pass over every gradient is skipped when the norm is within bounds (the same result, bit for bit).
    if scale.device.type != "cpu" or float(scale) < 1.0:
        torch._foreach_mul_(grads, scale)
    return norm


def _sample_weights(dataset: Dataset, config: TrainConfig, policy_cls: type[Policy]) -> np.ndarray | None:
    """The ``(num_steps,)`` float64 sampling weights of ``config.sample_weights``, checked; None when unset."""
    name = config.sample_weights
    if name is None:
        return None
    dataset.require_streams((name,), f"sample_weights={name!r}")
    spec = dataset.streams[name]
    if spec.kind != "array" or spec.shape != () or not spec.dtype.startswith("float"):
        raise ConfigError(f"sample_weights: stream {name!r} must hold one float per step, found {spec.describe()}")
    if policy_cls.windows_from_episode_start:
        raise ConfigError(f"sample_weights: policy {policy_cls.name!r} samples whole episodes, not weighted steps")
    weights = np.asarray(dataset.column(name), dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(weights) | (weights < 0))
    if len(bad):
        found = weights[bad[0]]
        raise ConfigError(
            f"sample_weights: stream {name!r}, step {bad[0]}: expected a finite weight >= 0, found {found}"
        )
    if not weights.sum() > 0:
        raise ConfigError(f"sample_weights: stream {name!r}: every weight is 0; nothing to train on")
    return weights


class _Adversary:
    """Adversarial training: replaces part of each batch's observations with PGD perturbations."""

    def __init__(self, config: TrainConfig, dataset: Dataset, device: torch.device) -> None:
        self.attack = AttackConfig("pgd", config.adversarial_epsilon, config.adversarial_steps)
        self.fraction = config.adversarial_fraction
        space = dataset.space("observation") if "observation" in dataset.spaces else None
        self.low = self.high = None
        if isinstance(space, gym.spaces.Box):
            self.low = torch.as_tensor(space.low, dtype=torch.float32, device=device)
            self.high = torch.as_tensor(space.high, dtype=torch.float32, device=device)

    def perturb(self, model: Policy, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, Any]:
        # The random starts come from the batch sampler's generator, which checkpoints hold (exact resume).
        return adversarial_batch(model, batch, self.attack, self.fraction, self.low, self.high, generator)


_closed_process_group = False


def shutdown_distributed() -> None:
    """Close the process group a ``torchrun`` launch opened (a no-op in a single process)."""
    global _closed_process_group
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        _closed_process_group = True


def end_worker_process(code: int) -> None:
    """End this process with ``code`` now, skipping interpreter shutdown, if it closed a process group.

    A ``torchrun`` worker must not go through Python's shutdown: gloo's worker threads outlive
    ``destroy_process_group`` and drop the last collectives (which hold Python-owned tensors) a moment after
    they complete; if that happens while the interpreter finalizes, Python ends the thread inside a C++
    destructor and the process aborts with "terminate called without an active exception" (about 1 launch in
    12 on 2 cores with torch 2.13, after all the work was done). Everything is written and flushed first.
    Returns (doing nothing) in a process that never joined a process group.
    """
    if not _closed_process_group:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class _DistributedContext:
    """Where this process stands in a ``torchrun`` launch (or a single process when not launched so)."""

    def __init__(self, rank: int, size: int, device: torch.device) -> None:
        self.rank, self.size, self.device = rank, size, device
        self.is_main = rank == 0

    @classmethod
    def from_env(cls, config: TrainConfig) -> _DistributedContext:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        device = _resolve_device(config.device)
        if size == 1:
            return cls(0, 1, device)
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), device)

    def wrap(self, model: Policy) -> torch.nn.Module:
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def gather(self, value: Any) -> list[Any]:
        """``value`` of every process, in rank order (on every process)."""
        if self.size == 1:
            return [value]
        values: list[Any] = [None] * self.size
        dist.all_gather_object(values, value)
        return values


def _checkpoint(
    run_dir: Path,
    step: int,
    model: Policy,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    keep: int,
    world: _DistributedContext,
) -> None:
    # Every process's random state is kept, so a resumed multi-process run continues exactly too.
    state = {"torch": torch.get_rng_state().tolist(), "sampler": generator.get_state().tolist()}
    if world.device.type == "cuda":  # noise drawn on the GPU (e.g. a diffusion head's) has its own generator
        state["cuda"] = torch.cuda.get_rng_state(world.device).tolist()
    rng = world.gather(state)
    if world.is_main:
        opt_tensors, opt_rest = optimizer_to_tensors(optimizer.state_dict())
        trainer = {"step": step, "optimizer": opt_rest, "rng": rng}
        write_checkpoint(run_dir, step, dict(model.state_dict()), opt_tensors, trainer, keep)
    world.barrier()


def _restore(
    directory: Path,
    model: Policy,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    world: _DistributedContext,
) -> int:
    load_state_into(model, load_tensors(directory / MODEL_FILE), directory / MODEL_FILE)
    trainer = read_json(directory / TRAINER_FILE, "trainer state")
    rng = trainer.get("rng")
    if not isinstance(rng, list) or len(rng) != world.size:
        found = len(rng) if isinstance(rng, list) else "no"
        raise CheckpointError(
            f"{directory / TRAINER_FILE}: expected random states of {world.size} process(es), found {found}; "
            "resume with the number of processes the run was started with"
        )
    try:
        optimizer.load_state_dict(
            optimizer_from_tensors(load_tensors(directory / OPTIMIZER_FILE), trainer["optimizer"])
        )
        torch.set_rng_state(torch.tensor(rng[world.rank]["torch"], dtype=torch.uint8))
        generator.set_state(torch.tensor(rng[world.rank]["sampler"], dtype=torch.uint8))
        if world.device.type == "cuda" and "cuda" in rng[world.rank]:
            torch.cuda.set_rng_state(torch.tensor(rng[world.rank]["cuda"], dtype=torch.uint8), world.device)
        return int(trainer["step"])
    except (KeyError, ValueError, RuntimeError, TypeError) as err:
        raise CheckpointError(f"{directory}: trainer state does not fit this run ({err})") from err


def _move_optimizer_state(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    fused = bool(optimizer.defaults.get("fused"))  # fused Adam keeps its step counter on the parameters' device
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and (key != "step" or fused):
                state[key] = value.to(device)


if __name__ == "__main__":
    # `torchrun --nproc-per-node 2 -m clonekit.train POLICY --data D --out R ...` (same flags as `clonekit train`).
    from clonekit.cli import main

    raise SystemExit(main(["train", *sys.argv[1:]]))
