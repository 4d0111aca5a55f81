from clonekit.policies.bc.config import BCConfig
from clonekit.policies.bc.policy import BCPolicy

__all__ = ["BCConfig", "BCPolicy"]
