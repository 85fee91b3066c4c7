"""Run one compiled query in the workspace, over Arrow streams registered as its inputs.

DuckDB pulls the input batches itself (from its own threads), so a Python error
in the producer (a source that fails, a cancelled run) would reach us as a DuckDB
error; the original is kept and raised instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pyarrow as pa

from agent_orchestrated_etl.exceptions import AgentETLError, DataError
from agent_orchestrated_etl.transform.sql import ident
from agent_orchestrated_etl.transform.workspace import Workspace


class _Capture:
    def __init__(self) -> None:
        self.error: BaseException | None = None

    def wrap(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        try:
            yield from batches
        except BaseException as exc:
            self.error = exc
            raise


def run_query(
    workspace: Workspace,
    sql: str,
    *,
    inputs: dict[str, tuple[pa.Schema, Iterator[pa.RecordBatch]]],
    variables: dict[str, str],
    batch_rows: int,
    where: str,
) -> Iterator[pa.RecordBatch]:
    """Stream the result of ``sql``; ``inputs`` are registered by name as single-pass readers."""
    capture = _Capture()
    cursor = workspace.cursor()
    try:
        for name, value in variables.items():
            cursor.execute(f"SET VARIABLE {ident(name)} = ?", [value])
        for name, (schema, batches) in inputs.items():
            cursor.register(name, pa.RecordBatchReader.from_batches(schema, capture.wrap(batches)))
        yield from cursor.execute(sql).to_arrow_reader(batch_rows)
    except duckdb.Error as exc:
        if capture.error is not None:
            raise capture.error from None
        raise query_error(exc, where) from exc
    finally:
        cursor.close()


def stage(workspace: Workspace, table: str, schema: pa.Schema, batches: Iterator[pa.RecordBatch], *, where: str) -> int:
    """(Re)create ``table`` in the workspace from a stream of batches, in one statement; returns its rows."""
    capture = _Capture()
    cursor = workspace.cursor()
    try:
        cursor.execute(f"DROP TABLE IF EXISTS {ident(table)}")
        cursor.register("_agent_etl_input", pa.RecordBatchReader.from_batches(schema, capture.wrap(batches)))
        cursor.execute(f"CREATE TABLE {ident(table)} AS SELECT * FROM _agent_etl_input")
        return int(cursor.execute(f"SELECT count(*) FROM {ident(table)}").fetchall()[0][0])
    except duckdb.Error as exc:
        if capture.error is not None:
            raise capture.error from None
        raise query_error(exc, where) from exc
    finally:
        cursor.close()


def query_error(exc: duckdb.Error, where: str) -> AgentETLError:
    message = str(exc).splitlines()[0]
    if isinstance(exc, duckdb.ConversionException):
        return DataError(
            message, where=where, hint="a strict cast fails the run; `mode: safe` turns such values into nulls"
        )
    if isinstance(exc, duckdb.PermissionException):
        return DataError(
            message,
            where=where,
            hint="transforms run sandboxed: no files, network, ATTACH or extensions; read data through a source",
        )
    if isinstance(exc, duckdb.OutOfMemoryException):
        return DataError(
            message, where=where, hint="raise AGENT_ETL_MEMORY_LIMIT; DuckDB spills most operators but not all"
        )
    return DataError(message, where=where, hint="check the transform against its input data")
