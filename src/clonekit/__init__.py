"""clonekit: learning from demonstrations — clone the actions and the reasoning behind them."""

__version__ = "0.1.0"
