from clonekit.policies.recoil.config import RecoilConfig
from clonekit.policies.recoil.policy import RecoilPolicy

__all__ = ["RecoilConfig", "RecoilPolicy"]
