"""Policies, one folder each (``config.py`` + ``policy.py``), and the one registry of them by name."""

from __future__ import annotations

from typing import Any

from clonekit.config import config_from_json
from clonekit.errors import unknown_name
from clonekit.policies.base import Policy
from clonekit.policies.bc import BCConfig, BCPolicy
from clonekit.policies.continuous_bc import ContinuousBCConfig, ContinuousBCPolicy
from clonekit.policies.decision_transformer import DecisionTransformerConfig, DecisionTransformerPolicy
from clonekit.policies.dynamics import DynamicsConfig, ForwardDynamicsModel
from clonekit.policies.goal_bc import GoalBCConfig, GoalBCPolicy
from clonekit.policies.hilp import HILPConfig, HILPPolicy
from clonekit.policies.idm import IDMConfig, InverseDynamicsModel
from clonekit.policies.iql import IQLConfig, IQLPolicy
from clonekit.policies.play_lmp import PlayLMPConfig, PlayLMPPolicy
from clonekit.policies.procedure_cloning import ProcedureCloningConfig, ProcedureCloningPolicy
from clonekit.policies.recoil import RecoilConfig, RecoilPolicy
from clonekit.policies.relic import RelicConfig, RelicPolicy
from clonekit.policies.residual import ResidualConfig, ResidualPolicy
from clonekit.policies.style_bc import StyleBCConfig, StyleBCPolicy
from clonekit.policies.td3bc import TD3BCConfig, TD3BCPolicy
from clonekit.policies.thought_cloning import (
    RecurrentBCConfig,
    RecurrentBCPolicy,
    ThoughtCloningConfig,
    ThoughtCloningPolicy,
)
from clonekit.policies.transformer_bc import (
    TransformerBCConfig,
    TransformerBCPolicy,
    TransformerGoalBCConfig,
    TransformerGoalBCPolicy,
)
from clonekit.policies.weighted_procedure_cloning import (
    WeightedProcedureCloningConfig,
    WeightedProcedureCloningPolicy,
)
from clonekit.registry import load_plugins

# name -> (config class, policy class)
POLICIES: dict[str, tuple[type[Any], type[Policy]]] = {
    "bc": (BCConfig, BCPolicy),
    "continuous_bc": (ContinuousBCConfig, ContinuousBCPolicy),
    "dt": (DecisionTransformerConfig, DecisionTransformerPolicy),
    "goal_bc": (GoalBCConfig, GoalBCPolicy),
    "hilp": (HILPConfig, HILPPolicy),  # trains its Hilbert representation (clonekit.pretrain.hilp) too
    "iql": (IQLConfig, IQLPolicy),
    "play_lmp": (PlayLMPConfig, PlayLMPPolicy),
    "procedure_cloning": (ProcedureCloningConfig, ProcedureCloningPolicy),
    "recoil": (RecoilConfig, RecoilPolicy),
    "recurrent_bc": (RecurrentBCConfig, RecurrentBCPolicy),
    "relic": (RelicConfig, RelicPolicy),  # trained by PPO over multi-trial episodes (clonekit.rl.incontext)
    "residual": (ResidualConfig, ResidualPolicy),  # trained by PPO on a base run (clonekit.rl.residual)
    "style_bc": (StyleBCConfig, StyleBCPolicy),
    "td3bc": (TD3BCConfig, TD3BCPolicy),
    "thought_cloning": (ThoughtCloningConfig, ThoughtCloningPolicy),
    "transformer_bc": (TransformerBCConfig, TransformerBCPolicy),
    "transformer_goal_bc": (TransformerGoalBCConfig, TransformerGoalBCPolicy),
    "weighted_procedure_cloning": (WeightedProcedureCloningConfig, WeightedProcedureCloningPolicy),
}


# name -> (config class, model class) of models the training loop trains like policies (same checkpoints and
# resume) that do not act: an inverse dynamics model labels data; a forward one predicts o_t+1. Kept out of
# POLICIES, so what rolls out, exports or is listed as a policy never includes them; `clonekit train NAME` and
# `load_policy` find them here.
MODELS: dict[str, tuple[type[Any], type[Policy]]] = {
    "idm": (IDMConfig, InverseDynamicsModel),
    "dynamics": (DynamicsConfig, ForwardDynamicsModel),
}


def policy_classes(name: str) -> tuple[type[Any], type[Policy]]:
    """``(config class, policy class)`` registered as ``name`` in ``POLICIES`` or, failing that, ``MODELS``
    (plugins are loaded first)."""
    load_plugins()
    if isinstance(name, str) and name not in POLICIES and name in MODELS:
        return MODELS[name]
    if not isinstance(name, str) or name not in POLICIES:
        raise unknown_name("policy", name, {**POLICIES, **MODELS})
    return POLICIES[name]


def build_policy(name: str, config: dict[str, Any], where: str | None = None) -> Policy:
    """Build policy ``name`` from a JSON-like config dict (validated; errors start with ``where``, by default
    ``policy 'NAME'``)."""
    config_cls, policy_cls = policy_classes(name)
    return policy_cls(config_from_json(config_cls, config, where or f"policy {name!r}"))


__all__ = ["MODELS", "POLICIES", "Policy", "build_policy", "policy_classes"]
