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
) -> dict[str, torch.Tensor]:
    """``batch_size`` random steps: ``(B, *shape)`` per stream, ``(B, length, *shape)`` for a stream in ``windows``.

    ``windows`` maps a stream to its window (``length`` or ``(length, offset)``, see the module docstring).
    ``encoded`` maps more names to whole per-step arrays ``(num_steps, ...)`` (e.g. a text stream turned
    into token ids by the policy); they are gathered at the same steps, windowed alike.
    Without windows or encoded columns this is exactly ``dataset.sample`` (same indices from the same
    generator state). With ``from_episode_start`` the samples are episodes drawn uniformly and every window
    starts at its episode's first step (for recurrent policies trained on whole episodes).
    """
    encoded = dict(encoded or {})
    spans = {name: as_window(name, spec) for name, spec in (windows or {}).items()}
    # A one-step window at the sampled step is a plain step.
    spans = {name: span for name, span in spans.items() if span != (1, 0) and (name in streams or name in encoded)}
    if not spans and not encoded and not from_episode_start:
        return dataset.sample(batch_size, generator, streams)
    if from_episode_start:
        episodes = torch.randint(dataset.num_episodes, (batch_size,), generator=generator).numpy()
        index = np.asarray(dataset.episode_starts)[episodes]
    else:
        index = torch.randint(dataset.num_steps, (batch_size,), generator=generator).numpy()
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
