from clonekit.policies.idm.config import IDMConfig
from clonekit.policies.idm.policy import InverseDynamicsModel

__all__ = ["IDMConfig", "InverseDynamicsModel"]
