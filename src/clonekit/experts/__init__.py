"""Scripted experts that act and also emit their reasoning as annotation streams."""

from __future__ import annotations

from typing import Any

from clonekit.errors import unknown_name
from clonekit.experts.avoiding import AvoidingExpert, AvoidingGoalExpert
from clonekit.experts.babyai_bot import BabyAIBotExpert
from clonekit.experts.bfs import BFSExpert

# (env family, expert name) -> expert class
EXPERTS: dict[tuple[str, str], type[Any]] = {
    ("maze", "bfs"): BFSExpert,
    ("avoiding", "paths"): AvoidingExpert,
    ("avoiding-goal", "paths"): AvoidingGoalExpert,
    ("babyai", "bot"): BabyAIBotExpert,
}


def make_expert(env: str, name: str, **kwargs: Any) -> Any:
    """A fresh expert ``name`` for env family ``env``; ``kwargs`` are its options (e.g. noise levels)."""
    if (env, name) not in EXPERTS:
        known = [f"{e}/{n}" for e, n in EXPERTS]
        raise unknown_name(f"expert for env {env!r}", name, known)
    return EXPERTS[(env, name)](**kwargs)


__all__ = ["EXPERTS", "AvoidingExpert", "AvoidingGoalExpert", "BFSExpert", "BabyAIBotExpert", "make_expert"]
