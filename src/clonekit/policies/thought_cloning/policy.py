"""Thought Cloning on BabyAI (and on grid observations such as the maze's): generate the expert's thought as
text, then act on it.

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

from typing import Any, ClassVar, cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from clonekit.data import Dataset
from clonekit.envs.babyai import MISSION_LEN, MISSION_WORDS, NUM_COLORS, NUM_OBJECT_TYPES, NUM_STATES, VIEW, VIEW_SIZE
from clonekit.policies.base import Policy
from clonekit.policies.thought_cloning.config import RecurrentBCConfig, ThoughtCloningConfig
from clonekit.policies.thought_cloning.grid_encoder import GridEncoder
from clonekit.policies.thought_cloning.tokenizer import EOS, PAD, SPECIAL, ThoughtTokenizer, build_vocab

State = tuple[Tensor, Tensor, Tensor, Tensor, Tensor]
CELL_CODES = NUM_OBJECT_TYPES + NUM_COLORS + NUM_STATES  # one multi-hot channel per cell type, color, state


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
        # The first convolution over the embedded cells (type + color + state embeddings, summed) is the same
        # linear map as a convolution over the cells' multi-hot codes with the embeddings folded into its
        # weights: fewer input channels, and no gradient to compute for its input, which halves the encoder's
        # training time. Same result up to float rounding.
        codes = torch.stack(
            [
                view[..., 0].clamp(0, NUM_OBJECT_TYPES - 1),
                view[..., 1].clamp(0, NUM_COLORS - 1) + NUM_OBJECT_TYPES,
                view[..., 2].clamp(0, NUM_STATES - 1) + NUM_OBJECT_TYPES + NUM_COLORS,
            ],
            -1,
        )
        table = torch.cat([self.cell_type.weight, self.cell_color.weight, self.cell_state.weight])  # (CODES, E)
        multi_hot = torch.zeros((*view.shape[:3], CELL_CODES), dtype=table.dtype, device=obs.device)
        multi_hot.scatter_(3, codes, 1.0)
        first = cast(nn.Conv2d, self.conv[0])
        weight = torch.einsum("oekl,ce->ockl", first.weight, table)  # (32, CODES, 3, 3)
        cells = F.conv2d(multi_hot.permute(0, 3, 1, 2).contiguous(), weight, first.bias, padding=first.padding)
        image = self.conv[1:](cells).flatten(1)
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
        # The observation shape picks the encoder: BabyAI's vector, or a grid (C, H, W) such as the maze's.
        self.encoder: nn.Module = (
            BabyAIEncoder(e, h) if len(config.obs_shape) == 1 else GridEncoder(tuple(config.obs_shape), h)
        )
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
        if actions.dim() == 1:  # one step per sample (window 1)
            obs, actions = obs[:, None], actions[:, None]
        b = actions.shape[0]
        done = (batch["terminated"] | batch["truncated"]).reshape(b, -1)
        # Steps after the episode's last step repeat it (window padding). They are never computed: the LSTMs
        # run up to the longest episode of the batch only, and everything per step (the encoder, the thought
        # decoder, the action head, the losses) runs on the N real steps alone. Most of a window is padding
        # (BabyAI demonstrations are ~11 steps, windows 32), so this is most of the work saved; padding only
        # ever fed later padded steps, so the result is the same up to float rounding.
        valid = (torch.cumsum(done.long(), 1) - done.long()) == 0
        k = int(valid.sum(1).max())
        valid = valid[:, :k]
        rows = valid.reshape(-1).nonzero().squeeze(1)  # (N,) real steps in the (B * k) grid
        steps = obs[:, :k].reshape(b * k, -1)[rows]
        actions = actions[:, :k].reshape(-1)[rows]
        features = self.encoder(steps)  # (N, H)
        lower_in = features
        if self.config.use_thoughts:
            thoughts = batch["thought"][:, :k].reshape(b * k, -1)[rows].long()  # (N, L)
            # Positions after every thought's end are padding in every row: cut them (the decoder is causal).
            thoughts = thoughts[:, : int((thoughts != PAD).sum(1).max())]
            upper_out, _ = self.upper(self._on_grid(features, rows, b, k))  # (B, k, H), from a zero memory
            word_logits = self._decode_teacher_forced(upper_out.reshape(b * k, -1)[rows], thoughts)  # (N, L, V)
            word_mask = thoughts != PAD
            nll = F.cross_entropy(word_logits.transpose(1, 2), thoughts, reduction="none")
            predicted = word_logits.argmax(-1)
            lower_in = torch.cat([features, self._thought_features(thoughts)], 1)
        lower_out, _ = self.lower(self._on_grid(lower_in, rows, b, k))
        logits = self.action_head(lower_out.reshape(b * k, -1)[rows])  # (N, A)
        log_p = F.log_softmax(logits, -1)
        action_nll = F.nll_loss(log_p, actions)
        entropy = -(log_p.exp() * log_p).sum(-1).mean()
        loss = action_nll - self.config.entropy_weight * entropy
        scalars = [action_nll.detach(), entropy.detach(), (logits.argmax(-1) == actions).float().mean()]
        names = ["action_nll", "entropy", "action_accuracy"]
        if self.config.use_thoughts:
            words = word_mask.sum().clamp(min=1)
            thought_loss = (nll * word_mask).sum() / words
            loss = loss + self.config.thought_weight * thought_loss
            exact = ((predicted == thoughts) | ~word_mask).all(1)
            scalars += [
                thought_loss.detach(),
                ((predicted == thoughts) & word_mask).sum() / words,
                exact.float().mean(),
            ]
            names += ["thought_nll", "thought_word_accuracy", "thought_accuracy"]
        # One host transfer for every scalar, not one per scalar.
        return loss, dict(zip(names, torch.stack(scalars).tolist(), strict=True))

    @staticmethod
    def _on_grid(values: Tensor, rows: Tensor, b: int, k: int) -> Tensor:
        """``(B, k, F)`` with ``values`` ``(N, F)`` at the real steps ``rows`` and zeros at the padding."""
        grid = values.new_zeros(b * k, values.shape[1])
        return grid.index_copy(0, rows, values).reshape(b, k, -1)

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

    def generate_thought(
        self, upper_h: Tensor, generator: torch.Generator | None = None, first: Tensor | None = None
    ) -> Tensor:
        """Greedy thought ids ``(B, L)`` from the thinker's memory ``(B, H)``; padding after the end id. With
        ``generator``, each word is sampled from the decoder's distribution instead. ``first`` ``(B,)``: a word
        id that starts the thought of each row where it is >= 0 (the rest decoded after it; e.g. a strategy's
        name held through an episode), decoded freely where it is -1."""
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
            if generator is None:
                word = logits.argmax(-1)
            else:
                word = torch.multinomial(F.softmax(logits, -1), 1, generator=generator)[:, 0]
            if i == 0 and first is not None and length > 1:
                word = torch.where(first >= 0, first, word)
            ids.append(torch.where(ended, torch.full_like(word, PAD), word))
            ended = ended | (word == EOS)
        return torch.stack(ids, 1)

    def _step(self, obs: Tensor, state: State) -> tuple[Tensor, State]:
        features, upper = self.think(obs, state)
        thought = self.generate_thought(upper[0]) if self.config.use_thoughts else state[4]
        return self.act_on_thought(features, upper, thought, state)

    def think(self, obs: Tensor, state: State) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """The first half of a step: observation features ``(B, H)`` and the thinker's memory ``(h, c)``
        after ``obs`` (unchanged without thoughts). ``generate_thought(h)`` then decodes the thought."""
        upper_h, upper_c = state[0], state[1]
        features = self.encoder(obs)
        if self.config.use_thoughts:
            _, (upper_h, upper_c) = self.upper(features[:, None], (upper_h[None], upper_c[None]))
            upper_h, upper_c = upper_h[0], upper_c[0]
        return features, (upper_h, upper_c)

    def act_on_thought(
        self, features: Tensor, upper: tuple[Tensor, Tensor], thought: Tensor, state: State
    ) -> tuple[Tensor, State]:
        """The second half of a step: action logits ``(B, A)`` acting on ``thought`` ``(B, L)`` ids (any
        thought, e.g. one chosen by :mod:`~clonekit.policies.thought_cloning.control`), and the new state."""
        lower_h, lower_c = state[2], state[3]
        lower_in = features
        if self.config.use_thoughts:
            lower_in = torch.cat([features, self._thought_features(thought)], 1)
        _, (lower_h, lower_c) = self.lower(lower_in[:, None], (lower_h[None], lower_c[None]))
        lower_h, lower_c = lower_h[0], lower_c[0]
        return self.action_head(lower_h), (upper[0], upper[1], lower_h, lower_c, thought)

    def act(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, State]:
        """Greedy actions ``(B,)`` for ``obs["obs"]`` ``(B, D)``; the new state holds the thought acted on."""
        x = obs["obs"]
        if state is None:
            state = self.initial_state(x.shape[0], x.device)
        logits, state = self._step(x, state)
        return logits.argmax(-1), state

    def action_logits(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, State]:
        """The logits ``(B, A)`` that ``act`` takes the argmax of (acting on the greedily decoded thought), with
        the same new state, so a caller can sample actions (e.g. :mod:`clonekit.quality.improve`)."""
        x = obs["obs"]
        if state is None:
            state = self.initial_state(x.shape[0], x.device)
        return self._step(x, state)

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
