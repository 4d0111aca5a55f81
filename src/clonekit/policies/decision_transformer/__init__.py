from clonekit.policies.decision_transformer.config import DecisionTransformerConfig
from clonekit.policies.decision_transformer.policy import DecisionTransformerPolicy, DTHistory

__all__ = ["DTHistory", "DecisionTransformerConfig", "DecisionTransformerPolicy"]
