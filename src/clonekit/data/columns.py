"""The Arrow IPC files of a dataset: one per stream under ``columns/``, plus the episode index ``episodes.arrow``.

Writing streams a column to disk in record batches of ``rows_per_chunk`` rows (``ColumnWriter``; the writer
bounds a batch's bytes too, see ``chunk_rows``). Reading
memory-maps a file and checks its structure (Arrow type, row count, nulls) against the stream's spec, then
keeps one zero-copy numpy view per record batch (``ArrayColumn``) or the Arrow strings (``TextColumn``). The
storage rules themselves (bool as uint8, shaped steps as fixed-size lists) are described in
``clonekit.data.format``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from clonekit.data.format import EPISODE_INDEX_COLUMNS, StreamSpec
from clonekit.data.messages import one_line
from clonekit.errors import DatasetError

# Arrow type of each kind of per-episode info value in episodes.arrow.
INFO_ARROW_TYPES: dict[type, Any] = {int: pa.int64(), float: pa.float64(), str: pa.large_string()}


def arrow_type(spec: StreamSpec) -> Any:
    """The Arrow type a stream is stored as (bool as uint8, shaped arrays as a fixed-size list)."""
    if spec.kind == "text":
        return pa.large_string()
    value_type = pa.uint8() if spec.dtype == "bool" else pa.from_numpy_dtype(np.dtype(spec.dtype))
    if spec.shape == ():
        return value_type
    return pa.list_(value_type, math.prod(spec.shape))


# ---------------------------------------------------------------------------------------------------------
# Writing.


def chunk_rows(spec: StreamSpec, rows_per_chunk: int, max_chunk_bytes: int) -> int:
    """Rows per record batch of a stream: ``rows_per_chunk``, fewer when a batch of them would exceed
    ``max_chunk_bytes`` (an array stream of large steps, e.g. pictures), never fewer than one.

    A text stream's steps have no fixed size, so only ``rows_per_chunk`` bounds its batches.
    """
    if spec.kind == "text":
        return rows_per_chunk
    storage = np.dtype(np.uint8) if spec.dtype == "bool" else np.dtype(spec.dtype)
    row_bytes = math.prod(spec.shape) * storage.itemsize
    return max(1, min(rows_per_chunk, max_chunk_bytes // max(row_bytes, 1)))


class ColumnWriter:
    """Streams one column to an Arrow IPC file in record batches of exactly ``rows_per_chunk`` rows.

    ``append`` takes values already converted to the storage dtype (``clonekit.data.validate.array_steps``) or
    lists of str; at most ``rows_per_chunk`` rows stay buffered in memory.
    """

    def __init__(self, file: Path, spec: StreamSpec, rows_per_chunk: int) -> None:
        self.spec = spec
        self.rows_per_chunk = rows_per_chunk
        self.schema = pa.schema([pa.field("data", arrow_type(spec), nullable=False)])
        self.pending: list[Any] = []  # numpy arrays in storage dtype, or lists of str
        self.pending_rows = 0
        self.sink = pa.OSFile(str(file), "wb")
        self.writer = pa.ipc.new_file(self.sink, self.schema)

    def append(self, values: np.ndarray | list[str]) -> None:
        """Buffer one episode's ``(T, *shape)`` values, writing every full chunk."""
        self.pending.append(values)
        self.pending_rows += len(values)
        if self.pending_rows >= self.rows_per_chunk:
            self._flush(final=False)

    def close(self) -> None:
        """Write the remaining rows as a last, shorter chunk and finish the file."""
        self._flush(final=True)
        self.writer.close()
        self.sink.close()

    def discard(self) -> None:
        """Release the file handles without finishing the file (the caller deletes it)."""
        self.pending = []
        if not self.sink.closed:
            self.sink.close()

    def _flush(self, final: bool) -> None:
        if self.pending_rows == 0:
            return
        if self.spec.kind == "text":
            rows: Any = [text for piece in self.pending for text in piece]
        else:
            rows = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending)
        written = 0
        while self.pending_rows - written >= self.rows_per_chunk or (final and written < self.pending_rows):
            size = min(self.rows_per_chunk, self.pending_rows - written)
            self.writer.write_batch(
                pa.record_batch([self._to_arrow(rows[written : written + size])], schema=self.schema)
            )
            written += size
        # Copy the remainder so the big concatenated buffer can be freed.
        remainder = rows[written:]
        self.pending = [remainder if isinstance(remainder, list) else remainder.copy()] if len(remainder) else []
        self.pending_rows -= written

    def _to_arrow(self, rows: Any) -> pa.Array:
        if self.spec.kind == "text":
            return pa.array(rows, type=pa.large_string())
        values = pa.array(np.ascontiguousarray(rows).reshape(-1))
        if self.spec.shape == ():
            return values
        return pa.FixedSizeListArray.from_arrays(values, math.prod(self.spec.shape))


def write_episode_index(
    file: Path,
    lengths: Sequence[int],
    info_names: Sequence[str],
    info_values: Mapping[str, list[int | float | str]],
    info_kinds: Mapping[str, type],
) -> None:
    """Write ``episodes.arrow``: start and length of each episode, then one column per episode info name."""
    length_array = np.asarray(lengths, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(length_array)[:-1]]).astype(np.int64)
    arrays = [pa.array(starts, type=pa.int64()), pa.array(length_array, type=pa.int64())]
    fields = [
        pa.field("start", pa.int64(), nullable=False),
        pa.field("length", pa.int64(), nullable=False),
    ]
    for name in info_names:
        info_type = INFO_ARROW_TYPES[info_kinds[name]]
        arrays.append(pa.array(info_values[name], type=info_type))
        fields.append(pa.field(name, info_type, nullable=False))
    schema = pa.schema(fields)
    with pa.OSFile(str(file), "wb") as sink, pa.ipc.new_file(sink, schema) as out:
        out.write_batch(pa.record_batch(arrays, schema=schema))


# ---------------------------------------------------------------------------------------------------------
# Columns in memory: a list of per-chunk pieces plus the step index at which each chunk starts.


class ArrayColumn:
    """An array stream as zero-copy numpy views ``(chunk_rows, *shape)``, one per Arrow record batch."""

    def __init__(self, chunks: list[np.ndarray], empty: np.ndarray) -> None:
        self.chunks = chunks
        self.empty = empty  # (0, *shape) of the right dtype, for columns and slices without rows
        # (num_chunks + 1,): chunk c holds steps [starts[c], starts[c + 1]).
        self.starts = np.cumsum([0] + [len(chunk) for chunk in chunks], dtype=np.int64)

    def full(self) -> np.ndarray:
        """The whole column: the mapped view itself when there is one chunk, else a concatenated copy."""
        if len(self.chunks) == 1:
            return self.chunks[0]
        return np.concatenate(self.chunks) if self.chunks else self.empty

    def take(self, index: np.ndarray, groups: list[tuple[int, np.ndarray, np.ndarray]] | None) -> np.ndarray:
        """Rows ``index``; ``groups`` is ``group_by_chunk(self.starts, index)`` when there are several chunks."""
        if len(self.chunks) == 1:
            return self.chunks[0][index]
        out = np.empty((len(index), *self.empty.shape[1:]), dtype=self.empty.dtype)
        for chunk, positions, local in groups if groups is not None else group_by_chunk(self.starts, index):
            out[positions] = self.chunks[chunk][local]
        return out

    def slice(self, start: int, stop: int) -> np.ndarray:
        """Steps ``[start, stop)``: a view when they lie within one chunk."""
        pieces = [self.chunks[c][lo:hi] for c, lo, hi in chunk_ranges(self.starts, start, stop)]
        if len(pieces) == 1:
            return pieces[0]
        return np.concatenate(pieces) if pieces else self.empty


class TextColumn:
    """A text stream as its Arrow ``large_string`` chunks (strings are decoded only when asked for)."""

    def __init__(self, chunks: list[pa.Array]) -> None:
        self.chunks = chunks
        self.starts = np.cumsum([0] + [len(chunk) for chunk in chunks], dtype=np.int64)

    def full(self) -> list[str]:
        """Every step's text."""
        return [text for chunk in self.chunks for text in chunk.to_pylist()]

    def take(self, index: np.ndarray, groups: list[tuple[int, np.ndarray, np.ndarray]] | None) -> np.ndarray:
        """Rows ``index`` as an ``(N,)`` object array of str."""
        out = np.empty(len(index), dtype=object)
        for chunk, positions, local in groups if groups is not None else group_by_chunk(self.starts, index):
            out[positions] = self.chunks[chunk].take(pa.array(local)).to_numpy(zero_copy_only=False)
        return out

    def slice(self, start: int, stop: int) -> list[str]:
        """The text of steps ``[start, stop)``."""
        return [
            text
            for c, lo, hi in chunk_ranges(self.starts, start, stop)
            for text in self.chunks[c].slice(lo, hi - lo).to_pylist()
        ]


def group_by_chunk(starts: np.ndarray, index: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Split step indices by chunk: yields ``(chunk, positions in index, row indices within the chunk)``.

    One argsort groups all indices and one bincount sizes the groups, so the work per call is vectorized and
    the Python loop runs once per chunk touched, never once per index.
    """
    chunk_of = np.searchsorted(starts, index, side="right") - 1
    order = np.argsort(chunk_of, kind="stable")
    counts = np.bincount(chunk_of, minlength=len(starts) - 1)
    touched = np.flatnonzero(counts)
    stop = np.cumsum(counts)[touched]
    local = index - starts[chunk_of]
    for chunk, lo, hi in zip(touched.tolist(), (stop - counts[touched]).tolist(), stop.tolist(), strict=True):
        positions = order[lo:hi]
        yield chunk, positions, local[positions]


def chunk_ranges(starts: np.ndarray, start: int, stop: int) -> Iterator[tuple[int, int, int]]:
    """``(chunk, lo, hi)`` row ranges within chunks covering steps ``[start, stop)``, in order."""
    first = int(np.searchsorted(starts, start, side="right")) - 1
    for chunk in range(max(first, 0), len(starts) - 1):
        chunk_start, chunk_stop = int(starts[chunk]), int(starts[chunk + 1])
        if chunk_start >= stop:
            break
        yield chunk, max(start, chunk_start) - chunk_start, min(stop, chunk_stop) - chunk_start


# ---------------------------------------------------------------------------------------------------------
# Reading.


def read_arrow_file(file: Path) -> tuple[pa.Schema, list[pa.RecordBatch]]:
    """Memory-map an Arrow IPC file read-only and return its schema and record batches.

    The batches' buffers point into the mapping; Arrow keeps the mapping alive for as long as any buffer
    (or numpy view of one) exists, so the file handle itself can be closed here.
    """
    if not file.is_file():
        raise DatasetError(f"{file}: missing; expected an Arrow IPC file")
    try:
        source = pa.memory_map(str(file), "r")
        try:
            reader = pa.ipc.open_file(source)
            schema = reader.schema
            batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
            for batch in batches:
                # Full validation walks every string offset (cheap for text, and a bad offset would otherwise
                # crash later); numeric columns only need the structural check.
                batch.validate(full=any(pa.types.is_large_string(t) or pa.types.is_string(t) for t in schema.types))
        finally:
            source.close()
    except (pa.ArrowException, OSError) as e:
        raise DatasetError(f"{file}: not a readable Arrow IPC file: {one_line(e)}") from e
    return schema, batches


def read_column(file: Path, spec: StreamSpec, num_steps: int) -> ArrayColumn | TextColumn:
    """Map one column file and check its Arrow type, nulls and row count against the spec."""
    schema, batches = read_arrow_file(file)
    expected = arrow_type(spec)
    if schema.names != ["data"]:
        raise DatasetError(f"{file}: expected one column named 'data', found columns {schema.names}")
    found = schema.field("data").type
    # Compare lists by size and value type only: the child field's name ("item", "element") is immaterial.
    same_list = (
        pa.types.is_fixed_size_list(found)
        and pa.types.is_fixed_size_list(expected)
        and (found.list_size, found.value_type) == (expected.list_size, expected.value_type)
    )
    if found != expected and not same_list:
        raise DatasetError(
            f"{file}: expected Arrow type {expected} for stream {spec.name!r} ({spec.describe()}), found {found}"
        )
    rows = sum(batch.num_rows for batch in batches)
    if rows != num_steps:
        raise DatasetError(f"{file}: expected {num_steps} rows (meta.json num_steps), found {rows}")
    arrays = [batch.column(0) for batch in batches if batch.num_rows > 0]
    for array in arrays:
        nulls = array.null_count + (array.values.null_count if spec.shape else 0)
        if nulls:
            raise DatasetError(f"{file}: expected no nulls, found {nulls}")
    if spec.kind == "text":
        return TextColumn(arrays)

    dtype = np.dtype(spec.dtype)
    chunks = []
    for array in arrays:
        try:
            if spec.shape:
                # .values ignores a parent offset, so slice the children explicitly (offset is 0 in our files).
                size = math.prod(spec.shape)
                flat = array.values.slice(array.offset * size, len(array) * size)
            else:
                flat = array
            values = flat.to_numpy(zero_copy_only=True).reshape(len(array), *spec.shape)
        except (pa.ArrowException, ValueError) as e:
            # Arrow's structural validation passed, so this is a layout numpy cannot view without a copy.
            raise DatasetError(f"{file}: cannot map stream {spec.name!r} ({spec.describe()}): {one_line(e)}") from e
        chunks.append(values.view(np.bool_) if dtype == np.bool_ else values)
    return ArrayColumn(chunks, np.empty((0, *spec.shape), dtype=dtype))


def read_episode_index(file: Path, meta: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Read ``episodes.arrow`` and check that episodes tile ``[0, num_steps)`` contiguously and in order.

    Returns read-only ``(num_episodes,)`` starts and lengths (int64) and one array per episode info column.
    """
    schema, batches = read_arrow_file(file)
    info_names = list(meta["episode_info"])
    expected_names = [*EPISODE_INDEX_COLUMNS, *info_names]
    if sorted(schema.names) != sorted(expected_names):
        raise DatasetError(
            f"{file}: expected columns {expected_names} (start, length + meta.json episode_info), found {schema.names}"
        )
    table = pa.Table.from_batches(batches, schema=schema)
    if table.num_rows != meta["num_episodes"]:
        raise DatasetError(
            f"{file}: expected {meta['num_episodes']} rows (meta.json num_episodes), found {table.num_rows}"
        )
    for name in expected_names:
        found = schema.field(name).type
        allowed = [pa.int64()] if name in EPISODE_INDEX_COLUMNS else list(INFO_ARROW_TYPES.values())
        if found not in allowed:
            raise DatasetError(
                f"{file}: column {name!r}: expected Arrow type {' or '.join(map(str, allowed))}, found {found}"
            )
        if table.column(name).null_count:
            raise DatasetError(f"{file}: column {name!r}: expected no nulls, found {table.column(name).null_count}")

    starts = table.column("start").to_numpy().astype(np.int64)
    lengths = table.column("length").to_numpy().astype(np.int64)
    # Bounding each length by num_steps first keeps the cumulative sums below from overflowing int64.
    wrong_length = np.flatnonzero((lengths < 1) | (lengths > meta["num_steps"]))
    if wrong_length.size:
        i = int(wrong_length[0])
        raise DatasetError(
            f"{file}: episode {i}: expected length in [1, {meta['num_steps']}] (meta.json num_steps), "
            f"found {lengths[i]}"
        )
    expected_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    wrong = np.flatnonzero(starts != expected_starts)
    if wrong.size:
        i = int(wrong[0])
        because = "episodes start at step 0" if i == 0 else f"start[{i - 1}] + length[{i - 1}]"
        raise DatasetError(f"{file}: episode {i}: expected start {expected_starts[i]} ({because}), found {starts[i]}")
    if int(lengths.sum()) != meta["num_steps"]:
        raise DatasetError(
            f"{file}: expected episode lengths summing to {meta['num_steps']} (meta.json num_steps), "
            f"found {int(lengths.sum())}"
        )

    info = {name: table.column(name).to_numpy() for name in info_names}
    for array in (starts, lengths, *info.values()):
        array.flags.writeable = False
    return starts, lengths, info
