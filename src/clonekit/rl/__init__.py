"""Online RL under clonekit's contracts: PPO and SAC whose actors are clonekit policies, and their
demonstration-regularized forms (a pull towards a frozen BC prior). See :mod:`clonekit.rl.ppo` and
:mod:`clonekit.rl.sac`."""

from clonekit.rl.config import PPOConfig
from clonekit.rl.ppo import train_ppo
from clonekit.rl.sac import train_sac
from clonekit.rl.sac_config import SACConfig

__all__ = ["PPOConfig", "SACConfig", "train_ppo", "train_sac"]
