from clonekit.policies.iql.config import IQLConfig
from clonekit.policies.iql.policy import IQLPolicy

__all__ = ["IQLConfig", "IQLPolicy"]
