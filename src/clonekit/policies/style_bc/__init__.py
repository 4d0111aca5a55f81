from clonekit.policies.style_bc.config import StyleBCConfig
from clonekit.policies.style_bc.policy import StyleBCPolicy

__all__ = ["StyleBCConfig", "StyleBCPolicy"]
