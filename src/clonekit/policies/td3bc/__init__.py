from clonekit.policies.td3bc.config import TD3BCConfig
from clonekit.policies.td3bc.policy import TD3BCPolicy

__all__ = ["TD3BCConfig", "TD3BCPolicy"]
