"""Ray scale-out (``--ray``): collection, evaluation and experiment cells give the same results as locally.

One local Ray instance (2 CPUs) serves the whole module. Ray is part of the dev install, so a missing Ray
fails these tests instead of skipping them. This process uses one torch thread, like the Ray tasks (on
busy shared cores several threads are slow), except where a test says otherwise.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from inspect import signature
from pathlib import Path

import numpy as np
import pytest
import torch

from clonekit.cli import main
from clonekit.data import Dataset
from clonekit.distributed import RAY_MISSING, _check_reachable, import_ray, init_ray, ordered_map
from clonekit.errors import ConfigError
from clonekit.evaluation import evaluate_run
from clonekit.experiments import avoiding_modes, get_experiment, maze_procedure
from clonekit.experiments.maze_procedure import MazeProcedureConfig
from clonekit.experts.collect import collect
from clonekit.train import TrainConfig, train
from tests.test_avoiding_experiment import TINY as AVOIDING

TINY = MazeProcedureConfig(
    train_sizes=(2,), episodes_per_maze=3, test_mazes=4, eval_episodes=8, bc_steps=10, pc_steps=10, batch_size=16
)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[int]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield threads
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray = init_ray(None, workers=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def bc_run(maze_data: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ray_runs") / "bc"
    train("bc", maze_data, out, TrainConfig(steps=20, batch_size=32, seed=1, tensorboard=False), show_progress=False)
    return out


def test_ray_collect_writes_the_same_dataset_as_local(local_ray: None, tmp_path: Path) -> None:
    args = {"episodes": 37, "seed": 3, "num_tasks": 4, "batch_size": 8, "show_progress": False}
    local = collect("maze", "bfs", out=tmp_path / "local", **args)  # type: ignore[arg-type]
    remote = collect("maze", "bfs", out=tmp_path / "ray", ray=True, workers=2, **args)  # type: ignore[arg-type]
    assert remote.fingerprint == local.fingerprint
    assert remote.num_episodes == 37 and remote.num_steps == local.num_steps
    # The CLI path: --ray with the same batches gives the same fingerprint too.
    cli = ["collect", "maze", "--expert", "bfs", "--episodes", "37", "--seed", "3", "--tasks", "4"]
    code = main([*cli, "--batch-size", "8", "--out", str(tmp_path / "cli"), "--quiet", "--ray", "--workers", "2"])
    assert code == 0
    assert Dataset.open(tmp_path / "cli").fingerprint == local.fingerprint


def test_ray_eval_gives_the_same_episodes_as_local(
    local_ray: None, bc_run: Path, one_torch_thread: int, capsys: pytest.CaptureFixture[str]
) -> None:
    for split in ("train", "test"):
        local = evaluate_run(bc_run, split, episodes=21, seed=4, num_tasks=5, max_parallel=8)
        remote = evaluate_run(bc_run, split, episodes=21, seed=4, num_tasks=5, max_parallel=8, ray=True, workers=2)
        for field in ("success", "returns", "lengths", "task_index"):
            np.testing.assert_array_equal(getattr(remote, field), getattr(local, field), err_msg=field)
    # The CLI, with this process on its default torch threads while the Ray tasks use one.
    args = ["eval", str(bc_run), "--episodes", "10", "--seed", "2", "--batch-size", "4", "--json"]
    capsys.readouterr()
    torch.set_num_threads(one_torch_thread)
    try:
        assert main(args) == 0
    finally:
        torch.set_num_threads(1)
    local_json = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main([*args, "--ray"]) == 0
    ray_json = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ray_json == local_json and ray_json["metrics"]["success"]["n"] == 10


def test_ray_experiment_cells_match_a_local_run_with_one_thread(local_ray: None, tmp_path: Path) -> None:
    """Ray cells train with one torch thread; a local run with one thread gives the same results.json."""
    local = maze_procedure.run(tmp_path / "local", 5, True, show_progress=False, log=lambda _: None, config=TINY)
    remote = maze_procedure.run(
        tmp_path / "ray", 5, True, show_progress=False, log=lambda _: None, config=TINY, ray=True, workers=2
    )
    assert remote["metrics"] == local["metrics"]
    assert remote["config"] == local["config"] and remote["config"]["torch_threads"] == 1
    on_disk = json.loads((tmp_path / "ray" / "results.json").read_text())
    assert on_disk["metrics"] == json.loads(json.dumps(local["metrics"]))
    assert (tmp_path / "ray" / "report.md").is_file() and (tmp_path / "ray" / "success.png").is_file()


def test_ray_avoiding_modes_matches_a_local_run(local_ray: None, tmp_path: Path) -> None:
    """Each policy's train+eval cell is a Ray task; the experiment uses one torch thread either way."""
    run = partial(avoiding_modes.run, seed=2, quick=True, show_progress=False, log=lambda _: None, config=AVOIDING)
    local = run(tmp_path / "local")
    remote = run(tmp_path / "ray", ray=True, workers=2)
    assert json.dumps(remote, sort_keys=True) == json.dumps(local, sort_keys=True)  # NaN-safe
    assert (tmp_path / "ray" / "trajectories.png").stat().st_size > 1000
    assert "ray" in signature(get_experiment("avoiding-modes").run).parameters  # so the CLI passes --ray


def test_clonekit_error_in_a_task_comes_back_as_itself(local_ray: None) -> None:
    with pytest.raises(ConfigError, match=r"^--tasks: expected >= 1, got 0$"):
        list(ordered_map(_fails, [(1,), (0,)], workers=2))


def _fails(value: int) -> int:
    if value < 1:
        raise ConfigError(f"--tasks: expected >= 1, got {value}")
    return value


def test_without_ray_installed_the_error_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail as if it were not installed
    with pytest.raises(ConfigError, match="pip install 'clonekit\\[ray\\]'"):
        import_ray()
    args = ["collect", "maze", "--expert", "bfs", "--episodes", "2", "--out", str(tmp_path / "d"), "--ray"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert RAY_MISSING in " ".join(err.split()) and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists() and list(tmp_path.iterdir()) == []


def test_an_address_where_no_cluster_answers_fails_fast_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^--ray-address 127\.0\.0\.1:1: no Ray cluster answers there"):
        _check_reachable("127.0.0.1:1")


def test_workers_without_ray_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["collect", "maze", "--expert", "bfs", "--episodes", "2", "--out", str(tmp_path / "d"), "--workers", "2"]
    assert main(args) == 2
    assert "--workers: only used with --ray" in capsys.readouterr().err


def test_core_imports_without_ray() -> None:
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "import clonekit.cli, clonekit.distributed, clonekit.experts.collect, clonekit.evaluation\n"
        "import clonekit.experiments\n"
        "assert 'ray' not in sys.modules or sys.modules['ray'] is None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
