"""Scripted experts that act and also emit their reasoning as annotation streams."""

from __future__ import annotations

from typing import Any

from clonekit.errors import unknown_name
from clonekit.experts.arm import ArmReachExpert
from clonekit.experts.avoiding import AvoidingExpert, AvoidingGoalExpert
from clonekit.experts.babyai_bot import BabyAIBotExpert
from clonekit.experts.bfs import BFSExpert
from clonekit.experts.dijkstra import DijkstraExpert
from clonekit.experts.maze_strategies import MazeStrategyExpert, strategy_expert
from clonekit.experts.metaworld import MetaWorldScriptedExpert
from clonekit.experts.outside import Expert, OutsideExpert, is_outside_spec, make_outside_expert
from clonekit.experts.pendulum import PendulumSwingUpExpert
from clonekit.registry import load_plugins

# (env family or "gym:ID", expert name) -> expert class or factory
EXPERTS: dict[tuple[str, str], Any] = {
    ("maze", "bfs"): BFSExpert,
    ("maze", "strategies"): MazeStrategyExpert,  # --expert-kwargs '{"strategy": "dfs"}'
    **{("maze", f"{s}-thoughts"): strategy_expert(s) for s in ("bfs", "dfs", "wall", "greedy", "choose")},
    ("avoiding", "paths"): AvoidingExpert,
    ("avoiding-goal", "paths"): AvoidingGoalExpert,
    ("babyai", "bot"): BabyAIBotExpert,
    ("metaworld", "scripted"): MetaWorldScriptedExpert,
    ("arm", "reach"): ArmReachExpert,
    ("terrain", "dijkstra"): DijkstraExpert,
    ("gym:Pendulum-v1", "swing-up"): PendulumSwingUpExpert,
}


def make_expert(env: str, name: str, **kwargs: Any) -> Expert:
    """A fresh expert ``name`` for env ``env`` (a family name or ``gym:ID``); ``kwargs`` are its options.

    ``name`` is a registered expert of ``env`` (for ``gym:ID``: of that id, else of the family ``gym``), or an
    outside expert spec (``py:module:attr``, an SB3 ``.zip``, an ``.onnx`` file or a clonekit run directory;
    see :mod:`clonekit.experts.outside`). Plugins are loaded first.
    """
    load_plugins()
    for key in ((env, name), (env.partition(":")[0], name)):
        if key in EXPERTS:
            expert: Expert = EXPERTS[key](**kwargs)
            return expert
    if is_outside_spec(name):
        return make_outside_expert(name, **kwargs)
    known = [f"{e}/{n}" for e, n in EXPERTS]
    kind = f"expert for env {env!r} (or an outside expert: py:module:attr, .zip, .onnx, run dir)"
    raise unknown_name(kind, name, known)


__all__ = [
    "EXPERTS",
    "ArmReachExpert",
    "AvoidingExpert",
    "AvoidingGoalExpert",
    "BFSExpert",
    "BabyAIBotExpert",
    "DijkstraExpert",
    "Expert",
    "MazeStrategyExpert",
    "MetaWorldScriptedExpert",
    "OutsideExpert",
    "PendulumSwingUpExpert",
    "make_expert",
]
