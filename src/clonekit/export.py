"""Export a trained policy to ONNX for deployment without clonekit or torch.

The model maps a batch of observations (input ``obs``, dynamic batch axis ``batch``, the observation dtype
and shape of the run) to the deterministic action ``policy.act`` returns (output ``action``, int64), plus
what else the policy exports (``logits`` for BC, ``procedure_labels`` for procedure cloning). The
observation normalization is part of the graph. Each policy says what to export through
:meth:`clonekit.policies.Policy.export_module`; the graph is traced with ``torch.export`` (the dynamo
exporter of ``torch.onnx``), so data-dependent loops (the search of procedure cloning) become ONNX ``Loop``.

A module may take float32 inputs after ``obs`` (its ``extra_inputs``, each ``(batch, *shape)``):
``continuous_bc`` and ``goal_bc`` take the goal (goal_bc) and the random draws of their action head (e.g.
the initial noise of diffusion), so the stochastic ``act`` is reproduced exactly given the same draws; their
output is the float32 action with the action scaling in the graph (see
:class:`clonekit.policies.continuous_bc.policy.ContinuousBCPolicy.export_module`).

Needs the ``onnx`` extra: ``pip install 'clonekit[onnx]'``.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from clonekit.checkpoint import load_policy, load_run_config
from clonekit.errors import ClonekitError, ExportError
from clonekit.io import atomic_write_bytes
from clonekit.policies import Policy

INPUT_NAME = "obs"
BATCH_AXIS = "batch"
# Protobuf cannot hold a model over 2 GiB in one file.
MAX_MODEL_BYTES = 2**31 - 1


def _require(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise ExportError(f"ONNX export needs the {name!r} package ({err}); pip install 'clonekit[onnx]'") from err


def run_obs_dtype(run_dir: Path, config: dict[str, Any]) -> torch.dtype:
    """The observation dtype of a run: from its env's observation space, else its dataset, else float32."""
    from clonekit.envs import ENVS

    dataset = config.get("dataset", {})
    env = dataset.get("env", {})
    if env.get("id") in ENVS:
        obs_space, _ = ENVS[env["id"]].spaces(**env.get("kwargs", {}))
        if obs_space.dtype is not None:
            return torch.from_numpy(np.zeros(0, dtype=obs_space.dtype)).dtype
    if isinstance(dataset.get("path"), str):
        from clonekit.data import Dataset

        with contextlib.suppress(ClonekitError, OSError, ValueError, TypeError):
            data = Dataset.open(Path(dataset["path"]))
            if data.fingerprint == dataset.get("fingerprint"):
                return torch.from_numpy(np.zeros(0, dtype=data.streams["obs"].dtype)).dtype
    return torch.float32


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Keep the exporter's progress lines, warnings and log records off the user's terminal."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_policy_onnx(policy: Policy, out_path: str | Path, obs_dtype: torch.dtype = torch.float32) -> Path:
    """Write ``policy`` as an ONNX model to ``out_path`` (atomically); returns the path.

    ``obs_dtype`` is the dtype of the ``obs`` input; its shape is ``(batch, *policy.config.obs_shape)``. The
    module's ``extra_inputs`` (name -> shape without the batch axis; none by default) follow it, float32.
    """
    out_path = Path(out_path)
    data = onnx_model_bytes(policy, obs_dtype)
    try:
        atomic_write_bytes(out_path, data)
    except OSError as err:
        raise ExportError(f"{out_path}: cannot write the ONNX model ({err.strerror or err})") from err
    return out_path


def onnx_model_bytes(policy: Policy, obs_dtype: torch.dtype = torch.float32) -> bytes:
    """``policy`` as a serialized ONNX model, checked and loaded once in onnxruntime (see
    :func:`export_policy_onnx`)."""
    onnx = _require("onnx")
    ort = _require("onnxruntime")
    _require("onnxscript")  # the dynamo exporter of torch.onnx builds the graph with it
    module = policy.export_module()
    if module is None:
        raise ExportError(f"policy {policy.name!r} cannot be exported to ONNX: it defines no export_module")
    output_names = list(module.output_names)  # type: ignore[arg-type]
    extra_inputs: dict[str, tuple[int, ...]] = dict(getattr(module, "extra_inputs", {}))
    obs_shape = tuple(policy.config.obs_shape)
    # Batch 2 as the example: torch.export specializes a size-1 dim to a constant. Extra inputs are ones
    # (a positive value suits every random draw, e.g. the Exp(1) noise a sampled category divides by).
    examples = [torch.zeros((2, *obs_shape), dtype=obs_dtype)]
    examples += [torch.ones((2, *shape), dtype=torch.float32) for shape in extra_inputs.values()]
    input_names = [INPUT_NAME, *extra_inputs]
    batch = torch.export.Dim(BATCH_AXIS, min=1)
    dynamic_shapes: tuple[Any, ...] = tuple({0: batch} for _ in examples)
    parameters = inspect.signature(module.forward).parameters.values()
    if len(examples) > 1 and any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        # forward(obs, *extra): torch.export sees the extra inputs as one tuple argument.
        dynamic_shapes = (dynamic_shapes[0], dynamic_shapes[1:])
    module = module.cpu().eval()
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                module,
                tuple(examples),
                dynamo=True,
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=dynamic_shapes,
                verbose=False,
            )
    except Exception as err:
        summary = " ".join(str(err).split())[:300]
        raise ExportError(
            f"policy {policy.name!r} could not be exported to ONNX: {type(err).__name__}: {summary}"
        ) from err
    if program is None:  # only the legacy exporter returns None
        raise ExportError(f"policy {policy.name!r}: torch.onnx.export returned no program")
    data = program.model_proto.SerializeToString()
    if len(data) > MAX_MODEL_BYTES:
        raise ExportError(f"policy {policy.name!r}: the ONNX model is {len(data)} bytes, over the 2 GiB limit")
    fixed = [i.name for i in program.model_proto.graph.input if not i.type.tensor_type.shape.dim[0].dim_param]
    if fixed:  # torch.onnx falls back to exporters that specialize the batch size instead of failing
        raise ExportError(f"policy {policy.name!r}: the export fixed the batch size of input(s) {fixed}")
    try:
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
        # The model must also load and run in onnxruntime (a checker-valid model can still use ops it lacks).
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        session.run(None, {name: x.numpy() for name, x in zip(input_names, examples, strict=True)})
    except Exception as err:
        summary = " ".join(str(err).split())[:300]
        raise ExportError(f"policy {policy.name!r}: the exported ONNX model is invalid: {summary}") from err
    return data


class OnnxRuntimePolicy(Policy):
    """A stateless policy whose ``act`` runs its exported ONNX model in onnxruntime (same actions as torch).

    For evaluating what gets deployed, and for speed: onnxruntime has far less per-call overhead than eager
    torch, which dominates small policies (see ``benchmarks/eval_throughput.py``). Inputs the model takes
    besides ``obs`` come from the ``act`` inputs (e.g. ``goal``) or, for the random draws of a stochastic
    head, from ``head.draw_noise`` on torch's global generator, exactly as the torch ``act`` draws them, so
    the actions match the torch policy's under the same seed (up to float rounding). Policies with a memory
    or an action queue (``initial_state`` not None) keep state outside the graph and are refused.
    ``threads``: onnxruntime's intra-op threads (default: torch's thread count).
    """

    name = "onnxruntime"

    @property
    def deterministic(self) -> bool:
        """As the torch policy's: the model gets the same random draws."""
        return self.policy.deterministic

    def __init__(self, policy: Policy, obs_dtype: torch.dtype = torch.float32, threads: int | None = None) -> None:
        super().__init__()
        if policy.initial_state(1) is not None:
            raise ExportError(
                f"policy {policy.name!r} keeps a state between steps (memory or an action queue), which its ONNX "
                "model does not hold; evaluate it with the torch backend"
            )
        ort = _require("onnxruntime")
        data = onnx_model_bytes(policy, obs_dtype)
        module = policy.export_module()
        assert module is not None, "onnx_model_bytes refuses a policy without export_module"
        self.policy = policy.eval()
        self.config = policy.config
        self.noise_names: tuple[str, ...] = tuple(getattr(module, "noise_names", ()))
        extra = dict(getattr(module, "extra_inputs", {}))
        self.input_names = tuple(name for name in extra if name not in self.noise_names)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        self.output: str = getattr(module, "output_names")[0]  # noqa: B009 (a plain attribute of the module)
        head: Any = getattr(policy, "head", None)
        self.draw_noise = head.draw_noise if self.noise_names else None
        self.obs_dtype = obs_dtype

    def act(self, obs: dict[str, torch.Tensor], state: Any | None = None) -> tuple[torch.Tensor, Any]:
        x = obs["obs"]
        if x.dtype != self.obs_dtype:
            raise ExportError(
                f"obs: the ONNX model of policy {self.policy.name!r} takes {self.obs_dtype}, got {x.dtype}"
            )
        feeds = {INPUT_NAME: x.cpu().numpy()}
        for name in self.input_names:
            if name not in obs:
                raise ExportError(f"policy {self.policy.name!r} reads a {name!r} input, which the env did not give")
            feeds[name] = obs[name].cpu().numpy().astype(np.float32, copy=False)
        if self.draw_noise is not None:
            draws = self.draw_noise(len(x), torch.device("cpu"))
            feeds.update({name: draws[name].numpy() for name in self.noise_names})
        return torch.from_numpy(self.session.run([self.output], feeds)[0]), None


def export_onnx(run_dir: str | Path, out_path: str | Path) -> Path:
    """Export the final policy of run directory ``run_dir`` to the ONNX file ``out_path``; returns the path.

    Raises :class:`clonekit.errors.CheckpointError` for a missing or corrupt run and
    :class:`clonekit.errors.ExportError` when the ONNX tools are missing or the policy cannot be exported.
    """
    for name in ("onnx", "onnxruntime", "onnxscript"):
        _require(name)  # fail before loading (and tracing) anything
    run_dir = Path(run_dir)
    out_path = Path(out_path)
    if out_path.is_dir():
        raise ExportError(f"{out_path}: is a directory; expected the path of the .onnx file to write")
    config = load_run_config(run_dir)
    policy = load_policy(run_dir)
    return export_policy_onnx(policy, out_path, run_obs_dtype(run_dir, config))


__all__ = ["OnnxRuntimePolicy", "export_onnx", "export_policy_onnx", "onnx_model_bytes", "run_obs_dtype"]
