"""Interactive imitation: simulated interveners, and DAgger, HG-DAgger, Sirius and RLIF runs that grow a dataset
round by round (see :mod:`clonekit.interactive.loop`); a person as the intervener on the live page in
:mod:`clonekit.interactive.human`."""

from clonekit.interactive.episodes import RoundPlay, play_round
from clonekit.interactive.expert_intervener import ExpertIntervener, ExpertIntervenerConfig
from clonekit.interactive.interveners import Intervener, IntervenerConfig, MazeIntervener
from clonekit.interactive.loop import (
    METHODS,
    InteractiveConfig,
    InteractiveRun,
    RoundPlayer,
    RoundToPlay,
    check_method,
    load_round_policy,
    run_interactive,
    train_config_for,
)
from clonekit.interactive.rlif import CriticConfig, rlif_rewards, rlif_weights
from clonekit.interactive.segments import SegmentWeights, segment_classes

__all__ = [
    "METHODS",
    "CriticConfig",
    "ExpertIntervener",
    "ExpertIntervenerConfig",
    "InteractiveConfig",
    "InteractiveRun",
    "Intervener",
    "IntervenerConfig",
    "MazeIntervener",
    "RoundPlay",
    "RoundPlayer",
    "RoundToPlay",
    "SegmentWeights",
    "check_method",
    "load_round_policy",
    "play_round",
    "rlif_rewards",
    "rlif_weights",
    "run_interactive",
    "segment_classes",
    "train_config_for",
]
