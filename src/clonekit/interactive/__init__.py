"""Interactive imitation: simulated interveners, and DAgger, HG-DAgger and Sirius runs that grow a dataset
round by round (see :mod:`clonekit.interactive.loop`)."""

from clonekit.interactive.episodes import RoundPlay, play_round
from clonekit.interactive.interveners import Intervener, IntervenerConfig, MazeIntervener
from clonekit.interactive.loop import (
    METHODS,
    InteractiveConfig,
    InteractiveRun,
    check_method,
    load_round_policy,
    run_interactive,
    train_config_for,
)
from clonekit.interactive.segments import SegmentWeights, segment_classes

__all__ = [
    "METHODS",
    "InteractiveConfig",
    "InteractiveRun",
    "Intervener",
    "IntervenerConfig",
    "MazeIntervener",
    "RoundPlay",
    "SegmentWeights",
    "check_method",
    "load_round_policy",
    "play_round",
    "run_interactive",
    "segment_classes",
    "train_config_for",
]
