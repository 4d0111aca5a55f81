"""Training batches whose streams may span several consecutive steps (action chunks, frame histories).

A policy asks for a stream as a window with ``{name: length}`` or ``{name: (length, offset)}``: the window
holds steps ``t + offset .. t + offset + length - 1`` of the sampled step ``t``, clipped to ``t``'s episode.

* ``length`` alone (offset 0) looks ahead, e.g. a chunk of ``k`` actions from ``t`` on. Near the end of an
  episode the window is padded by repeating the episode's last step (as Diffusion Policy does), so every step
  can start a window.
* ``(k, 1 - k)`` looks back: the ``k`` steps ending at ``t`` (a frame history, oldest first). Near the start of
  an episode the window is padded by repeating the episode's first step, which is exactly the history a
  policy acting with ``clonekit.nn.encoders.push_frame`` holds there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from clonekit.data.format import Dataset

# What a policy's ``sample_windows`` maps a stream to: ``length``, or ``(length, offset)``.
WindowSpec = int | tuple[int, int]


def as_window(name: str, spec: WindowSpec) -> tuple[int, int]:
    """``(length, offset)`` of a window spec (``length`` alone means offset 0); ``ValueError`` if malformed."""
    length, offset = (spec, 0) if isinstance(spec, int) else spec
    if isinstance(length, bool) or not isinstance(length, int) or length < 1 or not isinstance(offset, int):
        raise ValueError(f"window for stream {name!r}: expected length >= 1 or (length >= 1, offset), got {spec!r}")
    return length, offset


@dataclass(frozen=True)
class EpisodeSubset:
    """Some episodes of a dataset, to sample batches from them only (e.g. training without held-out ones).

    ``episodes`` ``(E,)`` int64 episode ids, sorted; ``steps`` ``(S,)`` int64 indices of their steps.
    """

    episodes: np.ndarray
    steps: np.ndarray

    @classmethod
    def of(cls, dataset: Dataset, episodes: np.ndarray | Sequence[int]) -> EpisodeSubset:
        """The subset of ``dataset`` made of ``episodes`` (ids in ``[0, num_episodes)``, at least one)."""
        ids = np.unique(np.asarray(episodes, dtype=np.int64))
        if len(ids) == 0 or ids[0] < 0 or ids[-1] >= dataset.num_episodes:
            raise ValueError(f"episode subset: expected ids in [0, {dataset.num_episodes}), got {ids.tolist()}")
        starts = np.asarray(dataset.episode_starts, dtype=np.int64)[ids]
        lengths = np.asarray(dataset.episode_lengths, dtype=np.int64)[ids]
        steps = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        return cls(episodes=ids, steps=steps)


def window_indices(dataset: Dataset, index: np.ndarray, length: int, offset: int = 0) -> np.ndarray:
    """Step indices ``(N, length)``: steps ``t + offset ..`` for each ``t`` of ``index`` ``(N,)``, clipped to
    ``t``'s episode (so a window reaching past either end repeats that end's step)."""
    episode = dataset.episode_index()[index]
    first = dataset.episode_starts[episode]
    last = first + dataset.episode_lengths[episode] - 1
    steps = index[:, None] + (offset + np.arange(length))[None]
    if offset < 0:
        steps = np.maximum(steps, first[:, None])
    return np.minimum(steps, last[:, None])


def sample_batch(
    dataset: Dataset,
    batch_size: int,
    generator: torch.Generator,
    streams: Sequence[str],
    windows: Mapping[str, WindowSpec] | None = None,
    encoded: Mapping[str, np.ndarray] | None = None,
    from_episode_start: bool = False,
    subset: EpisodeSubset | None = None,
    weights: np.ndarray | StepWeights | None = None,
) -> dict[str, torch.Tensor]:
    """``batch_size`` random steps: ``(B, *shape)`` per stream, ``(B, length, *shape)`` for a stream in ``windows``.

    ``windows`` maps a stream to its window (``length`` or ``(length, offset)``, see the module docstring).
    ``encoded`` maps more names to whole per-step arrays ``(num_steps, ...)`` (e.g. a text stream turned
    into token ids by the policy); they are gathered at the same steps, windowed alike.
    Without windows or encoded columns this is exactly ``dataset.sample`` (same indices from the same
    generator state). With ``from_episode_start`` the samples are episodes drawn uniformly and every window
    starts at its episode's first step (for recurrent policies trained on whole episodes). With ``subset``
    only the steps (or episodes) of those episodes are drawn. With ``weights`` ``(num_steps,)`` (>= 0, not
    all 0 among the steps drawn from) step ``t`` is drawn with probability proportional to ``weights[t]``; a
    :class:`StepWeights` (built for the same ``subset``) does the same without a pass over every step.
    """
    encoded = dict(encoded or {})
    spans = {name: as_window(name, spec) for name, spec in (windows or {}).items()}
    # A one-step window at the sampled step is a plain step.
    spans = {name: span for name, span in spans.items() if span != (1, 0) and (name in streams or name in encoded)}
    if not spans and not encoded and not from_episode_start and subset is None and weights is None:
        return dataset.sample(batch_size, generator, streams)
    if weights is not None:
        if from_episode_start:
            raise ValueError("sample_batch: weights are per step; they cannot be used with from_episode_start")
        if not isinstance(weights, StepWeights):
            weights = StepWeights(weights, None if subset is None else subset.steps)
        index = weights.draw(batch_size, generator)
    elif from_episode_start:
        if subset is None:
            episodes = torch.randint(dataset.num_episodes, (batch_size,), generator=generator).numpy()
        else:
            episodes = subset.episodes[torch.randint(len(subset.episodes), (batch_size,), generator=generator).numpy()]
        index = np.asarray(dataset.episode_starts)[episodes]
    elif subset is None:
        index = torch.randint(dataset.num_steps, (batch_size,), generator=generator).numpy()
    else:
        index = subset.steps[torch.randint(len(subset.steps), (batch_size,), generator=generator).numpy()]
    batch = dataset.gather(index, [s for s in streams if s not in spans])
    for name, values in encoded.items():
        if name not in spans:
            batch[name] = values[index]
    for name, (length, offset) in spans.items():
        rows = window_indices(dataset, index, length, offset)
        flat = rows.ravel()
        windowed = encoded[name][flat] if name in encoded else dataset.gather(flat, [name])[name]
        batch[name] = windowed.reshape(batch_size, length, *windowed.shape[1:])
    return {name: torch.from_numpy(values) for name, values in batch.items()}


class StepWeights:
    """Per-step sampling weights ``(num_steps,)`` over the steps drawn from (all, or ``steps``), with their
    cumulative sum built once: training draws every batch from the same steps, so it builds one of these
    instead of passing the raw weights (which costs a pass over every step per batch)."""

    def __init__(self, weights: np.ndarray, steps: np.ndarray | None = None) -> None:
        values = np.asarray(weights, dtype=np.float64)
        self.steps = np.arange(len(values)) if steps is None else np.asarray(steps)
        restricted = values[self.steps]
        self.cdf = np.cumsum(restricted)
        if not len(self.cdf) or not self.cdf[-1] > 0:
            raise ValueError("sample_batch: every weight of the steps to draw from is 0")
        # u < cdf[-1] keeps searchsorted in range; rounding aside, the last positive weight bounds it.
        self.last_positive = int(np.flatnonzero(restricted > 0)[-1])

    def draw(self, count: int, generator: torch.Generator) -> np.ndarray:
        """``count`` step indices drawn with probability proportional to the weights (inverse CDF); a step of
        weight 0 is never drawn."""
        u = torch.rand(count, generator=generator, dtype=torch.float64).numpy() * self.cdf[-1]
        return self.steps[np.minimum(np.searchsorted(self.cdf, u, side="right"), self.last_positive)]
