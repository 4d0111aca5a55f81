"""h5py access shared by the HDF5-based formats (robomimic-style ``hdf5`` and flat ``d4rl``).

h5py is an optional extra, so it is imported inside the functions that need it; the readers check
``require_package("h5py", "hdf5")`` before calling them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clonekit.data.format import StreamSpec, array_stream, text_stream
from clonekit.data.formats.infer import storable_dtype
from clonekit.errors import DatasetError

# How h5py reports unreadable and corrupt files; turned into one-line DatasetErrors naming the file.
H5_ERRORS = (OSError, KeyError, ValueError, RuntimeError)


def h5_dataset(where: str, group: Any, key: str) -> Any:
    """The h5py dataset ``group[key]``, or a ``DatasetError`` saying what is there instead."""
    import h5py

    item = group.get(key) if isinstance(group, h5py.Group) else None
    if not isinstance(item, h5py.Dataset):
        found = "a group" if item is not None else "nothing"
        raise DatasetError(f"{where}: expected a dataset {key!r}, found {found}")
    return item


def extra_stream_spec(name: str, item: Any, taken: bool, rows: int, like: str) -> StreamSpec | str:
    """The spec of an extra per-step h5py item ``name`` found beside the known ones, or why it is skipped: its
    name is ``taken`` by a stream clonekit produces, it is a group, or it has not ``rows`` rows (as ``like``)."""
    import h5py

    if taken:
        return f"the name is taken by clonekit's stream {name!r}"
    if not isinstance(item, h5py.Dataset):
        return "a group, not per-step data"
    if item.ndim == 0 or item.shape[0] != rows:
        return f"shape {item.shape} is not per-step (expected {rows} rows, like {like!r})"
    return stream_spec_of(name, item)


def stream_spec_of(name: str, item: Any) -> StreamSpec | str:
    """The spec of stream ``name`` holding the per-step h5py dataset ``item``, or why it cannot be a stream."""
    import h5py

    try:
        if h5py.check_string_dtype(item.dtype) is not None:
            return text_stream(name) if item.ndim == 1 else f"a string array of shape {item.shape}"
        dtype = storable_dtype(item.dtype)
        if dtype is None:
            return f"dtype {item.dtype} is neither numeric nor a string"
        return array_stream(name, dtype, item.shape[1:])
    except DatasetError as e:  # e.g. a name clonekit does not accept for a stream; reported as the reason
        return str(e)


def read_values(item: Any, spec: StreamSpec, rows: slice | tuple[()] = ()) -> np.ndarray | list[str]:
    """Rows ``rows`` (default: all) of the h5py dataset ``item`` as stream ``spec`` holds them: an array, or str."""
    if spec.kind == "text":
        return [str(text) for text in item.asstr()[rows]]
    return np.asarray(item[rows])


def check_no_nul(where: str, texts: list[str]) -> None:
    """``DatasetError`` for a text with a NUL character: HDF5 strings end at NUL, so it would come back cut."""
    for step, text in enumerate(texts):
        if "\x00" in text:
            raise DatasetError(f"{where}, step {step}: text with a NUL character cannot be stored as an HDF5 string")
