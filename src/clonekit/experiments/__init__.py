"""Named end-to-end recipes run by ``clonekit run NAME``; ``EXPERIMENTS`` is the one registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clonekit.errors import unknown_name
from clonekit.experiments import avoiding_modes, babyai_thought, maze_procedure


@dataclass(frozen=True)
class ExperimentSpec:
    """An experiment: its ``run(out, seed, quick, show_progress, log)`` and how to tabulate its results."""

    name: str
    description: str
    run: Callable[..., dict[str, Any]]
    table_columns: tuple[str, ...]
    table: Callable[[dict[str, Any]], list[tuple[str, ...]]]


EXPERIMENTS: dict[str, ExperimentSpec] = {
    maze_procedure.NAME: ExperimentSpec(
        name=maze_procedure.NAME,
        description="BC vs procedure cloning on 5 and 20 training mazes, evaluated on unseen mazes",
        run=maze_procedure.run,
        table_columns=("policy", "train success [95% CI]", "test (unseen) success [95% CI]"),
        table=maze_procedure.success_table,
    ),
    avoiding_modes.NAME: ExperimentSpec(
        name=avoiding_modes.NAME,
        description="MSE vs GMM vs diffusion (and chunked diffusion) BC on multimodal Avoiding demonstrations",
        run=avoiding_modes.run,
        table_columns=("policy", "test success [95% CI]", "test entropy [95% CI]", "test modes [95% CI]"),
        table=avoiding_modes.modes_table,
    ),
    babyai_thought.NAME: ExperimentSpec(
        name=babyai_thought.NAME,
        description="Thought cloning vs recurrent BC on BabyAI bot demonstrations: held-out and harder levels",
        run=babyai_thought.run,
        table_columns=("policy", "test success [95% CI]", "ood success [95% CI]", "test thought accuracy"),
        table=babyai_thought.success_table,
    ),
}


def get_experiment(name: str) -> ExperimentSpec:
    """The experiment called ``name``."""
    if name not in EXPERIMENTS:
        raise unknown_name("experiment", name, EXPERIMENTS)
    return EXPERIMENTS[name]


__all__ = ["EXPERIMENTS", "ExperimentSpec", "get_experiment"]
