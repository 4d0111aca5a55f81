from clonekit.policies.relic.config import RelicConfig
from clonekit.policies.relic.policy import RelicPolicy

__all__ = ["RelicConfig", "RelicPolicy"]
