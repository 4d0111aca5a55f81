"""Named episode splits a dataset records (``train``, ``valid``, or any other name), e.g. for a validation loss.

A dataset records its splits in ``meta.json`` under ``extra["splits"]``: a JSON object mapping each split name
to the strictly increasing indices of its episodes (``{"train": [0, 1, 3], "valid": [2]}``). They live in
``extra``, which the content fingerprint does not cover, so recording or dropping splits never changes the
fingerprint. Splits may overlap and need not cover every episode (robomimic files carry filter keys such as
``20_percent`` next to ``train``/``valid``).

Readers of foreign formats fill them in (robomimic ``mask/<name>``, see ``clonekit.data.formats.hdf5``), and
writers put them back; a user records them with ``DatasetWriter(..., extra={"splits": ...})``.

    splits = episode_splits(Dataset.open("data/lift"))  # {"train": [...], "valid": [...]}, or {} without splits
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from clonekit.data.messages import short_repr
from clonekit.errors import DatasetError

if TYPE_CHECKING:
    from clonekit.data.dataset import Dataset

SPLITS_KEY = "splits"


def check_splits(where: str, splits: Any, num_episodes: int) -> dict[str, list[int]]:
    """``splits`` as ``{name: [episode index, ...]}``, or a ``DatasetError`` starting with ``where``.

    Names are non-empty and hold no ``/`` (they become HDF5 paths such as ``mask/<name>``); each split is a list
    of strictly increasing episode indices in ``[0, num_episodes)``.
    """
    if not isinstance(splits, Mapping):
        raise DatasetError(f"{where}: expected a JSON object of split name -> indices, found {short_repr(splits)}")
    checked: dict[str, list[int]] = {}
    for name, indices in splits.items():
        if not isinstance(name, str) or not name or "/" in name:
            raise DatasetError(f"{where}: split name {name!r}: expected a non-empty name without '/'")
        if not isinstance(indices, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < num_episodes for i in indices
        ):
            raise DatasetError(
                f"{where}: split {name!r}: expected a list of episode indices in [0, {num_episodes}), found "
                f"{short_repr(indices)}"
            )
        if any(a >= b for a, b in pairwise(indices)):
            raise DatasetError(
                f"{where}: split {name!r}: expected strictly increasing episode indices, found {short_repr(indices)}"
            )
        checked[name] = list(indices)
    return checked


def episode_splits(dataset: Dataset) -> dict[str, list[int]]:
    """The splits ``dataset`` records (``{}`` when it records none), checked against its episode count."""
    if SPLITS_KEY not in dataset.extra:
        return {}
    where = f"{dataset.path / 'meta.json'}: extra.{SPLITS_KEY}"
    return check_splits(where, dataset.extra[SPLITS_KEY], dataset.num_episodes)
