"""Goal-conditioned behaviour cloning: ``(obs, goal) -> action`` with any continuous head.

The model is :class:`ContinuousBCPolicy` with the normalized goal joined to the observation before the
encoder; at evaluation the env supplies the goal (``act({"obs": ..., "goal": ...})``).
"""

from __future__ import annotations

from typing import ClassVar

from clonekit.policies.continuous_bc.policy import ContinuousBCPolicy
from clonekit.policies.goal_bc.config import GoalBCConfig


class GoalBCPolicy(ContinuousBCPolicy):
    """Goal-conditioned behaviour cloning: continuous_bc that also reads the goal stream.

    See :mod:`clonekit.policies.goal_bc`.
    """

    name = "goal_bc"
    required_streams: ClassVar[tuple[str, ...]] = ("obs", "action", "goal")

    def __init__(self, config: GoalBCConfig) -> None:
        super().__init__(config)
