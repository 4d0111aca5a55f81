from clonekit.policies.play_lmp.config import PlayLMPConfig
from clonekit.policies.play_lmp.policy import PlayLMPPolicy

__all__ = ["PlayLMPConfig", "PlayLMPPolicy"]
