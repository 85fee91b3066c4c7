"""Python objects bound under a ref for a run, and how each kind of object streams as Arrow batches.

The spec names the data (``ref``); the object itself never enters the spec, the
store or a hub message, so a ``type: python`` source is read only by ETL agents
of the process that bound it (the embedded default). Dicts are converted a
batch at a time with the widening schema of JSON sources (``nested.py``), so an
iterable or a generator is never materialised; Arrow tables and DataFrames are
sliced into batches of ``batch_rows``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Any

import pyarrow as pa

from agent_orchestrated_etl.connectors.nested import RecordsToArrow, Rejected
from agent_orchestrated_etl.exceptions import ConfigurationError, FatalError

_FRESH = "pass a list, a DataFrame or a function returning a fresh iterator (sources={'rows': lambda: read()})"


@dataclass
class _Binding:
    data: Any
    holders: int = 1
    #: A one-shot iterator that a read has started: a second read (a retry, a resume) would miss its rows.
    consumed: bool = False


_bindings: dict[str, _Binding] = {}
_lock = threading.Lock()


@contextmanager
def bind(data: Mapping[str, Any]) -> Iterator[None]:
    """Make each object readable as ``type: python`` with ``ref`` its key, for the duration of the block."""
    with _lock:
        for ref, value in data.items():
            held = _bindings.get(ref)
            if held is not None and held.data is not value:
                raise ConfigurationError(
                    f"another run in this process holds different Python data under ref {ref!r}",
                    where=f"python source {ref}",
                    hint="give this data another ref, or wait for that run to finish",
                )
        for ref, value in data.items():
            if ref in _bindings:
                _bindings[ref].holders += 1
            else:
                _bindings[ref] = _Binding(value)
    try:
        yield
    finally:
        with _lock:
            for ref in data:
                held = _bindings[ref]
                held.holders -= 1
                if held.holders == 0:
                    del _bindings[ref]


def bound(ref: str) -> Any:
    """The object bound under ``ref``; raises ConfigurationError naming how to bind it."""
    with _lock:
        held = _bindings.get(ref)
    if held is None:
        raise ConfigurationError(
            f"no Python data is bound under ref {ref!r} in this process",
            where=f"python source {ref}",
            hint=(
                f"run the pipeline from Python with the data: Pipeline.from_yaml(text, data={{{ref!r}: rows}}).run();"
                " `agent-etl run` and a remote `agent-etl worker` cannot read Python objects"
            ),
        )
    return held.data


def one_shot(data: Any) -> bool:
    """Whether reading ``data`` uses it up (a generator, an iterator, a RecordBatchReader)."""
    return isinstance(data, pa.RecordBatchReader) or (isinstance(data, Iterator) and iter(data) is data)


def claim(ref: str) -> Any:
    """The object to read for ``ref`` now: a factory is called afresh; a one-shot iterator is read once only."""
    data = bound(ref)
    if callable(data) and not isinstance(data, type) and not _readable(data):
        return data()
    if one_shot(data):
        with _lock:
            held = _bindings[ref]
            if held.consumed:
                raise FatalError(
                    "this Python iterator was read by an earlier attempt, so its first rows are gone",
                    where=f"python source {ref}",
                    hint=_FRESH,
                )
            held.consumed = True
    return data


def _readable(data: Any) -> bool:
    return isinstance(data, Iterable) or hasattr(data, "__arrow_c_stream__")


@dataclass
class Chunk:
    """One batch (None when every row of the chunk was rejected), its rejected rows, and its first row's index."""

    batch: pa.RecordBatch | None
    rejected: list[Rejected]
    start: int


def chunks(data: Any, batch_rows: int, records: RecordsToArrow, where: str) -> Iterator[Chunk]:
    """``data`` as batches of at most ``batch_rows`` rows, in order."""
    start = 0
    for batch, rejected, rows in _batches(data, batch_rows, records, where):
        yield Chunk(batch, rejected, start)
        start += rows


def _batches(
    data: Any, batch_rows: int, records: RecordsToArrow, where: str
) -> Iterator[tuple[pa.RecordBatch | None, list[Rejected], int]]:
    pandas = sys.modules.get("pandas")  # only a DataFrame the user made: pandas is imported already then
    if pandas is not None and isinstance(data, pandas.DataFrame):
        # One schema for the whole frame: a chunk of only None in an object column would infer null.
        schema = pa.Schema.from_pandas(data, preserve_index=False)
        for offset in range(0, len(data), batch_rows):
            chunk = data.iloc[offset : offset + batch_rows]
            yield pa.RecordBatch.from_pandas(chunk, schema=schema, preserve_index=False), [], len(chunk)
        return
    if isinstance(data, pa.Table | pa.RecordBatch):
        yield from _sliced([data], batch_rows)
        return
    if isinstance(data, pa.RecordBatchReader) or (hasattr(data, "__arrow_c_stream__") and not isinstance(data, list)):
        # The Arrow PyCapsule stream: Polars and DuckDB relations, among others, without importing them.
        reader = data if isinstance(data, pa.RecordBatchReader) else pa.RecordBatchReader.from_stream(data)
        yield from _sliced(reader, batch_rows)
        return
    if isinstance(data, str | bytes | Mapping) or not isinstance(data, Iterable):
        raise ConfigurationError(
            f"cannot read a {type(data).__name__} as rows",
            where=where,
            hint="give an iterable of dicts or of Arrow record batches, an Arrow table, or a pandas or Polars DataFrame",
        )
    items = iter(data)
    while chunk := list(islice(items, batch_rows)):
        arrow = [item for item in chunk if isinstance(item, pa.Table | pa.RecordBatch)]
        if arrow and len(arrow) != len(chunk):
            raise ConfigurationError(
                "the iterable mixes Arrow batches with other items", where=where, hint="give only dicts or only batches"
            )
        if arrow:
            yield from _sliced(arrow, batch_rows)
            continue
        batch, rejected = records.convert(chunk)
        yield batch, rejected, len(chunk)


def _sliced(
    tables: Iterable[pa.Table | pa.RecordBatch], batch_rows: int
) -> Iterator[tuple[pa.RecordBatch, list[Rejected], int]]:
    for table in tables:
        batches = table.to_batches(max_chunksize=batch_rows) if isinstance(table, pa.Table) else [table]
        for batch in batches:
            for offset in range(0, batch.num_rows, batch_rows):
                piece = batch.slice(offset, batch_rows)
                yield piece, [], piece.num_rows
