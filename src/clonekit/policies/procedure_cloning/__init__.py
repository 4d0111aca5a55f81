from clonekit.policies.procedure_cloning.config import ProcedureCloningConfig
from clonekit.policies.procedure_cloning.policy import ProcedureCloningPolicy

__all__ = ["ProcedureCloningConfig", "ProcedureCloningPolicy"]
