"""Configuration of Thought Cloning (TC) and of its baseline without thoughts (recurrent BC)."""

from __future__ import annotations

from dataclasses import dataclass

from clonekit.config import check
from clonekit.envs.babyai import OBS_SIZE


@dataclass(frozen=True)
class ThoughtCloningConfig:
    """Thought Cloning (Hu & Clune): imitate the expert's thoughts and its actions, act on the thought.

    The upper component (an LSTM over the observation history) generates the thought word by word; the
    lower component (a second LSTM) acts on the observation and the thought. Training uses windows of
    ``window`` consecutive steps (each starting from a zero memory) and teacher forcing: the thought
    decoder reads the expert's previous words and the lower component acts on the expert's thought.
    Every training sample is one episode from its first step (``window`` steps, the rest masked).

    Args:
        obs_shape: ``(OBS_SIZE,)``: BabyAI observations of :mod:`clonekit.envs.babyai` (encoded by
            ``BabyAIEncoder``), or ``(C, H, W)``: grid observations such as the maze's (encoded by
            ``GridEncoder``, a small CNN). Filled in from the data.
        num_actions: Number of discrete actions. Filled in from the data.
        thought_vocab: Thought words (ids from 3 on, see ``tokenizer``). Built from the data's
            ``thought`` stream by ``clonekit train``, so the checkpoint carries it.

        use_thoughts: ``False`` turns this into the baseline: the same observation encoder and lower LSTM,
            trained on actions only (registered as ``recurrent_bc``).
        max_thought_len: Longest thought in words, the end token included; longer thoughts are cut.
        embed_dim: Width of the cell, mission-word and thought-word embeddings.
        hidden_size: Width of the observation features and of both LSTMs.
        window: Steps per training sample, from the episode's start; longer episodes are cut there, so set
            it to about the longest demonstration (``batch_size`` then counts episodes).

        thought_weight: α, weight of the thought NLL in the loss.
        entropy_weight: Weight of the action-entropy bonus subtracted from the loss.
    """

    obs_shape: tuple[int, ...]
    num_actions: int
    thought_vocab: tuple[str, ...] = ()

    use_thoughts: bool = True
    max_thought_len: int = 8
    embed_dim: int = 32
    hidden_size: int = 128
    window: int = 48

    thought_weight: float = 1.0
    entropy_weight: float = 0.01

    def __post_init__(self) -> None:
        shape = tuple(self.obs_shape)
        check(
            shape == (OBS_SIZE,) or (len(shape) == 3 and all(isinstance(n, int) and n >= 1 for n in shape)),
            "obs_shape",
            f"({OBS_SIZE},) (a babyai observation) or (C, H, W) (a grid, e.g. a maze)",
            self.obs_shape,
        )
        check(self.num_actions >= 2, "num_actions", ">= 2", self.num_actions)
        if self.use_thoughts:
            check(len(self.thought_vocab) >= 1, "thought_vocab", "at least 1 word (from a 'thought' stream)", 0)
        check(
            all(isinstance(w, str) and w and not any(c.isspace() for c in w) for w in self.thought_vocab),
            "thought_vocab",
            "non-empty words without spaces",
            self.thought_vocab[:5],
        )
        check(2 <= self.max_thought_len <= 64, "max_thought_len", "in [2, 64]", self.max_thought_len)
        check(1 <= self.embed_dim <= 1024, "embed_dim", "in [1, 1024]", self.embed_dim)
        check(1 <= self.hidden_size <= 4096, "hidden_size", "in [1, 4096]", self.hidden_size)
        check(1 <= self.window <= 512, "window", "in [1, 512]", self.window)
        check(self.thought_weight >= 0, "thought_weight", ">= 0", self.thought_weight)
        check(self.entropy_weight >= 0, "entropy_weight", ">= 0", self.entropy_weight)


@dataclass(frozen=True)
class RecurrentBCConfig(ThoughtCloningConfig):
    """The TC architecture minus thoughts: behaviour cloning with the same encoder and recurrent actor.

    Same fields as :class:`ThoughtCloningConfig`; ``use_thoughts`` must stay ``False``.
    """

    use_thoughts: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check(not self.use_thoughts, "use_thoughts", "False for recurrent_bc", self.use_thoughts)
