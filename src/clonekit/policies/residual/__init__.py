from clonekit.policies.residual.config import ResidualConfig
from clonekit.policies.residual.policy import ResidualPolicy, residual_inputs

__all__ = ["ResidualConfig", "ResidualPolicy", "residual_inputs"]
