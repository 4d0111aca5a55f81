"""Demonstration datasets: the on-disk format, its writer and its memory-mapped reader."""

from clonekit.data.dataset import Dataset
from clonekit.data.format import (
    ARRAY_DTYPES,
    FORMAT_NAME,
    REQUIRED_STREAMS,
    SCHEMA_VERSION,
    StreamSpec,
    array_stream,
    text_stream,
)
from clonekit.data.spaces import space_from_json, space_to_json
from clonekit.data.writer import DatasetWriter

__all__ = [
    "ARRAY_DTYPES",
    "FORMAT_NAME",
    "REQUIRED_STREAMS",
    "SCHEMA_VERSION",
    "Dataset",
    "DatasetWriter",
    "StreamSpec",
    "array_stream",
    "space_from_json",
    "space_to_json",
    "text_stream",
]
