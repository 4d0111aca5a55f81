from clonekit.policies.continuous_bc.config import ContinuousBCConfig
from clonekit.policies.continuous_bc.policy import ContinuousBCPolicy

__all__ = ["ContinuousBCConfig", "ContinuousBCPolicy"]
