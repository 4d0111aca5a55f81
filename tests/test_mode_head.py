"""The MoDE head (``continuous_bc`` with ``head="mode"``): it keeps both modes of a bimodal target, its cached
routing gives the actions per-step routing gives, save -> load is exact, ONNX reproduces it,
the FLOPs counted from layer shapes are those torch's ``FlopCounterMode`` sees, and config errors are one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from clonekit.checkpoint import load_policy
from clonekit.cli import main
from clonekit.data import Dataset
from clonekit.errors import ConfigError
from clonekit.experiments.avoiding_mode import FULL, QUICK, AvoidingModeConfig
from clonekit.export import export_policy_onnx, onnx_model_bytes
from clonekit.nn.flops import inference_macs_per_action
from clonekit.nn.mode import MoDEHead
from clonekit.policies import build_policy
from clonekit.policies.continuous_bc import ContinuousBCConfig
from clonekit.train import TrainConfig, train
from tests.conftest import assert_one_error_line
from tests.test_heads import _fit_bimodal

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL: dict[str, Any] = {
    "head": "mode",
    "hidden_sizes": [16],
    "mode_width": 16,
    "mode_expert_hidden": 8,
    "mode_experts": 3,
    "mode_top_k": 2,
    "diffusion_steps": 3,
}


def test_mode_head_fits_both_modes() -> None:
    samples = _fit_bimodal(
        lambda: MoDEHead(
            32, 1, width=48, expert_hidden=48, layers=2, sigma_max=5.0, sampling_steps=20, schedule="karras"
        ),
        500,
    )
    near_a_mode = ((samples.abs() - 1).abs() < 0.25).float().mean()
    upper = (samples > 0).float().mean()
    # The dense diffusion head's thresholds (tests/test_heads.py). Measured over torch seeds 0-2: 0.91-0.96 near
    # a mode, 0.49-0.53 upper; an MSE head puts every sample near 0.
    assert near_a_mode >= 0.85, f"only {near_a_mode:.2f} of samples near +-1"
    assert 0.35 <= upper <= 0.65, f"{upper:.2f} of samples in the upper mode"


@pytest.mark.parametrize("top_k", [1, 2])
def test_cached_routing_gives_the_actions_of_per_step_routing(top_k: int) -> None:
    torch.manual_seed(0)
    head = MoDEHead(
        6, 2, width=16, expert_hidden=8, layers=2, experts=4, top_k=top_k, sampling_steps=6, sampler="ancestral"
    )
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(30):  # routers away from their initial, near-uniform choice
        loss, info = head.loss(torch.randn(64, 6), torch.randn(64, 2))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert info["balance_loss"] >= 1.0 - 1e-6  # E * sum f_e P_e is 1 when balanced, more otherwise
    head.eval()
    routing = head.cached_routing()
    assert len(routing) == 6 and all(len(step) == 2 and len(step[0][0]) == top_k for step in routing)
    assert len({step[0][0] for step in routing}) > 1  # the noise level picks different experts
    router_calls: list[int] = []
    for router in head.routers:
        router.register_forward_hook(lambda module, inputs, output: router_calls.append(len(output)))
    features = torch.randn(9, 6)
    with torch.inference_mode():
        cached = head.sample(features, torch.Generator().manual_seed(1))
        assert router_calls == []  # expert caching: no router at run time
        head.cache_routing = False
        routed = head.sample(features, torch.Generator().manual_seed(1))
    assert len(router_calls) == 6 * 2
    assert torch.equal(cached, routed)
    # A weight update invalidates the cache.
    head.train()
    with torch.no_grad():
        head.routers[0].bias.copy_(torch.arange(4.0) * 100)
    head.eval()
    assert all(step[0][0][0] == 3 for step in head.cached_routing())


def _config(steps: int) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=16, seed=3, checkpoint_every=5, log_every=4, tensorboard=False)


def test_save_load_and_onnx_are_exact(avoiding_data: Dataset, tmp_path: Path) -> None:
    policy = train("continuous_bc", avoiding_data, tmp_path / "run", _config(12), SMALL, show_progress=False)
    loaded = load_policy(tmp_path / "run")
    rows = np.linspace(0, avoiding_data.num_steps - 1, 7).astype(np.int64)
    obs = torch.from_numpy(avoiding_data.gather(rows, ["obs"])["obs"])
    actions = []
    for agent in (policy, loaded):
        torch.manual_seed(0)
        with torch.inference_mode():
            actions.append(agent.act({"obs": obs})[0])
    assert torch.equal(actions[0], actions[1])

    path = export_policy_onnx(loaded, tmp_path / "policy.onnx", torch.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["obs", "noise"]
    torch.manual_seed(0)  # the draws act made
    noise = loaded.head.draw_noise(7, torch.device("cpu"))  # type: ignore[operator]
    (exported,) = session.run(None, {"obs": obs.numpy(), "noise": noise["noise"].numpy()})
    np.testing.assert_allclose(exported, actions[0].numpy(), rtol=0, atol=1e-4)


@pytest.mark.parametrize("head", ["diffusion", "mode"])
def test_flops_counted_from_shapes_match_flop_counter_mode(head: str) -> None:
    overrides = {**SMALL, "head": head, "diffusion_hidden_sizes": [24, 24], "chunk": 2, "execute_steps": 2}
    policy = build_policy("continuous_bc", {"obs_shape": [3], "action_shape": [2], **overrides}).eval()
    obs = {"obs": torch.randn(5, 3)}
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        policy.act(obs, policy.initial_state(5))  # predicts one chunk of 2 actions for each of 5 envs
    assert counter.get_total_flops() == 2 * 5 * 2 * inference_macs_per_action(policy)


@pytest.mark.parametrize("preset", [FULL, QUICK])
def test_experiment_presets_give_mode_at_most_0_6x_the_dense_flops(preset: AvoidingModeConfig) -> None:
    flops = {}
    for key, overrides in preset.policies().items():
        policy = build_policy("continuous_bc", {"obs_shape": [2], "action_shape": [2], **overrides})
        flops[key] = inference_macs_per_action(policy)
    assert flops["mode"] <= 0.6 * flops["diffusion"], flops


def test_config_errors_are_one_line(avoiding_data: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match=r"mode_top_k: expected 1 or 2, at most mode_experts=1, got 2"):
        ContinuousBCConfig(obs_shape=(2,), action_shape=(2,), head="mode", mode_experts=1, mode_top_k=2)
    base = ["train", "continuous_bc", "--data", str(avoiding_data.path), "--out", str(tmp_path / "run")]
    for setting, needle in (("mode_top_k=3", "mode_top_k"), ("mode_balance_weight=-1", "mode_balance_weight")):
        code = main([*base, "--steps", "1", "--set", 'head="mode"', "--set", setting])
        assert_one_error_line(code, capsys.readouterr().err, needle)


def _graph_tensors(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every constant tensor of the graph by name: the initializers and the values of ``Constant`` nodes."""
    tensors = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.TENSOR:
                    tensors[node.output[0]] = onnx.numpy_helper.to_array(attribute.t)
    return tensors


def _names_holding(tensors: dict[str, np.ndarray], weight: torch.Tensor) -> list[str]:
    """The names of the graph tensors equal to ``weight`` (or to its transpose, as a MatMul would hold it)."""
    reference = weight.detach().numpy()
    candidates = [reference, reference.T] if reference.ndim == 2 else [reference]
    return [
        name
        for name, array in tensors.items()
        if any(array.shape == c.shape and np.allclose(array, c, rtol=0, atol=1e-7) for c in candidates)
    ]


def test_onnx_graph_has_no_router_and_only_the_cached_experts() -> None:
    # 2 layers of 3 experts, top-1, 2 denoising steps (a smaller graph than SMALL's: this export takes ~2.5 s).
    overrides = {**SMALL, "mode_layers": 2, "mode_top_k": 1, "diffusion_steps": 2}
    torch.manual_seed(0)
    policy = build_policy("continuous_bc", {"obs_shape": [3], "action_shape": [2], **overrides}).eval()
    head = policy.head
    assert isinstance(head, MoDEHead)
    routing = head.cached_routing()
    uses = {(layer, e): 0 for layer in range(2) for e in range(3)}
    for step in routing:
        for layer, (chosen, _) in enumerate(step):
            for e in chosen:
                uses[layer, e] += 1
    # With torch seed 0 layer 0 runs expert 2 at both steps and layer 1 experts 0 then 1, so the check below
    # sees a reused expert, a step-dependent choice and three experts that no step runs.
    assert uses == {(0, 0): 0, (0, 1): 0, (0, 2): 2, (1, 0): 1, (1, 1): 1, (1, 2): 0}, uses

    model = onnx.load_from_string(onnx_model_bytes(policy))
    tensors = _graph_tensors(model)
    # The router by name: no initializer, node or node input is named after it.
    names = [*tensors, *(n.name for n in model.graph.node), *(i for n in model.graph.node for i in n.input)]
    assert not [name for name in names if "router" in name.lower()]
    # The router by value: none of its weights is a tensor of the graph, under any name.
    for name, weight in head.routers.named_parameters():
        assert not _names_holding(tensors, weight), f"router weight {name} is in the ONNX graph"
    # The experts: exactly the cached ones are in the graph, each run (consumed by a Gemm/MatMul node) once
    # per denoising step that chose it: 2 steps x 2 layers x top-1 = 4 expert runs in all.
    for (layer, e), count in uses.items():
        expert = head.experts[layer][e]  # type: ignore[index]
        for linear in (m for m in expert.modules() if isinstance(m, torch.nn.Linear)):
            held = _names_holding(tensors, linear.weight)
            assert len(held) == (count > 0), f"expert {layer}.{e}: {held}, chosen {count} times"
            consumers = [n for n in model.graph.node if held and held[0] in n.input]
            assert len(consumers) == count, f"expert {layer}.{e} runs {len(consumers)} times, chosen {count} times"
