"""Overthinking control at decision time: which thought a thought-cloning agent acts on at each step.

Plain thought cloning acts on the greedily decoded thought of every step, and changes its mind more often
than the expert (see :func:`clonekit.evaluation.thoughts.overthinking`). :class:`ControlledThoughtPolicy`
wraps a trained :class:`~clonekit.policies.thought_cloning.ThoughtCloningPolicy` and chooses the thought per
step by a :class:`ThoughtControl`:

* ``greedy``: the decoded thought, as the policy itself (the default; bit for bit the same actions).
* ``sticky`` (hysteresis): keep the thought acted on at the previous step unless the newly decoded one is
  more likely under the decoder, given the current memory, by more than ``margin`` nats.
* ``rerank``: decode the greedy thought, sample ``candidates`` more and add the previous thought; act on the
  one with the highest ``log p(thought | memory) - penalty * change``, where ``change`` is 0 for the previous
  thought, 1 for a new one and ``revisit`` for a return to the thought before the previous one (A → B → A).
  Keeping the previous thought is always a candidate, so a high ``penalty`` holds thoughts as ``sticky`` does.
* ``patience``: act on the greedy thought unless the thought already changed ``changes`` times within the
  last ``window`` steps; then hold the previous one (deliberation halted until the window clears).
* ``commit``: keep the first word of the episode's first thought as the first word of every later thought,
  the rest decoded after it (a strategy-conditioned agent that names its strategy first, as
  ``maze-strategies``' ``tc_strategy``, then follows the strategy it chose at the start). ``commit:WORD``
  starts every thought with ``WORD`` from the first step on, i.e. asks the agent for that strategy.

The wrapper counts its cost: thought sequences run through the decoder (decoded word by word or scored)
per env step, and wall time of ``act``. :class:`GroupedControlPolicy` plays several settings side by side in
one batch (row groups), each row as the single wrapper would play it, so one rollout compares them all.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from clonekit.config import check
from clonekit.errors import ConfigError
from clonekit.policies.base import Policy
from clonekit.policies.thought_cloning.policy import State, ThoughtCloningPolicy
from clonekit.policies.thought_cloning.tokenizer import EOS, PAD, SPECIAL

MODES = ("greedy", "sticky", "rerank", "patience", "commit")


@dataclass(frozen=True)
class ThoughtControl:
    """How a thought-cloning agent picks the thought it acts on (see the module docstring).

    Args:
        mode: ``greedy`` (the policy's own behaviour), ``sticky``, ``rerank``, ``patience`` or ``commit``.
        margin: ``sticky``: nats by which a new thought's log-probability must beat the held one's.
        candidates: ``rerank``: thoughts sampled from the decoder (K) besides the greedy and the previous one.
        penalty: ``rerank``: λ, nats subtracted per unit of change from the previous thought.
        revisit: ``rerank``: the change of a return to the thought before the previous one (A → B → A), in
            units of a plain change (a plain change is 1).
        changes: ``patience``: thought changes (k) within ``window`` steps after which the thought is held.
        window: ``patience``: the steps (m) over which changes are counted.
        seed: ``rerank``: seed of the sampling generator (reset by ``initial_state``).
        word: ``commit``: the word every thought starts with from the first step ("": the agent's own first
            word of the episode).
    """

    mode: str = "greedy"
    margin: float = 1.0
    candidates: int = 4
    penalty: float = 1.0
    revisit: float = 2.0
    changes: int = 2
    window: int = 4
    seed: int = 0
    word: str = ""

    def __post_init__(self) -> None:
        check(self.mode in MODES, "mode", f"one of {list(MODES)}", self.mode)
        check(self.margin >= 0, "margin", ">= 0", self.margin)
        check(1 <= self.candidates <= 64, "candidates", "in [1, 64]", self.candidates)
        check(self.penalty >= 0, "penalty", ">= 0", self.penalty)
        check(self.revisit >= 1, "revisit", ">= 1 (a return costs at least a plain change)", self.revisit)
        check(1 <= self.window <= 64, "window", "in [1, 64]", self.window)
        check(1 <= self.changes <= self.window, "changes", f"in [1, window={self.window}]", self.changes)
        check(not self.word or self.mode == "commit", "word", "only with mode 'commit'", self.word)
        check(len(self.word.split()) <= 1 and self.word == self.word.strip(), "word", "one word", self.word)

    @property
    def spec(self) -> str:
        """The short form :func:`parse_thought_control` reads, e.g. ``"rerank:4:0.5"``."""
        if self.mode == "sticky":
            return f"sticky:{self.margin:g}"
        if self.mode == "rerank":
            return f"rerank:{self.candidates}:{self.penalty:g}"
        if self.mode == "patience":
            return f"patience:{self.changes}:{self.window}"
        if self.mode == "commit":
            return f"commit:{self.word}" if self.word else "commit"
        return "greedy"


SPEC_FORMS = "greedy, sticky[:MARGIN], rerank[:K[:LAMBDA]], patience[:K[:M]] or commit[:WORD]"


def parse_thought_control(spec: str) -> ThoughtControl:
    """``greedy``, ``sticky:MARGIN``, ``rerank:K[:LAMBDA]``, ``patience:K[:M]`` or ``commit[:WORD]`` (omitted
    values keep the defaults of :class:`ThoughtControl`); anything else is a :class:`ConfigError` naming the
    spec."""
    mode, *values = spec.strip().split(":")
    fields = {
        "greedy": (),
        "sticky": ("margin",),
        "rerank": ("candidates", "penalty"),
        "patience": ("changes", "window"),
        "commit": ("word",),
    }
    if mode not in fields or len(values) > len(fields[mode]):
        raise ConfigError(f"--thought-control: expected {SPEC_FORMS}, got {spec!r}")
    kwargs: dict[str, Any] = {"mode": mode}
    for name, text in zip(fields[mode], values, strict=False):
        if name == "word":
            kwargs[name] = text
            continue
        integer = name in ("candidates", "changes", "window")
        try:
            kwargs[name] = int(text) if integer else float(text)
        except ValueError:
            kind = "an integer" if integer else "a number"
            raise ConfigError(f"--thought-control {spec!r}: {name} must be {kind}, got {text!r}") from None
    try:
        return ThoughtControl(**kwargs)
    except ConfigError as err:
        raise ConfigError(f"--thought-control {spec!r}: {err}") from None


# The wrapper's state: the policy's state (its last element is the thought acted on at the previous step), the
# thought acted on the step before that (B, L), and per env whether the thought changed at each of the last
# ``window`` steps (B, window), newest last.
ControlState = tuple[State, Tensor, Tensor]


class ControlledThoughtPolicy(Policy):
    """A thought-cloning policy whose thought per step is chosen by a :class:`ThoughtControl`.

    ``act``, ``initial_state`` and ``thoughts`` as the wrapped policy's (so rollouts, thought accuracy and
    halting work unchanged). Cost counters: ``env_steps`` (rows of ``act`` calls), ``decoder_sequences``
    (thoughts decoded or scored, summed over rows) and ``act_seconds``; :meth:`cost` reads them per step.
    """

    name: ClassVar[str] = "thought_cloning_controlled"

    def __init__(self, policy: Policy, control: ThoughtControl | None = None) -> None:
        """``policy``: a trained ``thought_cloning`` policy (anything else is a :class:`ConfigError`)."""
        super().__init__()
        if not isinstance(policy, ThoughtCloningPolicy) or not policy.config.use_thoughts:
            raise ConfigError(
                f"thought control: expected a thought_cloning policy (one that generates thoughts), "
                f"got {getattr(policy, 'name', type(policy).__name__)!r}"
            )
        self.policy = policy
        self.config = policy.config
        self.control = control or ThoughtControl()
        self.word_id = _word_id(policy, self.control)
        self.generator = torch.Generator()
        self.reset_cost()

    @property
    def deterministic(self) -> bool:
        """Only ``rerank`` samples."""
        return self.control.mode != "rerank"

    def reset_cost(self) -> None:
        """Zero the cost counters."""
        self.env_steps = 0
        self.decoder_sequences = 0
        self.act_seconds = 0.0

    def cost(self) -> dict[str, float]:
        """``decoder_sequences_per_step`` and ``ms_per_step`` (wall time of ``act`` per env step) so far."""
        steps = max(self.env_steps, 1)
        return {
            "decoder_sequences_per_step": self.decoder_sequences / steps,
            "ms_per_step": 1000.0 * self.act_seconds / steps,
        }

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> ControlState:
        """The policy's initial state, no thought before it, no changes; resets the sampling generator."""
        inner = self.policy.initial_state(batch_size, device)
        if self.generator.device != inner[4].device:
            self.generator = torch.Generator(inner[4].device)
        self.generator.manual_seed(self.control.seed)
        changed = torch.zeros(batch_size, self.control.window, dtype=torch.bool, device=inner[4].device)
        return (inner, inner[4].clone(), changed)

    def act(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, ControlState]:
        """Greedy actions ``(B,)`` acting on the controlled thought; the state holds that thought."""
        start = time.perf_counter()
        x = obs["obs"]
        if state is None:
            state = self.initial_state(x.shape[0], x.device)
        inner, before, changed = state
        previous = inner[4]
        features, upper = self.policy.think(x, inner)
        greedy = self.policy.generate_thought(upper[0])
        thought, sequences = choose_thought(
            self.policy, self.control, upper[0], greedy, previous, before, changed, self.generator, self.word_id
        )
        logits, inner = self.policy.act_on_thought(features, upper, thought, inner)
        b = x.shape[0]
        self.env_steps += b
        self.decoder_sequences += sequences * b
        self.act_seconds += time.perf_counter() - start
        return logits.argmax(-1), (inner, previous, _shift_changes(changed, previous, thought))

    def candidates(self, upper_h: Tensor, greedy: Tensor, previous: Tensor) -> Tensor:
        """``rerank``'s candidates ``(B, K + 2, L)``: the greedy thought, ``K`` thoughts sampled from the decoder
        (with the wrapper's generator) from memory ``upper_h`` ``(B, H)``, and the previous thought."""
        return rerank_candidates(self.policy, self.control.candidates, upper_h, greedy, previous, self.generator)

    def thoughts(self, state: ControlState) -> list[str]:
        """The thought each env acted on in the ``act`` call that returned ``state``."""
        return self.policy.thoughts(state[0])


class GroupedControlPolicy(Policy):
    """Several :class:`ThoughtControl` settings in one batch, so that one rollout evaluates them all.

    The batch is consecutive row groups, one per ``(control, rows)`` of ``groups``; group ``g``'s rows act under
    its control. The encoder, the thinker, the greedy decoding and the actor run once per env step for every
    row (on a CPU, one call for many rows costs little more than one for few), and only a control's own extra
    decoding runs per group. Each row acts as it would in a :class:`ControlledThoughtPolicy` with its group's
    control over that group's rows alone, up to float rounding of the batched matrix products: each group
    samples with its own generator, seeded as that wrapper's, from tensors of the same shape, so ``rerank``
    draws the same samples.

    Cost per group (:meth:`cost`): decoder sequences per row and step as :class:`ControlledThoughtPolicy`
    counts them; ``ms_per_step`` is the group's own decoding time plus its share (by rows) of the shared work.
    """

    name: ClassVar[str] = "thought_cloning_grouped_control"

    def __init__(self, policy: Policy, groups: Sequence[tuple[ThoughtControl, int]]) -> None:
        """``policy``: a trained ``thought_cloning`` policy; ``groups``: ``(control, rows)`` in batch order."""
        super().__init__()
        check(len(groups) >= 1, "groups", "at least one (control, rows) group", list(groups))
        self.members = [ControlledThoughtPolicy(policy, control) for control, _ in groups]
        self.policy = self.members[0].policy
        self.config = self.policy.config
        check(all(rows >= 1 for _, rows in groups), "groups", "rows >= 1 per group", [r for _, r in groups])
        ends = np.cumsum([rows for _, rows in groups]).tolist()
        self.slices = [slice(end - rows, end) for (_, rows), end in zip(groups, ends, strict=True)]
        self.rows = int(ends[-1])
        self.window = max(control.window for control, _ in groups)

    @property
    def deterministic(self) -> bool:
        """Deterministic unless a group reranks (samples)."""
        return all(member.deterministic for member in self.members)

    def reset_cost(self) -> None:
        """Zero every group's cost counters."""
        for member in self.members:
            member.reset_cost()

    def cost(self) -> list[dict[str, float]]:
        """Per group, as :meth:`ControlledThoughtPolicy.cost`."""
        return [member.cost() for member in self.members]

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> ControlState:
        """The policy's initial state for all ``batch_size`` rows (the groups' rows together); resets every
        group's sampling generator."""
        if batch_size != self.rows:
            raise ConfigError(
                f"grouped thought control: expected a batch of {self.rows} rows (the groups'), got {batch_size}"
            )
        inner = self.policy.initial_state(batch_size, device)
        for member in self.members:
            member.initial_state(1, inner[4].device)  # reseeds the member's generator
        changed = torch.zeros(batch_size, self.window, dtype=torch.bool, device=inner[4].device)
        return (inner, inner[4].clone(), changed)

    def act(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, ControlState]:
        """Greedy actions ``(B,)``, each group's rows acting on the thought its control chose."""
        start = time.perf_counter()
        x = obs["obs"]
        if state is None:
            state = self.initial_state(x.shape[0], x.device)
        inner, before, changed = state
        previous = inner[4]
        features, upper = self.policy.think(x, inner)
        greedy = self.policy.generate_thought(upper[0])
        chosen, own = [], 0.0
        for member, rows in zip(self.members, self.slices, strict=True):
            began = time.perf_counter()
            thought, sequences = choose_thought(
                self.policy,
                member.control,
                upper[0][rows],
                greedy[rows],
                previous[rows],
                before[rows],
                changed[rows, -member.control.window :],
                member.generator,
                member.word_id,
            )
            chosen.append(thought)
            spent = time.perf_counter() - began
            own += spent
            b = rows.stop - rows.start
            member.env_steps += b
            member.decoder_sequences += sequences * b
            member.act_seconds += spent
        thought = torch.cat(chosen)
        logits, inner = self.policy.act_on_thought(features, upper, thought, inner)
        shared = time.perf_counter() - start - own
        for member, rows in zip(self.members, self.slices, strict=True):
            member.act_seconds += shared * (rows.stop - rows.start) / self.rows
        return logits.argmax(-1), (inner, previous, _shift_changes(changed, previous, thought))

    def thoughts(self, state: ControlState) -> list[str]:
        """The thought each row acted on in the ``act`` call that returned ``state``."""
        return self.policy.thoughts(state[0])


def choose_thought(
    policy: ThoughtCloningPolicy,
    control: ThoughtControl,
    upper_h: Tensor,
    greedy: Tensor,
    previous: Tensor,
    before: Tensor,
    changed: Tensor,
    generator: torch.Generator,
    word_id: int = -1,
) -> tuple[Tensor, int]:
    """The thought ``(B, L)`` to act on under ``control``, and the thought sequences per row it ran through the
    decoder (the greedy decoding included). ``upper_h`` ``(B, H)``: the thinker's memory; ``greedy``: its
    greedy thought; ``previous`` and ``before``: the thoughts acted on one and two steps ago; ``changed``
    ``(B, control.window)``: whether the thought changed at each of the last steps, newest last; ``word_id``:
    ``commit``'s word (-1: none given, the agent's own first word)."""
    b = greedy.shape[0]
    if control.mode == "greedy":
        return greedy, 1
    if control.mode == "commit":
        # Every thought after the first starts with the previous one's first word, so the first thought's
        # first word is held all episode (a previous thought that began with no word holds nothing).
        own = previous[:, 0]
        first = torch.where(_has_thought(previous) & (own >= SPECIAL), own, torch.full_like(own, word_id))
        if not bool((first >= 0).any()):
            return greedy, 1
        return policy.generate_thought(upper_h, first=first), 2
    if control.mode == "sticky":
        scores = thought_log_prob(policy, upper_h.repeat(2, 1), torch.cat([greedy, previous]))
        keep = _has_thought(previous) & (scores[:b] <= scores[b:] + control.margin)
        return torch.where(keep[:, None], previous, greedy), 3
    if control.mode == "rerank":
        candidates = rerank_candidates(policy, control.candidates, upper_h, greedy, previous, generator)
        n = candidates.shape[1]
        flat = candidates.reshape(b * n, -1)
        scores = thought_log_prob(policy, upper_h.repeat_interleave(n, 0), flat).reshape(b, n)
        scores = scores - control.penalty * _change(control, candidates, previous, before)
        scores[:, -1] = torch.where(_has_thought(previous), scores[:, -1], -torch.inf)  # no previous thought yet
        best = scores.argmax(1)  # the first of equals: the greedy thought wins ties
        # sampled, then every candidate scored
        return candidates[torch.arange(b, device=greedy.device), best], 1 + control.candidates + n
    held = changed.sum(1) >= control.changes  # patience
    keep = _has_thought(previous) & held
    return torch.where(keep[:, None], previous, greedy), 1


def rerank_candidates(
    policy: ThoughtCloningPolicy,
    k: int,
    upper_h: Tensor,
    greedy: Tensor,
    previous: Tensor,
    generator: torch.Generator,
) -> Tensor:
    """``rerank``'s candidates ``(B, k + 2, L)``: the greedy thought, ``k`` thoughts sampled from the decoder
    (with ``generator``) from memory ``upper_h`` ``(B, H)``, and the previous thought."""
    b = greedy.shape[0]
    sampled = policy.generate_thought(upper_h.repeat_interleave(k, 0), generator).reshape(b, k, -1)
    return torch.cat([greedy[:, None], sampled, previous[:, None]], 1)


def _change(control: ThoughtControl, candidates: Tensor, previous: Tensor, before: Tensor) -> Tensor:
    """``(B, K)`` change of each candidate ``(B, K, L)``: 0 for ``previous``, ``revisit`` for ``before``
    (A → B → A), else 1; 0 for every candidate while there is no previous thought."""
    same = (candidates == previous[:, None]).all(2)
    back = (candidates == before[:, None]).all(2) & _has_thought(before)[:, None]
    change = torch.where(back, control.revisit, 1.0) * ~same
    return change * _has_thought(previous)[:, None]


def _shift_changes(changed: Tensor, previous: Tensor, thought: Tensor) -> Tensor:
    """``changed`` ``(B, W)`` moved on one step: whether ``thought`` differs from ``previous`` appended."""
    now_changed = _has_thought(previous) & (thought != previous).any(1)
    return torch.cat([changed[:, 1:], now_changed[:, None]], 1)


def thought_log_prob(policy: ThoughtCloningPolicy, upper_h: Tensor, ids: Tensor) -> Tensor:
    """``(B,)`` log-probability of thoughts ``ids`` ``(B, L)`` (as ``generate_thought`` returns them) under the
    policy's decoder from the thinker's memory ``upper_h`` ``(B, H)``, with the decoding's constraints (no
    padding word; the last position can only end the thought). One teacher-forced decoder pass."""
    logits = policy._decode_teacher_forced(upper_h, ids)  # (B, L, V)
    logits[..., PAD] = -torch.inf
    last = ids.shape[1] - 1
    logits[:, last, SPECIAL - 1 :] = -torch.inf
    logits[:, last, EOS] = 0.0
    log_p = F.log_softmax(logits, -1).gather(2, ids[..., None])[..., 0]
    return torch.where(ids != PAD, log_p, 0.0).sum(1)


def _word_id(policy: ThoughtCloningPolicy, control: ThoughtControl) -> int:
    """The id of ``control.word`` in the policy's thought vocabulary (-1 without a word); a word the vocabulary
    lacks is a :class:`ConfigError` listing the first words it has."""
    if not control.word:
        return -1
    ids = policy.tokenizer.encode(control.word)
    if int(ids[0]) < SPECIAL:
        known = ", ".join(policy.tokenizer.words[:12])
        raise ConfigError(
            f"--thought-control {control.spec!r}: {control.word!r} is not a word of the policy's thoughts "
            f"(its vocabulary, most frequent first: {known}{', ...' if len(policy.tokenizer.words) > 12 else ''})"
        )
    return int(ids[0])


def _has_thought(ids: Tensor) -> Tensor:
    """``(B,)`` true where ``ids`` ``(B, L)`` is a thought (not the empty one of the initial state)."""
    return ids[:, 0] != PAD


__all__ = [
    "MODES",
    "ControlledThoughtPolicy",
    "GroupedControlPolicy",
    "ThoughtControl",
    "choose_thought",
    "parse_thought_control",
    "rerank_candidates",
    "thought_log_prob",
]
