from clonekit.policies.hilp.config import HILPConfig
from clonekit.policies.hilp.policy import HILPPolicy

__all__ = ["HILPConfig", "HILPPolicy"]
