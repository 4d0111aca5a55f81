"""Continual offline learning with replay: fine-tuning, uniform replay and OER's model-based selection."""

from clonekit.continual.selection import buffer_shares, model_based_order, rollout_starts, uniform_order
from clonekit.continual.sequence import REPLAYS, ContinualConfig, ContinualRun, train_continual

__all__ = [
    "REPLAYS",
    "ContinualConfig",
    "ContinualRun",
    "buffer_shares",
    "model_based_order",
    "rollout_starts",
    "train_continual",
    "uniform_order",
]
