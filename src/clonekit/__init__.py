"""clonekit: learning from demonstrations — clone the actions and the reasoning behind them."""

__version__ = "0.1.0"

from clonekit.registry import register_env, register_expert, register_policy

__all__ = ["__version__", "register_env", "register_expert", "register_policy"]
