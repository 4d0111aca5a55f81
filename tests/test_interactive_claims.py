"""The README's maze-interactive claims at small scale: Sirius and RLIF beat BC given as many expert labels; with
a late intervener, Sirius's weights beat uniform weights."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from clonekit.envs import get_env_family
from clonekit.evaluation import rollout, split_tasks
from clonekit.experts.collect import collect
from clonekit.interactive import InteractiveConfig, run_interactive
from clonekit.train import TrainConfig, train

SMALL_POLICY = {"encoder": "mlp", "hidden_sizes": [64]}
FAST = {
    "policy_overrides": SMALL_POLICY,
    "batch_size": 64,
    "rlif_critic_steps": 200,
    "rlif_critic_batch_size": 128,
    "rlif_critic_hidden_sizes": [64],
}


def test_sirius_and_rlif_beat_bc_at_the_same_number_of_expert_labels(tmp_path: Path, one_torch_thread: None) -> None:
    maze = {"size": 7}
    demos = collect(
        "maze", "bfs", episodes=4, seed=3, out=tmp_path / "demos", num_tasks=4, env_kwargs=maze, show_progress=False
    )
    family, tasks = get_env_family("maze"), split_tasks(demos.env, "train", 0, 1)

    def success(policy: Any) -> float:
        return float(rollout(policy, family, tasks, 200, 7, maze).success.mean())

    config = InteractiveConfig(train_steps=150, episodes_per_round=24, **FAST)  # an intervener that is always right
    runs = {m: run_interactive(m, demos, tmp_path / m, rounds=3, seed=0, config=config) for m in ("sirius", "rlif")}
    # BC on expert demonstrations of the same mazes with at least as many steps as the demonstrations plus the
    # labels either method spent, trained as long as one round of theirs.
    need = demos.num_steps + max(run.expert_labels for run in runs.values())
    episodes = math.ceil(need / (demos.num_steps / demos.num_episodes))
    while (
        bc_data := collect(
            "maze",
            "bfs",
            episodes=episodes,
            seed=3,
            out=tmp_path / f"bc{episodes}",
            num_tasks=4,
            env_kwargs=maze,
            show_progress=False,
        )
    ).num_steps < need:
        episodes += 2
    config_bc = TrainConfig(steps=150, batch_size=64, tensorboard=False, log_every=10**6, checkpoint_every=10**6)
    bc = success(train("bc", bc_data, tmp_path / "bc", config_bc, SMALL_POLICY, show_progress=False))
    sirius, rlif = success(runs["sirius"].policy), success(runs["rlif"].policy)
    # Measured (demonstrations seeded 3, 4, 5; run seeds 0, 1, 2): sirius 0.82, 0.82, 0.89; rlif 0.86, 0.72, 0.92;
    # bc 0.51, 0.49, 0.70 at 68-83 expert steps. Sirius and RLIF also learn from the policy's own steps that the
    # intervener let run, which BC never sees.
    assert sirius >= bc + 0.15 and rlif >= bc + 0.15, (bc, sirius, rlif, need, bc_data.num_steps)


def sirius_against_uniform(out: Path, seed: int, delay: int) -> tuple[float, float]:
    """Success of Sirius's weights and of uniform weights on the same rounds' kind of data (tiny mazes, an
    intervener that reacts ``delay`` steps late), on the training mazes: ``(sirius, uniform)``."""
    maze = {"size": 7}
    demos = collect(
        "maze", "bfs", episodes=4, seed=seed, out=out / "demos", num_tasks=4, env_kwargs=maze, show_progress=False
    )
    family, tasks = get_env_family("maze"), split_tasks(demos.env, "train", 0, 1)
    uniform = {"weight_intervention": 1.0, "weight_pre_intervention": 1.0}
    result = []
    for name, weights in (("sirius", {}), ("uniform", uniform)):
        config = InteractiveConfig(train_steps=150, episodes_per_round=24, delay=delay, **weights, **FAST)
        run = run_interactive("sirius", demos, out / name, rounds=3, seed=seed, config=config)
        result.append(float(rollout(run.policy, family, tasks, 200, 7, maze).success.mean()))
    return result[0], result[1]


def test_with_a_late_intervener_sirius_weights_beat_uniform_weights(tmp_path: Path, one_torch_thread: None) -> None:
    # `python benchmarks/sirius_late_intervener.py --seeds 0-9` (this function): with a delay of 2 the gap was
    # 0.235-0.50 on every seed (seed 0: 0.92 vs 0.48); with no delay -0.105-0.075 (seed 0: 0.835 vs 0.785), so
    # the test fails if the delay does not reach the intervener or the window is not down-weighted.
    sirius, uniform = sirius_against_uniform(tmp_path, seed=0, delay=2)
    assert sirius >= uniform + 0.10, (sirius, uniform)
