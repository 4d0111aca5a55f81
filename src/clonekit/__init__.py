"""clonekit: learning from demonstrations — clone the actions and the reasoning behind them."""

__version__ = "0.1.0"

from clonekit.gymnasium_ids import register_gymnasium_ids
from clonekit.registry import register_env, register_expert, register_policy

register_gymnasium_ids()  # gymnasium.make("clonekit/Maze-v0") after `import clonekit`; cheap (no env module imported)

__all__ = ["__version__", "register_env", "register_expert", "register_policy"]
