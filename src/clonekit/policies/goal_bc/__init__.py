from clonekit.policies.goal_bc.config import GoalBCConfig
from clonekit.policies.goal_bc.policy import GoalBCPolicy

__all__ = ["GoalBCConfig", "GoalBCPolicy"]
