"""Choose ``maze-strategies``' ``ood`` generator setting from the experts alone (no policy is involved).

For each candidate maze setting (size, loop fraction; episode limit ``size * size // 2`` as in the env) it
plays the four strategy experts and the teacher (``choose``) from random starts on unseen mazes and prints
one JSON line: per strategy the success rate within the limit and the mean length of its successful
episodes, the teacher's choice shares, and ``mix_success``: the success of an agent that, every step,
follows a strategy drawn uniformly at random, replanned from its current cell (a proxy for *mixing* the
strategies instead of committing to one per episode).

Rule used for ``ood`` (stated before any policy was evaluated on it): among the candidates that keep the
training observation (9x9 mazes, so ``test`` and the training data stay as they are) and differ from
``test``'s loop fraction (0.2), take the one where
mixing hurts most (lowest ``mix_success``) while the teacher's choices still vary (no strategy chosen on
more than 70% of episodes). Run: ``python benchmarks/maze_strategies_ood.py``.
"""

from __future__ import annotations

import json

import numpy as np

from clonekit.envs.maze import MOVES, sample_tasks
from clonekit.experts.maze_strategies import PLANNERS, STRATEGIES, choose_plan, plan_strategy

# (size, loop fraction); 9 keeps the training observation, 11 and 13 would need a canvas and a retrain.
CANDIDATES = ((9, 0.2), (9, 0.9), (9, 0.1), (9, 0.05), (9, 0.0), (11, 0.0), (11, 0.2), (13, 0.0), (13, 0.2))
MAX_SHARE = 0.7


def profile(size: int, loop_fraction: float, mazes: int = 200, starts: int = 3, seed: int = 12345) -> dict[str, object]:
    """Expert statistics of one generator setting (see the module docstring)."""
    tasks = sample_tasks(seed, "test", mazes, size=size, loop_fraction=loop_fraction)
    max_steps = size * size // 2
    rng = np.random.default_rng(0)
    success: dict[str, list[bool]] = {s: [] for s in STRATEGIES}
    length: dict[str, list[int]] = {s: [] for s in STRATEGIES}
    choices: list[str] = []
    mixed: list[bool] = []
    for task in tasks:
        free = task.free_cells()
        free = free[(free[:, 0] != task.goal[0]) | (free[:, 1] != task.goal[1])]
        for _ in range(starts):
            row, col = free[rng.integers(len(free))]
            start = (int(row), int(col))
            for name in STRATEGIES:
                plan = PLANNERS[name](task, start, max_steps)
                success[name].append(plan.success)
                if plan.success:
                    length[name].append(len(plan.actions))
            choices.append(choose_plan(task, start, max_steps).strategy)
            cell, steps = start, 0
            while cell != task.goal and steps < max_steps:
                plan = plan_strategy(STRATEGIES[int(rng.integers(4))], task, cell, max_steps - steps)
                if not plan.actions:
                    break
                move = MOVES[plan.actions[0]]
                cell, steps = (cell[0] + int(move[0]), cell[1] + int(move[1])), steps + 1
            mixed.append(cell == task.goal)
    shares = {s: round(choices.count(s) / len(choices), 3) for s in STRATEGIES}
    return {
        "size": size,
        "loop_fraction": loop_fraction,
        "max_steps": max_steps,
        "success": {s: round(float(np.mean(success[s])), 3) for s in STRATEGIES},
        "mean_length": {s: round(float(np.mean(length[s])), 1) if length[s] else None for s in STRATEGIES},
        "teacher_choices": shares,
        "mix_success": round(float(np.mean(mixed)), 3),
        "eligible": size == 9 and loop_fraction != 0.2 and max(shares.values()) <= MAX_SHARE,
    }


def main() -> None:
    rows = [profile(size, loop_fraction) for size, loop_fraction in CANDIDATES]
    for row in rows:
        print(json.dumps(row))
    chosen = min((r for r in rows if r["eligible"]), key=lambda r: float(r["mix_success"]))  # type: ignore[arg-type]
    print(json.dumps({"chosen": {"size": chosen["size"], "loop_fraction": chosen["loop_fraction"]}}))


if __name__ == "__main__":
    main()
