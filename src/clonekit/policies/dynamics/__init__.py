from clonekit.policies.dynamics.config import DynamicsConfig
from clonekit.policies.dynamics.policy import ForwardDynamicsModel

__all__ = ["DynamicsConfig", "ForwardDynamicsModel"]
