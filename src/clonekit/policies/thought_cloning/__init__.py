from clonekit.policies.thought_cloning.config import RecurrentBCConfig, ThoughtCloningConfig
from clonekit.policies.thought_cloning.policy import RecurrentBCPolicy, ThoughtCloningPolicy
from clonekit.policies.thought_cloning.tokenizer import ThoughtTokenizer, build_vocab

__all__ = [
    "RecurrentBCConfig",
    "RecurrentBCPolicy",
    "ThoughtCloningConfig",
    "ThoughtCloningPolicy",
    "ThoughtTokenizer",
    "build_vocab",
]
