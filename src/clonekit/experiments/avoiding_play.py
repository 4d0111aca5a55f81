"""Experiment ``avoiding-play``: latent plans from play (Play-LMP) vs goal-conditioned BC, on unseen goals.

The same play data, unseen goals and evaluation as ``avoiding-hilp`` (see
:mod:`clonekit.experiments.avoiding_hilp`); the keys, with the same widths, gradient steps and batch size:

* ``gcbc``: ``goal_bc`` on the play data relabeled with hindsight goals (uniform later states);
* ``play_lmp``: ``play_lmp`` (:mod:`clonekit.policies.play_lmp`): windows of play, a plan encoder and a plan
  prior, a goal- and plan-conditioned policy; at test the prior's plan, replanned every ``replan_every`` steps.
  A sample is a window of ``min_window`` to ``max_window`` steps: ``window_batch_size`` windows (64) hold
  about 1,500 action targets per gradient step, against ``gcbc``'s ``batch_size`` (256) steps.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from clonekit.config import check
from clonekit.envs.avoiding import REACH_TOLERANCE
from clonekit.experiments.avoiding_hilp import KeySpec, reach_table, run_reach_experiment
from clonekit.experiments.common import torch_threads

NAME = "avoiding-play"


@dataclass(frozen=True)
class AvoidingPlayConfig:
    """Settings of ``avoiding-play``.

    Args:
        play_episodes: Episodes of undirected play.
        play_length: Steps per play episode.
        test_goals: Unseen goal points of the ``test`` split.
        starts_per_goal: Start points per goal (episodes per goal).
        max_steps: Step limit of an evaluation episode.
        steps: Gradient steps of each policy.
        batch_size: Steps per gradient step of ``gcbc``.
        window_batch_size: Play windows per gradient step of ``play_lmp`` (each holds ``min_window`` to
            ``max_window`` action targets).
        lr: Adam learning rate of both policies.
        hidden_sizes: Widths of every MLP (goal_bc's encoder; play_lmp's encoder, prior and policy).
        latent_dim: Width of play_lmp's latent plan.
        max_window: Longest play window of play_lmp.
        min_window: Shortest play window of play_lmp.
        replan_every: play_lmp draws a new plan from its prior every this many steps.
        kl_weight: Weight of play_lmp's KL term.
    """

    play_episodes: int = 200
    play_length: int = 400
    test_goals: int = 30
    starts_per_goal: int = 5
    max_steps: int = 120
    steps: int = 4000
    batch_size: int = 256
    window_batch_size: int = 64
    lr: float = 3e-4
    hidden_sizes: tuple[int, ...] = (128, 128)
    latent_dim: int = 16
    max_window: int = 32
    min_window: int = 16
    replan_every: int = 16
    kl_weight: float = 0.01

    def __post_init__(self) -> None:
        for name in (
            "play_episodes",
            "test_goals",
            "starts_per_goal",
            "steps",
            "batch_size",
            "window_batch_size",
            "latent_dim",
        ):
            check(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        check(self.play_length >= 2, "play_length", ">= 2", self.play_length)
        check(self.max_steps >= 1, "max_steps", ">= 1", self.max_steps)
        check(self.lr > 0, "lr", "> 0", self.lr)
        check(len(self.hidden_sizes) >= 1, "hidden_sizes", "at least one width", self.hidden_sizes)
        check(2 <= self.min_window <= self.max_window, "min_window", "in [2, max_window]", self.min_window)
        check(self.replan_every >= 1, "replan_every", ">= 1", self.replan_every)
        check(self.kl_weight >= 0, "kl_weight", ">= 0", self.kl_weight)


FULL = AvoidingPlayConfig()
QUICK = replace(FULL, play_episodes=60, play_length=300, test_goals=10, starts_per_goal=3, steps=800)


def play_keys(config: AvoidingPlayConfig) -> dict[str, KeySpec]:
    """The two keys of ``avoiding-play``."""
    hidden = list(config.hidden_sizes)
    lmp = {
        "hidden_sizes": hidden,
        "latent_dim": config.latent_dim,
        "max_window": config.max_window,
        "min_window": config.min_window,
        "replan_every": config.replan_every,
        "kl_weight": config.kl_weight,
    }
    return {
        "gcbc": KeySpec("goal_bc", {"hidden_sizes": hidden, "head": "mse"}, "relabeled"),
        "play_lmp": KeySpec("play_lmp", lmp, "play", batch_size=config.window_batch_size),
    }


def run(
    out: Path,
    seed: int,
    quick: bool,
    show_progress: bool = True,
    log: Any = print,
    config: AvoidingPlayConfig | None = None,
) -> dict[str, Any]:
    """Run the experiment into ``out``; returns the results dict (also written to ``out/results.json``).

    ``config`` replaces the preset chosen by ``quick`` (``FULL`` or ``QUICK``).
    """
    config = config or (QUICK if quick else FULL)
    describe = [
        "Goal reaching from undirected play: goal-conditioned BC on hindsight-relabeled play (`gcbc`) vs",
        "latent plans from play (`play_lmp`: plan encoder/prior over play windows, goal- and plan-conditioned",
        f"policy). Test: {config.test_goals} unseen goals x {config.starts_per_goal} starts; success within "
        f"{REACH_TOLERANCE} of the goal in {config.max_steps} steps; 95% intervals clustered by goal.",
    ]
    with torch_threads(1):  # small networks: extra intra-op threads buy nothing on a busy machine
        return run_reach_experiment(NAME, play_keys(config), out, seed, quick, show_progress, log, config, describe)


__all__ = ["FULL", "NAME", "QUICK", "AvoidingPlayConfig", "play_keys", "reach_table", "run"]
