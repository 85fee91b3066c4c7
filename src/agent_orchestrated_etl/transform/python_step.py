"""``python: module:function`` steps: a user function maps each Arrow record batch to a new one.

The function gets the batch without the engine's hidden columns, plus the step's
``args`` as keyword arguments, and returns a RecordBatch, a Table, or None (no rows).
When it returns as many rows as it got, the rows keep their source positions.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from agent_orchestrated_etl.exceptions import ConfigurationError, DataError
from agent_orchestrated_etl.transform.sql import ROW, is_hidden
from agent_orchestrated_etl.transform.steps import PythonStep

BatchFunction = Callable[..., Any]


def load_function(step: PythonStep, *, where: str) -> BatchFunction:
    module_name, _, name = step.python.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"cannot import {module_name}: {exc}",
            where=where,
            hint="install the module or fix `python:`; it must be importable from the run's Python",
        ) from exc
    function = getattr(module, name, None)
    if not callable(function):
        raise ConfigurationError(
            f"{module_name} has no function {name}", where=where, hint="`python:` is module:function"
        )
    return function


def apply(
    step: PythonStep, batches: Iterator[pa.RecordBatch], *, where: str
) -> tuple[pa.Schema | None, Iterator[pa.RecordBatch]]:
    """The output schema (from the first output, None if there is none) and the output batches."""
    function = load_function(step, where=where)

    def mapped() -> Iterator[pa.RecordBatch]:
        for number, batch in enumerate(batches, start=1):
            visible = batch.select([n for n in batch.schema.names if not is_hidden(n)])
            try:
                result = function(visible, **step.args)
            except Exception as exc:
                raise DataError(
                    f"{step.python} raised {type(exc).__name__}: {exc}",
                    where=f"{where}, batch {number}",
                    hint="fix the function; the run stops so no batch is lost",
                ) from exc
            for out in _batches(result, where=where):
                if ROW in batch.schema.names:
                    # Same number of rows: assume the same rows, which keeps their positions.
                    ordinals = (
                        batch.column(ROW) if out.num_rows == batch.num_rows else pa.nulls(out.num_rows, pa.int64())
                    )
                    out = out.append_column(pa.field(ROW, pa.int64()), ordinals)
                yield out

    stream = mapped()
    first = next(stream, None)
    if first is None:
        return None, iter(())

    def checked() -> Iterator[pa.RecordBatch]:
        yield first
        for out in stream:
            if out.schema != first.schema:
                raise DataError(
                    f"{step.python} returned columns {out.schema.names} ({out.schema.types}) after {first.schema.names} ({first.schema.types})",
                    where=where,
                    hint="return the same schema for every batch",
                )
            yield out

    return first.schema, checked()


def _batches(result: Any, *, where: str) -> list[pa.RecordBatch]:
    if result is None:
        return []
    if isinstance(result, pa.RecordBatch):
        return [result] if result.num_rows else []
    if isinstance(result, pa.Table):
        return [b for b in result.combine_chunks().to_batches() if b.num_rows]
    raise DataError(
        f"the function returned {type(result).__name__}",
        where=where,
        hint="return a pyarrow.RecordBatch, a pyarrow.Table or None",
    )
