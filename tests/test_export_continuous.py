"""ONNX export of ``continuous_bc`` and ``goal_bc``: given the head's random draws as inputs, onnxruntime
returns the actions torch's ``act`` (or, chunked, ``predict_chunk``) returns under the same draws."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from clonekit.data import Dataset
from clonekit.data.relabel import hindsight_relabel
from clonekit.export import export_policy_onnx
from clonekit.policies import Policy, build_policy
from clonekit.train import policy_config_for

SMALL: dict[str, Any] = {
    "hidden_sizes": [16],
    "diffusion_hidden_sizes": [16],
    "diffusion_steps": 3,
    "gmm_components": 3,
}
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "mse": ("continuous_bc", {"head": "mse"}),
    "gmm": ("continuous_bc", {"head": "gmm"}),
    "diffusion": ("continuous_bc", {"head": "diffusion"}),
    "diffusion_ancestral_chunked": (
        "continuous_bc",
        {"head": "diffusion", "diffusion_sampler": "ancestral", "chunk": 3, "execute_steps": 2},
    ),
    "goal_bc_binned": ("goal_bc", {"head": "binned", "action_bins": 7}),
}
EXPECTED_INPUTS = {
    "mse": ["obs"],
    "gmm": ["obs", "component_noise", "noise"],
    "diffusion": ["obs", "noise"],
    "diffusion_ancestral_chunked": ["obs", "noise"],
    "goal_bc_binned": ["obs", "goal", "bin_noise"],
}


@pytest.fixture(scope="module")
def goal_data(avoiding_data: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    out = tmp_path_factory.mktemp("relabel") / "goals"
    return hindsight_relabel(avoiding_data, out, seed=0, keep_original=False)


def _policy(case: str, data: Dataset) -> Policy:
    name, overrides = CASES[case]
    torch.manual_seed(0)  # untrained, but with fitted normalization and action scaling
    policy = build_policy(name, policy_config_for(name, data, {**SMALL, **overrides}))
    policy.prepare(data)
    # A non-trivial action range, so that the scaling in the graph is checked.
    policy.action_low.mul_(3).sub_(0.5)  # type: ignore[operator]
    return policy.eval()


@pytest.mark.parametrize("case", sorted(CASES))
def test_onnx_reproduces_torch_given_the_same_noise(
    case: str, avoiding_data: Dataset, goal_data: Dataset, tmp_path: Path
) -> None:
    data = goal_data if CASES[case][0] == "goal_bc" else avoiding_data
    policy = _policy(case, data)
    path = export_policy_onnx(policy, tmp_path / "policy.onnx", torch.float32)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)  # onnx's own checker, with shape inference
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = [i.name for i in session.get_inputs()]
    assert inputs == EXPECTED_INPUTS[case]
    assert all(i.shape[0] == "batch" for i in session.get_inputs())
    chunk = policy.config.chunk
    assert [o.name for o in session.get_outputs()] == ["action" if chunk == 1 else "action_chunk"]
    for n in (1, 7):
        rows = np.linspace(0, data.num_steps - 1, n).astype(np.int64)
        streams = data.gather(rows, ["obs", "goal"] if "goal" in inputs else ["obs"])
        obs = {k: torch.from_numpy(np.asarray(v)) for k, v in streams.items()}
        torch.manual_seed(n)
        with torch.inference_mode():
            if chunk == 1:
                expected, _ = policy.act(obs, policy.initial_state(n))
            else:
                expected = policy.predict_chunk(obs)  # type: ignore[operator]
        torch.manual_seed(n)  # the same draws, made as act makes them
        noise = policy.head.draw_noise(n, torch.device("cpu"))  # type: ignore[operator]
        feeds = {
            **{k: v.numpy().astype(np.float32) for k, v in obs.items()},
            **{k: v.numpy() for k, v in noise.items()},
        }
        feeds["obs"] = streams["obs"]
        (action,) = session.run(None, feeds)
        assert action.dtype == np.float32
        assert action.shape == ((n, 2) if chunk == 1 else (n, chunk, 2))
        np.testing.assert_allclose(action, expected.numpy(), rtol=0, atol=1e-4)


@pytest.mark.parametrize("case", ["gmm", "goal_bc_binned", "diffusion_ancestral_chunked"])
def test_onnxruntime_policy_acts_like_torch_under_the_same_seed(
    case: str, avoiding_data: Dataset, goal_data: Dataset
) -> None:
    from clonekit.envs import get_env_family
    from clonekit.errors import ExportError
    from clonekit.evaluation import rollout
    from clonekit.export import OnnxRuntimePolicy

    data = goal_data if CASES[case][0] == "goal_bc" else avoiding_data
    policy = _policy(case, data)
    if policy.config.chunk > 1:  # the action queue lives outside the graph
        with pytest.raises(ExportError, match="keeps a state between steps"):
            OnnxRuntimePolicy(policy)
        return
    family = get_env_family("avoiding-goal" if case == "goal_bc_binned" else "avoiding")
    tasks = family.sample_tasks(0, "test", 4, set())
    played: dict[str, list[np.ndarray]] = {"torch": [], "onnxruntime": []}
    for backend, agent in (("torch", policy), ("onnxruntime", OnnxRuntimePolicy(policy))):
        torch.manual_seed(3)
        rollout(agent, family, tasks, 8, seed=0, on_step=lambda s, o, a, st, r=played[backend]: r.append(a.copy()))
    assert len(played["torch"]) == len(played["onnxruntime"]) > 1
    for ours, theirs in zip(played["onnxruntime"], played["torch"], strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)
