"""Training batches whose streams may span several consecutive steps (e.g. action chunks).

A policy that predicts ``k`` future actions asks for the ``action`` stream as a window of ``k`` steps:
the step sampled and the ``k - 1`` after it in the same episode. Near the end of an episode the window is
padded by repeating the episode's last step (as Diffusion Policy does), so every step can start a window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from clonekit.data.format import Dataset


def window_indices(dataset: Dataset, index: np.ndarray, length: int) -> np.ndarray:
    """Step indices ``(N, length)``: each step of ``index`` ``(N,)`` and its successors, clipped to its episode."""
    episode = dataset.episode_index()[index]
    last = dataset.episode_starts[episode] + dataset.episode_lengths[episode] - 1
    steps = index[:, None] + np.arange(length)[None]
    return np.minimum(steps, last[:, None])


def sample_batch(
    dataset: Dataset,
    batch_size: int,
    generator: torch.Generator,
    streams: Sequence[str],
    windows: Mapping[str, int] | None = None,
    encoded: Mapping[str, np.ndarray] | None = None,
    from_episode_start: bool = False,
) -> dict[str, torch.Tensor]:
    """``batch_size`` random steps: ``(B, *shape)`` per stream, ``(B, k, *shape)`` for a stream in ``windows``.

    ``encoded`` maps more names to whole per-step arrays ``(num_steps, ...)`` (e.g. a text stream turned
    into token ids by the policy); they are gathered at the same steps, windowed alike.
    Without windows or encoded columns this is exactly ``dataset.sample`` (same indices from the same
    generator state). With ``from_episode_start`` the samples are episodes drawn uniformly and every window
    starts at its episode's first step (for recurrent policies trained on whole episodes).
    """
    encoded = dict(encoded or {})
    windows = {name: k for name, k in (windows or {}).items() if k > 1 and (name in streams or name in encoded)}
    if not windows and not encoded and not from_episode_start:
        return dataset.sample(batch_size, generator, streams)
    if from_episode_start:
        episodes = torch.randint(dataset.num_episodes, (batch_size,), generator=generator).numpy()
        index = np.asarray(dataset.episode_starts)[episodes]
    else:
        index = torch.randint(dataset.num_steps, (batch_size,), generator=generator).numpy()
    batch = dataset.gather(index, [s for s in streams if s not in windows])
    for name, values in encoded.items():
        if name not in windows:
            batch[name] = values[index]
    for name, length in windows.items():
        rows = window_indices(dataset, index, length)
        flat = rows.ravel()
        windowed = encoded[name][flat] if name in encoded else dataset.gather(flat, [name])[name]
        batch[name] = windowed.reshape(batch_size, length, *windowed.shape[1:])
    return {name: torch.from_numpy(values) for name, values in batch.items()}
