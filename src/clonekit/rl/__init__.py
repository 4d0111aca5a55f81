"""Online RL under clonekit's contracts: PPO whose actor is a clonekit policy, and demonstration-regularized
PPO (a pull towards a frozen BC prior). See :mod:`clonekit.rl.ppo`."""

from clonekit.rl.config import PPOConfig
from clonekit.rl.ppo import train_ppo

__all__ = ["PPOConfig", "train_ppo"]
