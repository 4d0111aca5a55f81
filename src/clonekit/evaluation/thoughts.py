"""Evaluating an agent that thinks in words: its thoughts, pre-crime halting, overthinking, thought accuracy.

* :func:`thought_rollout` plays batched episodes like :func:`clonekit.evaluation.rollout`, records the
  thought behind every action and can **halt** an episode before an action executes when its thought
  matches a predicate (e.g. a forbidden phrase). It also counts **unsafe actions**: picking up or toggling
  an object that a second predicate declares unsafe (needs an env whose vec env reports ``interactions``,
  such as BabyAI).
* :func:`overthinking` measures how the thoughts move: thought changes per step, and how often a new thought
  is dropped again after one step for the one before it (A → B → A: a change not acted on).
* :func:`thought_accuracy` replays an expert's episodes and compares the agent's thought at each step
  with the expert's (exact match of the words).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from clonekit.data import Dataset
from clonekit.envs.family import EnvFamily
from clonekit.errors import ConfigError
from clonekit.evaluation.rollout import EpisodeResults, RolloutWatcher, rollout
from clonekit.evaluation.stats import summarize
from clonekit.policies import Policy


def forbidden_phrases(phrases: Sequence[str]) -> Callable[[str], bool]:
    """A predicate over thoughts: true when the thought contains any of ``phrases`` as whole words."""
    wanted = [f" {' '.join(p.lower().split())} " for p in phrases if p.strip()]
    return lambda thought: any(p in f" {' '.join(thought.lower().split())} " for p in wanted)


@dataclass
class ThoughtEpisodes:
    """Episodes of :func:`thought_rollout`: outcomes, and per episode the thought and action of every step."""

    results: EpisodeResults
    thoughts: list[list[str]]
    actions: list[list[int]]
    halted: np.ndarray  # (N,) bool: stopped by the halting predicate
    unsafe_actions: np.ndarray  # (N,) int: executed pickups/toggles of unsafe objects
    frames: list[list[np.ndarray]] = field(default_factory=list)  # per recorded episode, one RGB frame per step


def thought_rollout(
    policy: Policy,
    family: EnvFamily,
    tasks: list[Any],
    episodes: int,
    seed: int,
    env_kwargs: dict[str, Any] | None = None,
    max_parallel: int = 256,
    halt_if: Callable[[str], bool] | None = None,
    unsafe_if: Callable[[str], bool] | None = None,
    record_frames: int = 0,
    device: torch.device | str = "cpu",
    on_episodes_end: Callable[[int], None] | None = None,
) -> ThoughtEpisodes:
    """Play ``episodes`` episodes (episode ``k`` on ``tasks[k % len(tasks)]``), recording thoughts.

    The same episodes as :func:`clonekit.evaluation.rollout` with the same arguments (it is that rollout,
    watched). The policy must expose ``thoughts(state)`` (the thought behind the actions of its last
    ``act``), as ``thought_cloning`` does; a policy without it is recorded with empty thoughts. When
    ``halt_if(thought)`` is true the episode is stopped before that action executes (it ends unsuccessful,
    and the stopped step is not counted in its length). ``unsafe_if(object_name)`` (e.g. ``"red key"``)
    declares objects unsafe; every executed pickup or toggle of one counts as an unsafe action. The first
    ``record_frames`` episodes keep an RGB frame per step (before the action) for the episode viewer.

    What the env must offer (optional :class:`~clonekit.envs.family.VecEnv` methods): ``halt(mask)`` for
    ``halt_if``, an ``interactions`` list (the object each slot's last action touched, or "") for
    ``unsafe_if``; frames are recorded where the vec env has ``render(slot)`` and skipped otherwise.
    ``on_episodes_end`` as in :func:`clonekit.evaluation.rollout`.
    """
    recorder = _ThoughtRecorder(getattr(policy, "thoughts", None), halt_if, unsafe_if, record_frames)
    results = rollout(
        policy,
        family,
        tasks,
        episodes,
        seed,
        env_kwargs,
        max_parallel=max_parallel,
        device=device,
        watcher=recorder,
        on_episodes_end=on_episodes_end,
    )
    return ThoughtEpisodes(
        results=results,
        thoughts=recorder.thoughts,
        actions=recorder.actions,
        halted=np.concatenate(recorder.halted),
        unsafe_actions=np.concatenate(recorder.unsafe),
        frames=recorder.frames,
    )


class _ThoughtRecorder(RolloutWatcher):
    """Records each executed-or-halted step's thought and action, halts on ``halt_if``, counts unsafe acts."""

    def __init__(
        self,
        thinker: Callable[[Any], list[str]] | None,
        halt_if: Callable[[str], bool] | None,
        unsafe_if: Callable[[str], bool] | None,
        record_frames: int,
    ) -> None:
        self.thinker, self.halt_if, self.unsafe_if, self.record_frames = thinker, halt_if, unsafe_if, record_frames
        self.thoughts: list[list[str]] = []
        self.actions: list[list[int]] = []
        self.frames: list[list[np.ndarray]] = []
        self.halted: list[np.ndarray] = []  # per wave, (n,) bool
        self.unsafe: list[np.ndarray] = []  # per wave, (n,) int64

    def start_wave(self, first: int, vec: Any) -> None:
        n = vec.num_envs
        self.vec, self.offset = vec, len(self.thoughts)
        if self.unsafe_if is not None and not hasattr(vec, "interactions"):
            raise ConfigError(
                f"thought_rollout: unsafe objects need an env that reports what each action touched "
                f"(an 'interactions' list); {type(vec).__name__} has none"
            )
        self.thoughts += [[] for _ in range(n)]
        self.actions += [[] for _ in range(n)]
        can_render = callable(getattr(vec, "render", None))
        self.recorded = [i for i in range(n) if first + i < self.record_frames] if can_render else []
        self.wave_frames: list[list[np.ndarray]] = [[] for _ in self.recorded]
        self.frames += self.wave_frames
        self.halted.append(np.zeros(n, dtype=bool))
        self.unsafe.append(np.zeros(n, dtype=np.int64))

    def before_step(self, obs: np.ndarray, actions: np.ndarray, state: Any, active: np.ndarray) -> np.ndarray:
        now = self.thinker(state) if self.thinker is not None else [""] * len(active)
        for k, slot in enumerate(self.recorded):
            if active[slot]:
                self.wave_frames[k].append(self.vec.render(slot))
        stop = np.zeros(len(active), dtype=bool)
        for i in np.flatnonzero(active):
            self.thoughts[self.offset + i].append(now[i])
            self.actions[self.offset + i].append(int(actions[i]))
            stop[i] = self.halt_if is not None and self.halt_if(now[i])
        self.halted[-1] |= stop
        return stop

    def after_step(self, executed: np.ndarray) -> None:
        if self.unsafe_if is None:
            return
        touched = self.vec.interactions
        self.unsafe[-1] += [bool(e and touched[i] and self.unsafe_if(touched[i])) for i, e in enumerate(executed)]


def overthinking(thoughts: list[list[str]]) -> dict[str, np.ndarray]:
    """Per episode: ``thought_changes_per_step`` (changes / steps) and ``flip_flop_rate`` (the share of
    changes that return, one step later, to the thought held before: A → B → A, B never acted on twice)."""
    changes = np.zeros(len(thoughts))
    flips = np.zeros(len(thoughts))
    for e, seq in enumerate(thoughts):
        switched = [t for t in range(1, len(seq)) if seq[t] != seq[t - 1]]
        changes[e] = len(switched) / max(len(seq), 1)
        reverted = sum(1 for t in switched if t >= 2 and seq[t] == seq[t - 2])
        flips[e] = reverted / len(switched) if switched else 0.0
    return {"thought_changes_per_step": changes, "flip_flop_rate": flips}


def thought_accuracy(policy: Policy, dataset: Dataset, max_parallel: int = 256) -> dict[str, np.ndarray]:
    """Replay the expert's episodes of ``dataset`` through ``policy`` (its memory carried along each episode).

    Returns per-episode ``thought_accuracy`` (share of steps whose generated thought equals the expert's,
    word for word) and ``action_accuracy`` (share of steps where the greedy action equals the expert's).
    """
    dataset.require_streams(("obs", "action", "thought"), "thought accuracy")
    texts = dataset.column("thought")
    thinker: Callable[[Any], list[str]] | None = getattr(policy, "thoughts", None)
    if thinker is None:
        raise ConfigError(f"thought accuracy: policy {policy.name!r} does not generate thoughts")
    thought_acc, action_acc = [], []
    policy.eval()
    for first in range(0, dataset.num_episodes, max_parallel):
        episodes = range(first, min(first + max_parallel, dataset.num_episodes))
        starts = dataset.episode_starts[list(episodes)]
        lengths = dataset.episode_lengths[list(episodes)]
        n, horizon = len(starts), int(lengths.max())
        right_thought = np.zeros(n)
        right_action = np.zeros(n)
        state = policy.initial_state(n)
        with torch.inference_mode():
            for t in range(horizon):
                rows = starts + np.minimum(t, lengths - 1)
                step = dataset.gather(rows, ["obs", "action"])
                actions, state = policy.act({"obs": torch.from_numpy(step["obs"])}, state)
                generated = thinker(state)
                live = t < lengths
                right_action += live & (actions.numpy() == step["action"])
                right_thought += live & np.array(
                    [" ".join(generated[i].split()) == " ".join(texts[r].lower().split()) for i, r in enumerate(rows)]
                )
        thought_acc.append(right_thought / lengths)
        action_acc.append(right_action / lengths)
    return {"thought_accuracy": np.concatenate(thought_acc), "action_accuracy": np.concatenate(action_acc)}


def summarize_episodes(values: dict[str, np.ndarray], seed: int) -> dict[str, dict[str, Any]]:
    """:func:`clonekit.evaluation.stats.summarize` of each per-episode array."""
    return {name: summarize(v, seed) for name, v in values.items()}
