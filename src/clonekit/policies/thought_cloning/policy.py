"""Thought Cloning on BabyAI: generate the expert's thought as text, then act on it.

Per step ``t`` of an episode::

    x_t      = encode(view_t, direction_t, mission)                     observation features (H)
    u_t      = LSTM_upper(x_t, u_{t-1})                                  the thinker's memory
    thought  = greedy words of GRU_decoder(init = u_t)                   e.g. "open the red door"
    a_t      ~ softmax(W · LSTM_lower([x_t, bag_of_words(thought)], l_{t-1}))

Training samples whole episodes: windows of ``window`` steps from an episode's first step (steps after
its end masked out; an episode longer than the window is cut), so the memory starts as when acting.
Teacher forcing feeds the expert's thought to the lower LSTM and the expert's previous words to
the decoder. The loss over a window of consecutive steps (padding after an episode's end masked out) is
``action NLL - entropy_weight * action entropy + thought_weight * thought NLL`` (per-word mean).

With ``use_thoughts=False`` (``recurrent_bc``) only the encoder, the lower LSTM and the action head exist.

The recurrent state for ``act`` is a tuple ``(upper_h, upper_c, lower_h, lower_c, thought_ids)`` of tensors
with batch first; ``thought_ids`` ``(B, max_thought_len)`` is the thought the last ``act`` acted on.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from clonekit.data import Dataset
from clonekit.envs.babyai import MISSION_LEN, MISSION_WORDS, NUM_COLORS, NUM_OBJECT_TYPES, NUM_STATES, VIEW, VIEW_SIZE
from clonekit.policies.base import Policy
from clonekit.policies.thought_cloning.config import RecurrentBCConfig, ThoughtCloningConfig
from clonekit.policies.thought_cloning.tokenizer import EOS, PAD, SPECIAL, ThoughtTokenizer, build_vocab

State = tuple[Tensor, Tensor, Tensor, Tensor, Tensor]


class BabyAIEncoder(nn.Module):
    """``(N, OBS_SIZE)`` uint8 observations -> ``(N, H)`` features: a conv over the embedded 7x7 view, the
    direction and the mission (its word embeddings, in order, through one linear layer)."""

    def __init__(self, embed_dim: int, hidden_size: int) -> None:
        super().__init__()
        self.cell_type = nn.Embedding(NUM_OBJECT_TYPES, embed_dim)
        self.cell_color = nn.Embedding(NUM_COLORS, embed_dim)
        self.cell_state = nn.Embedding(NUM_STATES, embed_dim)
        self.conv = nn.Sequential(
            nn.Conv2d(embed_dim, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.direction = nn.Embedding(4, hidden_size)
        self.mission_words = nn.Embedding(len(MISSION_WORDS) + 2, embed_dim, padding_idx=0)
        self.mission = nn.Linear(MISSION_LEN * embed_dim, embed_dim)
        self.mix = nn.Linear(32 * 4 * 4 + embed_dim, hidden_size)

    def forward(self, obs: Tensor) -> Tensor:
        obs = obs.long()
        view = obs[:, :VIEW_SIZE].reshape(-1, VIEW, VIEW, 3)
        cells = (
            self.cell_type(view[..., 0].clamp(0, NUM_OBJECT_TYPES - 1))
            + self.cell_color(view[..., 1].clamp(0, NUM_COLORS - 1))
            + self.cell_state(view[..., 2].clamp(0, NUM_STATES - 1))
        )
        image = self.conv(cells.permute(0, 3, 1, 2)).flatten(1)
        mission = obs[:, VIEW_SIZE + 1 : VIEW_SIZE + 1 + MISSION_LEN].clamp(0, len(MISSION_WORDS) + 1)
        mission_features = F.relu(self.mission(self.mission_words(mission).flatten(1)))
        return F.relu(self.mix(torch.cat([image, mission_features], 1)) + self.direction(obs[:, VIEW_SIZE] % 4))


class ThoughtCloningPolicy(Policy):
    """Thought cloning: generates the expert's thought as text from the history, then acts on it.

    The upper component generates the thought, the lower component acts on it (see the module docstring).
    """

    name: ClassVar[str] = "thought_cloning"
    required_streams: ClassVar[tuple[str, ...]] = ("obs", "action", "terminated", "truncated", "thought")
    windows_from_episode_start: ClassVar[bool] = True

    @property
    def deterministic(self) -> bool:
        """Thoughts are decoded greedily and actions are argmaxes."""
        return True

    @classmethod
    def config_from_data(cls, dataset: Dataset) -> dict[str, Any]:
        """The thought vocabulary, built from the data's ``thought`` stream (kept in the config, so a
        checkpoint carries it)."""
        if "thought" not in cls.required_streams or "thought" not in dataset.streams:
            return {}  # recurrent_bc: the same network without thoughts
        return {"thought_vocab": list(build_vocab(dataset.column("thought")))}

    def __init__(self, config: ThoughtCloningConfig) -> None:
        super().__init__()
        self.config = config
        h, e = config.hidden_size, config.embed_dim
        self.encoder = BabyAIEncoder(e, h)
        self.tokenizer = ThoughtTokenizer(config.thought_vocab, config.max_thought_len)
        thought_features = 0
        if config.use_thoughts:
            v = self.tokenizer.size
            self.upper = nn.LSTM(h, h, batch_first=True)
            self.decoder_init = nn.Linear(h, h)
            self.decoder_words = nn.Embedding(v, e, padding_idx=PAD)
            self.decoder = nn.GRU(e, h, batch_first=True)
            self.decoder_out = nn.Linear(h, v)
            self.thought_words = nn.Embedding(v, e, padding_idx=PAD)
            thought_features = e
        self.lower = nn.LSTM(h + thought_features, h, batch_first=True)
        self.action_head = nn.Linear(h, config.num_actions)

    # -- training ---------------------------------------------------------------------------------------

    def sample_windows(self) -> dict[str, int]:
        k = self.config.window
        return {name: k for name in self.required_streams}

    def encode_text(self, name: str, texts: list[str]) -> np.ndarray:
        """The ``thought`` stream as ``(num_steps, max_thought_len)`` int64 token ids."""
        if name != "thought":
            return super().encode_text(name, texts)
        return self.tokenizer.encode_many(texts)

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """``batch``: ``obs (B, k, D)``, ``action/terminated/truncated (B, k)``, ``thought (B, k, L)`` ids."""
        obs, actions = batch["obs"], batch["action"].long()
        if obs.dim() == 2:  # one step per sample (window 1)
            obs, actions = obs[:, None], actions[:, None]
        b, k = actions.shape
        done = (batch["terminated"] | batch["truncated"]).reshape(b, k)
        # Steps after the episode's last step repeat it (window padding): mask them out.
        valid = (torch.cumsum(done.long(), 1) - done.long()) == 0
        features = self.encoder(obs.reshape(b * k, -1)).reshape(b, k, -1)
        lower_in = features
        if self.config.use_thoughts:
            thoughts = batch["thought"].reshape(b * k, -1).long()
            upper_out, _ = self.upper(features)  # (B, k, H), from a zero memory at the window's start
            word_logits = self._decode_teacher_forced(upper_out.reshape(b * k, -1), thoughts)  # (B*k, L, V)
            word_mask = (thoughts != PAD) & valid.reshape(b * k, 1)
            nll = F.cross_entropy(word_logits.transpose(1, 2), thoughts, reduction="none")
            predicted = word_logits.argmax(-1)
            lower_in = torch.cat([features, self._thought_features(thoughts).reshape(b, k, -1)], 2)
        lower_out, _ = self.lower(lower_in)
        logits_all = self.action_head(lower_out)  # (B, k, A)
        n_valid = valid.sum().clamp(min=1)
        action_nll = (F.cross_entropy(logits_all.transpose(1, 2), actions, reduction="none") * valid).sum() / n_valid
        log_p = F.log_softmax(logits_all, -1)
        entropy = (-(log_p.exp() * log_p).sum(-1) * valid).sum() / n_valid
        loss = action_nll - self.config.entropy_weight * entropy
        info = {
            "action_nll": float(action_nll.detach()),
            "entropy": float(entropy.detach()),
            "action_accuracy": float(((logits_all.argmax(-1) == actions) & valid).sum() / n_valid),
        }
        if self.config.use_thoughts:
            words = word_mask.sum().clamp(min=1)
            thought_loss = (nll * word_mask).sum() / words
            loss = loss + self.config.thought_weight * thought_loss
            exact = ((predicted == thoughts) | (thoughts == PAD)).all(1) & valid.reshape(-1)
            info |= {
                "thought_nll": float(thought_loss.detach()),
                "thought_word_accuracy": float(((predicted == thoughts) & word_mask).sum() / words),
                "thought_accuracy": float(exact.sum() / n_valid),
            }
        return loss, info

    def _decode_teacher_forced(self, upper_h: Tensor, target: Tensor) -> Tensor:
        """Word logits ``(B, L, V)`` for thought ``target`` ``(B, L)``, reading the expert's previous words."""
        hidden = torch.tanh(self.decoder_init(upper_h))[None]
        previous = torch.cat([torch.full_like(target[:, :1], EOS), target[:, :-1]], 1)  # EOS also starts
        outputs, _ = self.decoder(self.decoder_words(previous), hidden)
        return self.decoder_out(outputs)

    def _thought_features(self, ids: Tensor) -> Tensor:
        """Bag of words ``(B, E)`` of thought ids ``(B, L)`` (end and padding ids ignored)."""
        words = (ids >= SPECIAL - 1) & (ids != EOS)  # words and the unknown id
        return (self.thought_words(ids) * words[..., None]).sum(1) / words.sum(1, keepdim=True).clamp(min=1)

    # -- acting -----------------------------------------------------------------------------------------

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        if device is None:
            device = self.action_head.weight.device
        h = self.config.hidden_size
        zeros = torch.zeros(batch_size, h, device=device)
        ids = torch.full((batch_size, self.config.max_thought_len), PAD, dtype=torch.long, device=device)
        return (zeros, zeros.clone(), zeros.clone(), zeros.clone(), ids)

    def generate_thought(self, upper_h: Tensor) -> Tensor:
        """Greedy thought ids ``(B, L)`` from the thinker's memory ``(B, H)``; padding after the end id."""
        b, length = upper_h.shape[0], self.config.max_thought_len
        hidden = torch.tanh(self.decoder_init(upper_h))[None]
        word = torch.full((b,), EOS, dtype=torch.long, device=upper_h.device)
        ended = torch.zeros(b, dtype=torch.bool, device=upper_h.device)
        ids = []
        for i in range(length):
            output, hidden = self.decoder(self.decoder_words(word)[:, None], hidden)
            logits = self.decoder_out(output[:, 0])
            logits[:, PAD] = -torch.inf
            if i == length - 1:
                logits[:, SPECIAL - 1 :] = -torch.inf  # the last position can only end the thought
                logits[:, EOS] = 0.0
            word = logits.argmax(-1)
            ids.append(torch.where(ended, torch.full_like(word, PAD), word))
            ended = ended | (word == EOS)
        return torch.stack(ids, 1)

    def _step(self, obs: Tensor, state: State) -> tuple[Tensor, State]:
        upper_h, upper_c, lower_h, lower_c, thought = state
        features = self.encoder(obs)
        lower_in = features
        if self.config.use_thoughts:
            _, (upper_h, upper_c) = self.upper(features[:, None], (upper_h[None], upper_c[None]))
            upper_h, upper_c = upper_h[0], upper_c[0]
            thought = self.generate_thought(upper_h)
            lower_in = torch.cat([features, self._thought_features(thought)], 1)
        _, (lower_h, lower_c) = self.lower(lower_in[:, None], (lower_h[None], lower_c[None]))
        lower_h, lower_c = lower_h[0], lower_c[0]
        return self.action_head(lower_h), (upper_h, upper_c, lower_h, lower_c, thought)

    def act(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, State]:
        """Greedy actions ``(B,)`` for ``obs["obs"]`` ``(B, D)``; the new state holds the thought acted on."""
        x = obs["obs"]
        if state is None:
            state = self.initial_state(x.shape[0], x.device)
        logits, state = self._step(x, state)
        return logits.argmax(-1), state

    def thoughts(self, state: State) -> list[str]:
        """The thought each env acted on in the ``act`` call that returned ``state`` (``""`` without thoughts)."""
        return [self.tokenizer.decode(row) for row in state[4].cpu().numpy()]

    def explain(self, obs: dict[str, Tensor], state: Any | None = None) -> dict[str, Any] | None:
        """``{"thought": [str] * B, "thought_ids": (B, L)}``: what the agent would think at ``obs`` from
        ``state`` (the state is not advanced). ``None`` for the baseline without thoughts."""
        if not self.config.use_thoughts:
            return None
        x = obs["obs"]
        if state is None:
            state = self.initial_state(x.shape[0], x.device)
        _, new_state = self._step(x, state)
        return {"thought": self.thoughts(new_state), "thought_ids": new_state[4]}


class RecurrentBCPolicy(ThoughtCloningPolicy):
    """Recurrent behaviour cloning: the thought cloning network without the thinker (a recurrent actor)."""

    name: ClassVar[str] = "recurrent_bc"
    required_streams: ClassVar[tuple[str, ...]] = ("obs", "action", "terminated", "truncated")

    def __init__(self, config: RecurrentBCConfig) -> None:
        super().__init__(config)
