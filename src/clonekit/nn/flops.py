"""Inference cost counted from layer shapes: multiply-adds per action of the diffusion heads and their policy.

Only the linear layers are counted (activations, the preconditioning and the sampler's updates are elementwise
and cheap next to them), as ``torch.utils.flop_counter.FlopCounterMode`` counts a forward pass: one FLOP
pair (2 FLOPs) per multiply-add of a matrix product, biases not counted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from clonekit.errors import ConfigError
from clonekit.nn.diffusion import DiffusionHead
from clonekit.nn.encoders import MLPEncoder
from clonekit.nn.mode import MoDEHead

if TYPE_CHECKING:
    from clonekit.policies.continuous_bc import ContinuousBCPolicy


def _linear_shapes(modules: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in modules.modules() if isinstance(m, nn.Linear)]


def denoiser_step_shapes(head: DiffusionHead) -> list[tuple[int, int]]:
    """``(in, out)`` of every linear layer one denoising step runs for one sample: the noise embedding, then
    the dense MLP, or (MoDE, cached routing: no router) the input layer, ``top_k`` experts per layer and the
    output layer."""
    shapes = _linear_shapes(head.noise_embedding)
    if not isinstance(head, MoDEHead):
        return shapes + _linear_shapes(head.net)
    shapes += _linear_shapes(head.input_layer)
    for layer in head.experts:  # every expert of a layer has the same shapes
        shapes += _linear_shapes(next(layer.children())) * head.top_k
    return shapes + _linear_shapes(head.output_layer)


def head_inference_macs(head: DiffusionHead) -> int:
    """Multiply-adds of one ``sample`` per sample (one action, or one chunk): ``sampling_steps`` denoising steps."""
    return head.sampling_steps * sum(i * o for i, o in denoiser_step_shapes(head))


def inference_macs_per_action(policy: ContinuousBCPolicy) -> float:
    """Multiply-adds per executed action of a ``continuous_bc`` policy with a ``diffusion`` or ``mode`` head and
    an MLP encoder: encoder plus head per prediction, divided by the actions each prediction executes (the
    chunk's ``execute_steps`` with a receding horizon, 1 with temporal ensembling)."""
    head, encoder, config = policy.head, policy.encoder, policy.config
    if not isinstance(head, DiffusionHead) or not isinstance(encoder, MLPEncoder):
        raise ConfigError(
            f"inference_macs: counts the diffusion and mode heads over an MLP encoder, got head {config.head!r} "
            f"and encoder {config.encoder!r}"
        )
    per_prediction = sum(i * o for i, o in _linear_shapes(encoder)) + head_inference_macs(head)
    executed = 1 if config.execution == "ensemble" else (config.execute_steps or config.chunk)
    return per_prediction / executed
