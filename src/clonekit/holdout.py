"""Held-out episodes and the validation loss on them, for the training loop.

Which episodes are held out (``TrainConfig.val_fraction``):

* ``None`` (the default): the dataset's own validation split when it records one (``valid``, e.g. from a
  robomimic file's ``mask/valid``; see :mod:`clonekit.data.splits`), else none, so training on a dataset
  without splits is unchanged.
* ``0``: none, even when the dataset records a split.
* a fraction in ``(0, 1)``: that share of the episodes (rounded, at least one, leaving at least one to train
  on), drawn at random but the same for every training seed, so validation curves of several seeds compare.

The validation loss is the policy's own ``compute_loss`` in eval mode without gradients, averaged over a
fixed set of batches drawn once from the held-out episodes, with a fixed seed for any noise inside the loss
(the same samples and noise at every log step, so the curve moves only with the weights). It runs under a
forked torch random state, so computing it changes nothing in training (batches, noise, exact resume).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from clonekit.data import Dataset
from clonekit.data.splits import episode_splits
from clonekit.data.windows import EpisodeSubset
from clonekit.errors import ConfigError
from clonekit.policies import Policy
from clonekit.seeding import derive_seed

# Names of a recorded validation split (``valid`` is robomimic's), in order of preference.
VALID_SPLIT_NAMES = ("valid", "validation", "val")

# Draws one CPU batch from an episode subset with a generator (the training loop's own sampler).
BatchSampler = Callable[[torch.Generator, EpisodeSubset], dict[str, torch.Tensor]]


def holdout_split(dataset: Dataset, val_fraction: float | None) -> tuple[EpisodeSubset | None, np.ndarray]:
    """``(episodes to train on, held-out episode ids)`` (see the module docstring).

    The first is None when training uses every episode, sampled exactly as without a split; the second is
    empty without validation. With the dataset's recorded split (``val_fraction=None``), training uses its
    ``train`` split when it records one (less any held-out episode), else every episode not held out.
    """
    none = np.zeros(0, dtype=np.int64)
    n = dataset.num_episodes
    everything = np.arange(n, dtype=np.int64)
    if val_fraction == 0:
        return None, none
    if val_fraction is None:
        splits = episode_splits(dataset)
        name = next((name for name in VALID_SPLIT_NAMES if name in splits), None)
        if name is None:
            return None, none
        held = np.asarray(splits[name], dtype=np.int64)
        train = np.setdiff1d(np.asarray(splits.get("train", everything), dtype=np.int64), held)
        if len(held) == 0 or len(train) == 0:
            raise ConfigError(
                f"{dataset.path}: the recorded splits hold {len(held)} validation and {len(train)} training "
                f"episode(s) (split {name!r}); expected at least one of each, or pass val_fraction=0 to ignore them"
            )
        return EpisodeSubset.of(dataset, train), held
    if n < 2:
        raise ConfigError(f"val_fraction: expected a dataset of at least 2 episodes to hold some out, found {n}")
    count = min(max(round(val_fraction * n), 1), n - 1)
    order = np.random.default_rng(derive_seed(0, f"holdout:{dataset.fingerprint}")).permutation(n)
    held = np.sort(order[:count]).astype(np.int64)
    return EpisodeSubset.of(dataset, np.setdiff1d(everything, held)), held


class ValidationLoss:
    """The validation loss of a policy on fixed batches of held-out episodes (see the module docstring).

    Args:
        dataset: The training dataset.
        held_out: Ids of the held-out episodes (at least one).
        sample: Draws one CPU batch from an episode subset (the training loop's sampler, so a validation
            batch has the streams, windows and labels of a training batch).
        num_batches: How many batches the loss averages.
        seed: Fixes the batches and any noise inside the loss.
    """

    def __init__(
        self, dataset: Dataset, held_out: np.ndarray, sample: BatchSampler, num_batches: int, seed: int
    ) -> None:
        subset = EpisodeSubset.of(dataset, held_out)
        generator = torch.Generator().manual_seed(derive_seed(seed, "validation batches"))
        self.batches = [sample(generator, subset) for _ in range(num_batches)]
        self.seed = derive_seed(seed, "validation noise")

    def __call__(self, model: Policy, device: torch.device) -> float:
        """Mean loss of ``model`` over the batches; leaves its train/eval mode and torch's random state as found."""
        was_training = model.training
        model.eval()
        devices = [device] if device.type == "cuda" else []
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=devices):
                torch.manual_seed(self.seed)
                total = 0.0
                for batch in self.batches:
                    loss, _ = model.compute_loss({k: v.to(device) for k, v in batch.items()})
                    total += float(loss)
        finally:
            model.train(was_training)
        return total / len(self.batches)


__all__ = ["VALID_SPLIT_NAMES", "ValidationLoss", "holdout_split"]
