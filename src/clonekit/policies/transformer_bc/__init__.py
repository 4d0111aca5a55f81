from clonekit.policies.transformer_bc.config import TransformerBCConfig, TransformerGoalBCConfig
from clonekit.policies.transformer_bc.policy import TransformerBCPolicy, TransformerGoalBCPolicy

__all__ = ["TransformerBCConfig", "TransformerBCPolicy", "TransformerGoalBCConfig", "TransformerGoalBCPolicy"]
