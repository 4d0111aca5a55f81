"""Configuration of ``relic``: a transformer actor-critic whose context spans several trials of one task."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from clonekit.config import check, check_transformer


@dataclass(frozen=True)
class RelicConfig:
    """A causal transformer over the whole multi-trial context (ReLIC-lite; see :mod:`clonekit.rl.incontext`).

    Every step is one token: the observation (which carries the previous reward and a new-trial flag) plus the
    previous action. Trial boundaries do not reset the context, so a later trial can attend to what earlier ones
    found. Each attention layer has a learned sink key and value (Sink-KV), so a head can attend to "nothing".

    Args:
        obs_dim: Length of the observation vector (the env's; e.g. ``HiddenGoalSpec.obs_dim``).
        num_actions: Number of discrete actions.
        new_trial_feature: Index in the observation of the flag that is 1 on a trial's first step (``memory``
            ``"trial"`` cuts the context there).
        reward_feature: Index in the observation of the previous step's reward (``memory="trial"`` blanks it, and
            the previous action, on a trial's first step, so nothing of the last trial leaks in).

        d_model: Width of every token.
        num_heads: Attention heads per layer; must divide ``d_model``.
        num_layers: Transformer layers (pre-norm attention + feed-forward).
        feedforward: Width of each layer's feed-forward block.
        dropout: Kept at 0 for RL (PPO's ratio needs the same network when acting and when updating); the field
            exists for ``check_transformer``.
        max_context: Most steps in one context (learned position embeddings); an episode's length at most.

        sink_kv: Learned sink key/value per layer and head (ReLIC's Sink-KV). Off: softmax over real tokens only.
        memory: ``"episode"``: attend to every earlier step of the episode, across trials (in-context learning);
            ``"trial"``: only to steps of the current trial, positions counted from the trial's start and its first
            step without the previous reward and action (the no-memory baseline, same network).
    """

    obs_dim: int
    num_actions: int
    new_trial_feature: int = -1
    reward_feature: int = -2

    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 2
    feedforward: int = 128
    dropout: float = 0.0
    max_context: int = 64

    sink_kv: bool = True
    memory: Literal["episode", "trial"] = "episode"

    def __post_init__(self) -> None:
        check(1 <= self.obs_dim <= 65536, "obs_dim", "in [1, 65536]", self.obs_dim)
        check(2 <= self.num_actions <= 1024, "num_actions", "in [2, 1024]", self.num_actions)
        check(
            -self.obs_dim <= self.new_trial_feature < self.obs_dim,
            "new_trial_feature",
            f"an index into the observation (in [-{self.obs_dim}, {self.obs_dim}))",
            self.new_trial_feature,
        )
        check(
            -self.obs_dim <= self.reward_feature < self.obs_dim,
            "reward_feature",
            f"an index into the observation (in [-{self.obs_dim}, {self.obs_dim}))",
            self.reward_feature,
        )
        check_transformer(self, "d_model")
        check(self.dropout == 0, "dropout", "0 (PPO acts and updates with the same network)", self.dropout)
        check(1 <= self.max_context <= 65536, "max_context", "in [1, 65536]", self.max_context)
        check(self.memory in ("episode", "trial"), "memory", "'episode' or 'trial'", self.memory)
