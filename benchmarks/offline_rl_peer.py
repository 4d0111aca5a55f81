"""Peer check (issue 17 item 7): clonekit's ``iql`` and ``td3bc`` against d3rlpy 2.8.1's IQL and TD3+BC.

Run with clonekit's venv (``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/offline_rl_peer.py [--quick]``):

1. builds one avoiding-mixed dataset with :func:`clonekit.experiments.avoiding_mixed.write_mixture` (settings in
   :data:`FULL` / :data:`QUICK`: expert + noisy + uniform random episodes, sparse success reward) and exports its
   ``obs``, ``action``, ``reward``, ``terminated``, ``truncated`` streams to ``arrays.npz``;
2. for each algorithm and seed trains clonekit's policy with :func:`clonekit.train.train` and d3rlpy's (the
   helper ``benchmarks/d3rlpy_train.py``, run as a subprocess in the d3rlpy venv) for the same number of steps,
   batch size, MLP widths and hyperparameters (:data:`IQL_PARAMS`, :data:`TD3BC_PARAMS`: d3rlpy's defaults,
   set explicitly on both sides), timing each whole training call;
3. evaluates both with clonekit's :func:`clonekit.evaluation.rollout` on the same held-out ``test`` start states
   (d3rlpy's exported TorchScript policy, which holds its observation and action scalers, wrapped by
   :class:`TorchScriptPolicy`) and prints one table.

Both sides: Adam at lr 3e-4 (betas 0.9/0.999), no gradient clipping, observations standardized with the data's
mean/std, actions min-max scaled to [-1, 1], one torch thread. Known differences that remain (not settable):
d3rlpy keeps separate actor and critic optimizers where clonekit sums the losses under one Adam (each loss reaches
only its own network, so the updates are the same up to Adam's shared step count); d3rlpy's IQL actor is a
Gaussian with ``tanh`` on its mean and a state-independent log-std, clonekit's a Gaussian with a state-dependent
log-std and a clipped mean; d3rlpy never samples the last step of a truncated episode, clonekit bootstraps it from
its own value.

The d3rlpy venv (d3rlpy 2.8.1 pins gymnasium 1.0.0, clonekit needs 1.4): made once by :func:`setup_commands`'s
commands (``--setup`` prints them); torch is shared with clonekit's venv through a ``.pth`` file, so nothing
large is downloaded and the new venv's own gymnasium 1.0.0 wins there::

    python3 -m venv .d3rlpy-venv
    echo /work/main/.venv/lib/python3.11/site-packages > \\
        .d3rlpy-venv/lib/python3.11/site-packages/clonekit_torch.pth
    .d3rlpy-venv/bin/pip install --no-deps d3rlpy==2.8.1
    .d3rlpy-venv/bin/pip install tqdm h5py gym click typing-extensions structlog colorama dataclasses-json \\
        scikit-learn gymnasium==1.0.0
    .d3rlpy-venv/bin/python -c "import d3rlpy, torch; print(d3rlpy.__version__, torch.__version__)"

(``/.d3rlpy-venv/`` is listed in ``.git/info/exclude``.) Success intervals: Wilson 95% over the start states
pooled across seeds (each seed's rollout from each start state counts once); samples/s: steps * batch size over
the wall time of the whole training call (clonekit's ``train()`` including its final checkpoint; d3rlpy's
``fit()``), mean over seeds; the ratio is clonekit / d3rlpy of those means, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from clonekit.data import Dataset
from clonekit.envs import get_env_family
from clonekit.evaluation import rollout, split_tasks
from clonekit.evaluation.stats import summarize
from clonekit.experiments.avoiding_mixed import write_mixture
from clonekit.policies.base import Policy
from clonekit.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
D3RLPY_PYTHON = ROOT / ".d3rlpy-venv" / "bin" / "python"
HELPER = Path(__file__).resolve().parent / "d3rlpy_train.py"

# d3rlpy's IQLConfig / TD3PlusBCConfig defaults, given to both implementations.
IQL_PARAMS = {"gamma": 0.99, "tau": 0.005, "expectile": 0.7, "weight_temp": 3.0, "max_weight": 100.0}
TD3BC_PARAMS = {
    "gamma": 0.99,
    "tau": 0.005,
    "alpha": 2.5,
    "target_smoothing_sigma": 0.2,
    "target_smoothing_clip": 0.5,
    "update_actor_interval": 2,
}
ARRAY_STREAMS = ("obs", "action", "reward", "terminated", "truncated")
LR = 3e-4  # d3rlpy's actor_learning_rate and critic_learning_rate


@dataclass(frozen=True)
class PeerConfig:
    """Settings of one peer check.

    Args:
        data_seed: Seed of the dataset and of the held-out start states.
        train_starts: Training start states of the dataset.
        expert_episodes: Expert episodes.
        noisy_episodes: Noisy expert episodes (random action with probability ``noise_prob`` per step).
        random_episodes: Uniform random episodes.
        noise_prob: See ``noisy_episodes``.
        test_starts: Held-out start states (one deterministic rollout each, per seed and implementation).
        seeds: Training seeds.
        steps: Gradient steps of every run.
        batch_size: Transitions per step.
        hidden_sizes: MLP widths of every actor, critic and value network.
    """

    data_seed: int = 0
    train_starts: int = 20
    expert_episodes: int = 10
    noisy_episodes: int = 100
    random_episodes: int = 100
    noise_prob: float = 0.5
    test_starts: int = 200
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 4000
    batch_size: int = 256
    hidden_sizes: tuple[int, ...] = (256, 256)


FULL = PeerConfig()
QUICK = replace(FULL, noisy_episodes=30, random_episodes=30, test_starts=40, steps=400)


def setup_commands(root: Path = ROOT) -> list[str]:
    """The shell commands that make the d3rlpy venv at ``root/.d3rlpy-venv`` (see the module docstring)."""
    venv = root / ".d3rlpy-venv"
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    clonekit_site = root / ".venv" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    return [
        f"python3 -m venv {venv}",
        f"echo {clonekit_site / 'site-packages'} > {site / 'clonekit_torch.pth'}",
        f"{venv}/bin/pip install --no-deps d3rlpy==2.8.1",
        f"{venv}/bin/pip install tqdm h5py gym click typing-extensions structlog colorama dataclasses-json "
        "scikit-learn gymnasium==1.0.0",
        f'{venv}/bin/python -c "import d3rlpy, torch; print(d3rlpy.__version__, torch.__version__)"',
    ]


class TorchScriptPolicy(Policy):
    """A TorchScript module ``obs (B, F) -> action (B, A)`` (raw units; e.g. d3rlpy's ``save_policy`` export,
    which applies its fitted scalers itself) as a deterministic clonekit policy for :func:`rollout`."""

    name = "torchscript"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.module = torch.jit.load(str(path), map_location="cpu")

    @property
    def deterministic(self) -> bool:
        """The exported greedy policy is a function of the observation."""
        return True

    def act(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, Any]:
        """The module's action ``(B, A)`` for observations ``obs["obs"]`` ``(B, *obs_shape)``."""
        return self.module(obs["obs"].float().flatten(1)), None


def export_arrays(dataset: Dataset, path: Path) -> None:
    """Write the dataset's ``obs``, ``action``, ``reward``, ``terminated`` and ``truncated`` to ``path`` (.npz)."""
    arrays: dict[str, Any] = {name: np.asarray(dataset.column(name)) for name in ARRAY_STREAMS}
    np.savez(path, **arrays)


def train_clonekit(algo: str, dataset: Dataset, run_dir: Path, config: PeerConfig, seed: int) -> tuple[Policy, float]:
    """Train clonekit's ``algo`` with d3rlpy's hyperparameters; the policy and the training call's seconds."""
    widths = list(config.hidden_sizes)
    if algo == "iql":
        overrides: dict[str, Any] = {
            "hidden_sizes": widths,
            "normalize_obs": "per_feature",
            "gamma": IQL_PARAMS["gamma"],
            "polyak": IQL_PARAMS["tau"],
            "expectile": IQL_PARAMS["expectile"],
            "beta": IQL_PARAMS["weight_temp"],
            "max_weight": IQL_PARAMS["max_weight"],
            "actor": "gaussian",
        }
    else:
        overrides = {
            "hidden_sizes": widths,
            "normalize_obs": "per_feature",
            "gamma": TD3BC_PARAMS["gamma"],
            "polyak": TD3BC_PARAMS["tau"],
            "alpha": TD3BC_PARAMS["alpha"],
            "policy_noise": TD3BC_PARAMS["target_smoothing_sigma"],
            "noise_clip": TD3BC_PARAMS["target_smoothing_clip"],
            "policy_freq": TD3BC_PARAMS["update_actor_interval"],
        }
    train_config = TrainConfig(
        steps=config.steps,
        batch_size=config.batch_size,
        lr=LR,
        grad_clip=0.0,
        seed=seed,
        checkpoint_every=config.steps,
        keep_checkpoints=1,
        log_every=config.steps,
        tensorboard=False,
        val_fraction=0.0,
    )
    start = time.perf_counter()
    policy = train(algo, dataset, run_dir, train_config, policy_overrides=overrides, show_progress=False)
    return policy, time.perf_counter() - start


def train_d3rlpy(algo: str, arrays: Path, out: Path, config: PeerConfig, seed: int) -> tuple[Policy, float]:
    """Train d3rlpy's ``algo`` in its venv; the exported policy and ``fit``'s seconds."""
    params = IQL_PARAMS if algo == "iql" else TD3BC_PARAMS
    command = [
        str(D3RLPY_PYTHON),
        str(HELPER),
        "--data",
        str(arrays),
        "--algo",
        algo,
        "--seed",
        str(seed),
        "--steps",
        str(config.steps),
        "--batch-size",
        str(config.batch_size),
        "--hidden",
        ",".join(str(w) for w in config.hidden_sizes),
        "--params",
        json.dumps({**params, "actor_learning_rate": LR, "critic_learning_rate": LR}),
        "--out",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=out.parent)
    if done.returncode != 0:
        sys.exit(f"error: d3rlpy {algo} seed {seed} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads((out / "result.json").read_text())
    return TorchScriptPolicy(out / "policy.pt"), float(result["seconds"])


def _cell(outcomes: list[np.ndarray]) -> str:
    pooled = summarize(np.concatenate(outcomes).astype(bool))
    lo, hi = pooled["ci95"]
    per_seed = "/".join(f"{o.mean():.2f}" for o in outcomes)
    return f"{pooled['mean']:.2f} [{lo:.2f}, {hi:.2f}] (seeds {per_seed})"


def run(config: PeerConfig, work: Path) -> dict[str, Any]:
    """Build the data, train and evaluate every (algorithm, implementation, seed); the results dict."""
    if not D3RLPY_PYTHON.is_file():
        sys.exit(f"error: {D3RLPY_PYTHON}: not found; make the d3rlpy venv first:\n  " + "\n  ".join(setup_commands()))
    torch.set_num_threads(1)
    counts = {"expert": config.expert_episodes, "noisy": config.noisy_episodes, "random": config.random_episodes}
    dataset = write_mixture(work / "data", config.data_seed, config.train_starts, counts, config.noise_prob)
    arrays = work / "arrays.npz"
    export_arrays(dataset, arrays)
    family = get_env_family("avoiding")
    tasks = split_tasks(dataset.env, "test", config.data_seed, config.test_starts)
    print(
        f"data: {dataset.num_episodes} episodes, {dataset.num_steps} steps "
        f"({counts}); {config.test_starts} test start states; {config.steps} steps x {config.batch_size}",
        flush=True,
    )
    results: dict[str, Any] = {"config": config.__dict__, "runs": []}
    for algo in ("iql", "td3bc"):
        for seed in config.seeds:
            for impl in ("clonekit", "d3rlpy"):
                out = work / f"{algo}-{impl}-{seed}"
                if impl == "clonekit":
                    policy, seconds = train_clonekit(algo, dataset, out, config, seed)
                else:
                    out.mkdir(parents=True)
                    policy, seconds = train_d3rlpy(algo, arrays, out, config, seed)
                episodes = rollout(policy, family, tasks, config.test_starts, config.data_seed)
                run = {
                    "algo": algo,
                    "impl": impl,
                    "seed": seed,
                    "seconds": seconds,
                    "samples_per_s": config.steps * config.batch_size / seconds,
                    "success": episodes.success.astype(bool).tolist(),
                }
                results["runs"].append(run)
                print(
                    f"  {algo:5s} {impl:8s} seed {seed}: success {episodes.success.mean():.2f}, "
                    f"{run['samples_per_s']:.0f} samples/s ({seconds:.1f} s)",
                    flush=True,
                )
    return results


def table(results: dict[str, Any]) -> str:
    """The markdown table of ``results``: success and samples/s per algorithm and implementation, and the ratio."""
    lines = [
        "| algorithm | clonekit success | d3rlpy success | clonekit samples/s | d3rlpy samples/s | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for algo in ("iql", "td3bc"):
        cells: dict[str, tuple[str, float]] = {}
        for impl in ("clonekit", "d3rlpy"):
            runs = [r for r in results["runs"] if r["algo"] == algo and r["impl"] == impl]
            outcomes = [np.asarray(r["success"]) for r in runs]
            cells[impl] = (_cell(outcomes), float(np.mean([r["samples_per_s"] for r in runs])))
        ratio = cells["clonekit"][1] / cells["d3rlpy"][1]
        lines.append(
            f"| {algo} | {cells['clonekit'][0]} | {cells['d3rlpy'][0]} | {cells['clonekit'][1]:.0f} | "
            f"{cells['d3rlpy'][1]:.0f} | {ratio:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    """Parse the flags and run the peer check."""
    parser = argparse.ArgumentParser(description="clonekit iql/td3bc vs d3rlpy 2.8.1 on the same data")
    parser.add_argument("--quick", action="store_true", help="the ~2-minute version (QUICK settings)")
    parser.add_argument("--setup", action="store_true", help="print the commands that make the d3rlpy venv")
    parser.add_argument("--json", type=Path, help="also write the results (every run) to this file")
    args = parser.parse_args()
    if args.setup:
        print("\n".join(setup_commands()))
        return
    config = QUICK if args.quick else FULL
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="offline_rl_peer_") as work:
        results = run(config, Path(work))
    results["wall_s"] = time.perf_counter() - start
    print(table(results))
    print(f"wall time {results['wall_s']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
