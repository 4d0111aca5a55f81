"""ONNX export: the exported model acts exactly like ``policy.act``, for every registered policy."""

from __future__ import annotations

import contextlib
import io
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from clonekit import io as clonekit_io
from clonekit.checkpoint import load_policy
from clonekit.cli import main
from clonekit.data import Dataset
from clonekit.errors import ExportError
from clonekit.export import OnnxRuntimePolicy, export_onnx, export_policy_onnx, onnx_model_bytes
from clonekit.policies import POLICIES, Policy, build_policy
from clonekit.policies.bc import BCPolicy
from clonekit.train import TrainConfig, policy_config_for, train
from tests.conftest import assert_one_error_line

SMALL = {
    "bc": {"conv_channels": [8, 16], "hidden_sizes": [32]},
    "procedure_cloning": {"hidden_channels": 16},
}
BATCH_SIZES = (1, 37)


@pytest.fixture(scope="module")
def runs(maze_data: Dataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny trained run per policy (the export only has to match torch, not be good)."""
    root = tmp_path_factory.mktemp("export_runs")
    config = TrainConfig(steps=8, batch_size=16, seed=0, checkpoint_every=8, tensorboard=False)
    for name in SMALL:
        train(name, maze_data, root / name, config, policy_overrides=SMALL[name], show_progress=False)
    return {name: root / name for name in SMALL}


@dataclass
class Exported:
    paths: dict[str, Path]
    cli_code: int
    cli_stdout: str


@pytest.fixture(scope="module")
def exported(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """bc exported through the CLI (over an older file), procedure_cloning through the library.

    (An export takes seconds, so each policy is exported once and the CLI test reads this one.)
    """
    out_dir = tmp_path_factory.mktemp("onnx") / "deploy"
    out_dir.mkdir()
    paths = {name: out_dir / f"{name}.onnx" for name in runs}
    paths["bc"].write_bytes(b"an older, different file")  # must be replaced whole
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["export", str(runs["bc"]), "--onnx", str(paths["bc"])])
    assert export_onnx(runs["procedure_cloning"], paths["procedure_cloning"]) == paths["procedure_cloning"]
    return Exported(paths, code, stdout.getvalue())


def _session(path: Path) -> object:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _obs(data: Dataset, n: int) -> np.ndarray:
    rows = np.linspace(0, data.num_steps - 1, n).astype(np.int64)
    return data.gather(rows, ["obs"])["obs"]


def test_every_exportable_policy_is_covered() -> None:
    exportable = {name for name, (_, cls) in POLICIES.items() if cls.export_module is not Policy.export_module}
    # continuous_bc, goal_bc: test_export_continuous.py; iql, td3bc: test_offline_rl.py; recoil: test_recoil.py
    assert exportable == set(SMALL) | {"continuous_bc", "goal_bc", "iql", "td3bc", "recoil"}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_onnx_acts_like_torch(name: str, runs: dict[str, Path], exported: Exported, maze_data: Dataset) -> None:
    path = exported.paths[name]
    assert exported.cli_code == 0
    assert sorted(path.parent.iterdir()) == sorted(exported.paths.values())  # and no temporary files
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)  # onnx's own checker, with shape inference
    session = _session(path)
    (inp,) = session.get_inputs()  # type: ignore[attr-defined]
    assert inp.name == "obs" and inp.type == "tensor(uint8)" and inp.shape == ["batch", 3, 16, 16]
    outputs = [o.name for o in session.get_outputs()]  # type: ignore[attr-defined]
    assert outputs[0] == "action"
    policy = load_policy(runs[name])
    for n in BATCH_SIZES:
        obs = _obs(maze_data, n)
        result = dict(zip(outputs, session.run(None, {"obs": obs}), strict=True))  # type: ignore[attr-defined]
        with torch.inference_mode():
            action, state = policy.act({"obs": torch.from_numpy(obs)}, policy.initial_state(n))
        assert result["action"].dtype == np.int64 and result["action"].shape == (n,)
        np.testing.assert_array_equal(result["action"], action.numpy())
        if name == "bc":
            with torch.inference_mode():
                logits = policy.head(policy.features(torch.from_numpy(obs)))  # type: ignore[operator]
            np.testing.assert_allclose(result["logits"], logits.numpy(), rtol=0, atol=1e-4)
        else:
            np.testing.assert_array_equal(result["procedure_labels"], state["labels"].numpy())


def test_cli_export(exported: Exported) -> None:
    out = exported.paths["bc"]
    assert exported.cli_code == 0
    lines = exported.cli_stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"wrote {out}: "), exported.cli_stdout
    assert [o.name for o in _session(out).get_outputs()] == ["action", "logits"]  # type: ignore[attr-defined]


def test_cli_user_errors(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.onnx"
    code = main(["export", str(tmp_path / "norun"), "--onnx", str(out)])
    assert_one_error_line(code, capsys.readouterr().err, "norun", "not found")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    code = main(["export", str(bad), "--onnx", str(out)])
    assert_one_error_line(code, capsys.readouterr().err, "config.json")
    code = main(["export", str(runs["bc"]), "--onnx", str(tmp_path)])
    assert_one_error_line(code, capsys.readouterr().err, "directory")
    assert not out.exists()


def test_missing_onnx_packages_name_the_extra(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(ExportError, match=r"pip install 'clonekit\[onnx\]'"):
        export_onnx(runs["bc"], tmp_path / "x.onnx")
    code = main(["export", str(runs["bc"]), "--onnx", str(tmp_path / "x.onnx")])
    assert_one_error_line(code, capsys.readouterr().err, "onnxruntime", "pip install 'clonekit[onnx]'")
    assert list(tmp_path.iterdir()) == []


class _NotExportable(BCPolicy):
    def export_module(self) -> None:  # type: ignore[override]
        return None


def test_policy_without_export_module_is_a_clear_error(maze_data: Dataset, tmp_path: Path) -> None:
    policy = _NotExportable(build_policy("bc", policy_config_for("bc", maze_data, SMALL["bc"])).config)
    with pytest.raises(ExportError, match="'bc' cannot be exported"):
        export_policy_onnx(policy, tmp_path / "x.onnx", torch.uint8)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old")

    def interrupted(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(clonekit_io.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        clonekit_io.atomic_write_bytes(path, b"new model bytes")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


@pytest.mark.parametrize("encoder", ["conv", "mlp"])
def test_bc_act_is_the_argmax_of_the_exported_logits(encoder: str, maze_data: Dataset) -> None:
    # ``BCPolicy.act`` runs a flattened copy of the module chain; it must agree with the module structure.
    overrides = {**SMALL["bc"], "encoder": encoder, "normalize_obs": "per_channel"}
    policy = build_policy("bc", policy_config_for("bc", maze_data, overrides))
    policy.prepare(maze_data)
    obs = torch.from_numpy(_obs(maze_data, 37))
    with torch.inference_mode():
        action, _ = policy.act({"obs": obs})
        exported_action, logits = policy.export_module()(obs)  # type: ignore[misc]
        expected = policy.head(policy.features(obs))  # type: ignore[operator]
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)
    torch.testing.assert_close(action, expected.argmax(-1), rtol=0, atol=0)
    torch.testing.assert_close(exported_action, action, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_onnxruntime_backend_plays_the_same_episodes(
    name: str, runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from clonekit.evaluation import evaluate_run

    torch_results = evaluate_run(runs[name], "test", 24, seed=1, num_tasks=6, max_parallel=10)
    ort_results = evaluate_run(runs[name], "test", 24, seed=1, num_tasks=6, max_parallel=10, backend="onnxruntime")
    for field in ("success", "returns", "lengths", "task_index"):
        np.testing.assert_array_equal(getattr(ort_results, field), getattr(torch_results, field))
    if name == "bc":  # the CLI flag, and a clear error for an unknown backend
        code = main(["eval", str(runs[name]), "--episodes", "4", "--backend", "onnxruntime", "--json"])
        assert code == 0 and '"success"' in capsys.readouterr().out
        code = main(["eval", str(runs[name]), "--episodes", "4", "--backend", "tensorrt"])
        assert_one_error_line(code, capsys.readouterr().err, "--backend", "onnxruntime", "tensorrt")


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("thought_cloning", {"obs_shape": [7, 7, 3], "num_actions": 7, "thought_vocab": ["go", "to"]}),
        ("recurrent_bc", {"obs_shape": [7, 7, 3], "num_actions": 7}),
        ("bc", {"obs_shape": [3, 5, 5], "num_actions": 4, "frame_stack": 2}),
    ],
)
def test_policies_with_a_memory_are_refused_by_the_onnxruntime_backend(name: str, config: dict[str, object]) -> None:
    policy = build_policy(name, config)
    with pytest.raises(ExportError, match=f"policy '{name}' keeps a state between steps") as raised:
        OnnxRuntimePolicy(policy)
    assert "\n" not in str(raised.value)
    if name == "bc":  # a frame stack is state the graph would not hold: no ONNX model at all
        with pytest.raises(ExportError, match="cannot be exported to ONNX: it defines no export_module"):
            onnx_model_bytes(policy)
