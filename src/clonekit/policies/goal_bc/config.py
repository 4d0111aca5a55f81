"""Configuration of goal-conditioned behaviour cloning."""

from __future__ import annotations

from dataclasses import dataclass

from clonekit.config import check
from clonekit.policies.continuous_bc.config import ContinuousBCConfig


@dataclass(frozen=True)
class GoalBCConfig(ContinuousBCConfig):
    """Goal-conditioned BC: :class:`ContinuousBCConfig` whose policy also reads the ``goal`` stream.

    Every field is as in :class:`ContinuousBCConfig`; ``goal_shape`` is required (filled in from the
    dataset's ``goal`` stream). Train on a dataset with goals, e.g. one written by
    :func:`clonekit.data.relabel.hindsight_relabel`.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        check(len(self.goal_shape) >= 1, "goal_shape", "the shape of the goal stream, e.g. (2,)", self.goal_shape)
