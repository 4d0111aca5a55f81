"""``babyai-overthinking``'s evaluation: every setting and split played apart vs in one grouped rollout, same run.

The experiment compares thought-control settings (``greedy``, ``sticky``, ``rerank``, ``patience``) on three
splits. Played apart (one :class:`~clonekit.policies.thought_cloning.control.ControlledThoughtPolicy` rollout
per setting and split), the network runs once per env step per setting and split; grouped (one
:class:`~clonekit.policies.thought_cloning.control.GroupedControlPolicy` rollout, as the experiment plays
them), once per env step for all of them, and each setting only adds its own extra decoding.

A thought-cloning policy with the preset's sizes (hidden 128, BabyAI observations, a 20-word thought vocabulary)
and random weights (it changes its thought often, so every control has work to do) plays the preset's five
settings on ``val``/``test``/``ood`` task lists of ``--val``/``--episodes`` PutNext seeds, episodes cut at
``--max-steps`` (an untrained policy fails every episode, so every episode runs that long). Printed (one JSON
line): ``cpu_s`` (process CPU seconds of all the rollouts, env stepping included), ``policy_ms_per_step``
(CPU milliseconds of ``act`` per env step, summed over settings and splits; CPU rather than wall time, so a
busy host does not inflate it), ``policy_calls`` (batched ``act`` calls) for both ways, their ratios,
and ``identical``: whether every episode's thoughts, success and length agree.
Run: ``OMP_NUM_THREADS=1 python benchmarks/overthinking_eval.py``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from clonekit.envs import get_env_family
from clonekit.envs.babyai import OBS_SIZE
from clonekit.evaluation.thoughts import ThoughtEpisodes, thought_rollout
from clonekit.experiments.babyai_overthinking import FULL
from clonekit.policies import build_policy
from clonekit.policies.thought_cloning.control import (
    ControlledThoughtPolicy,
    GroupedControlPolicy,
    parse_thought_control,
)

WORDS = [
    "go",
    "to",
    "the",
    "a",
    "pick",
    "up",
    "open",
    "put",
    "next",
    "red",
    "green",
    "blue",
    "purple",
    "yellow",
    "grey",
    "key",
    "ball",
    "box",
    "door",
    "you",
]


class CpuTimed:
    """Wraps a policy's ``act`` (as an instance attribute, which rollouts call) to add up its CPU seconds."""

    def __init__(self, policy: Any) -> None:
        self.act, self.seconds = policy.act, 0.0
        policy.act = self

    def __call__(self, *args: Any) -> Any:
        start = time.process_time()
        out = self.act(*args)
        self.seconds += time.process_time() - start
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=50, help="test and ood episodes (the preset: 100)")
    parser.add_argument("--val", type=int, default=25, help="val episodes (the preset: 50)")
    parser.add_argument("--max-steps", type=int, default=24, help="episode cut")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    family = get_env_family("babyai")
    config: dict[str, Any] = {"obs_shape": [OBS_SIZE], "num_actions": 7, "thought_vocab": WORDS, "hidden_size": 128}
    policy = build_policy("thought_cloning", config).eval()
    test = family.sample_tasks(0, "test", args.episodes, set(), level=FULL.level)
    val = family.sample_tasks(0, "test", args.val, {t.key for t in test}, level=FULL.level)
    splits = {
        "val": val,
        "test": test,
        "ood": family.sample_tasks(0, "test", args.episodes, set(), level=FULL.ood_level),
    }
    env = {"level": FULL.level, "max_steps": args.max_steps}
    groups = [(replace(parse_thought_control(spec), seed=0), split) for spec in FULL.controls for split in splits]

    start = time.process_time()
    apart: list[ThoughtEpisodes] = []
    apart_act, apart_calls = 0.0, 0
    for control, split in groups:
        controlled = ControlledThoughtPolicy(policy, control)
        timed = CpuTimed(controlled)
        apart.append(thought_rollout(controlled, family, splits[split], len(splits[split]), 0, env))
        apart_act += timed.seconds
        apart_calls += controlled.env_steps // len(splits[split])
    apart_cpu = time.process_time() - start

    start = time.process_time()
    grouped = GroupedControlPolicy(policy, [(control, len(splits[split])) for control, split in groups])
    timed = CpuTimed(grouped)
    tasks = [task for _, split in groups for task in splits[split]]
    together = thought_rollout(grouped, family, tasks, len(tasks), 0, env, max_parallel=len(tasks))
    grouped_cpu = time.process_time() - start
    grouped_act = timed.seconds
    grouped_calls = grouped.members[0].env_steps // len(splits[groups[0][1]])

    identical = all(
        together.thoughts[part] == played.thoughts
        and np.array_equal(together.results.success[part], played.results.success)
        and np.array_equal(together.results.lengths[part], played.results.lengths)
        for part, played in zip(grouped.slices, apart, strict=True)
    )
    env_steps = int(sum(played.results.lengths.sum() for played in apart))
    print(
        json.dumps(
            {
                "settings": list(FULL.controls),
                "episodes": len(tasks),
                "env_steps": env_steps,
                "apart": {
                    "cpu_s": round(apart_cpu, 2),
                    "policy_ms_per_step": round(1000 * apart_act / env_steps, 3),
                    "policy_calls": apart_calls,
                },
                "grouped": {
                    "cpu_s": round(grouped_cpu, 2),
                    "policy_ms_per_step": round(1000 * grouped_act / env_steps, 3),
                    "policy_calls": grouped_calls,
                },
                "cpu_ratio": round(apart_cpu / grouped_cpu, 2),
                "policy_ratio": round(apart_act / grouped_act, 2),
                "identical": identical,
            }
        )
    )


if __name__ == "__main__":
    main()
