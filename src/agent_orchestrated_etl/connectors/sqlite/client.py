"""How to talk to SQLite: SQLAlchemy (the standard library's driver) for statements, ADBC's ingest for batches."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from agent_orchestrated_etl.connectors.sql.client import SQLAlchemyClient, SQLAlchemySession
from agent_orchestrated_etl.connectors.sqlite.spec import database_path
from agent_orchestrated_etl.connectors.sqlite.types import TYPES

# SQLite takes one writer per file, and the two drivers' connections (ADBC's ingest, SQLAlchemy's
# statements) do not wait for each other: two destinations of one run writing into one file failed
# with "database is locked". Our own writers take turns on a lock per file (other processes are
# waited for by the standard library's busy timeout, 5 s). The turns also keep the two SQLite libraries in this process
# (the standard library's and ADBC's) from holding locks on one file at once: POSIX locks belong to
# the process, so one library closing the file would drop the other's.
_FILE_LOCKS: dict[Path, threading.RLock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def _file_lock(database: Path) -> threading.RLock:
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(database.resolve(), threading.RLock())


class SQLiteClient(SQLAlchemyClient):
    """SQLite: SQLAlchemy (the standard library's driver) for statements, ADBC's ingest for batches."""

    types = TYPES

    def __init__(self, url: str, *, schema: str | None, where: str) -> None:
        super().__init__(url, schema=schema, where=where)
        self.database = database_path(url, None)
        self._lock = _file_lock(self.database)

    @contextmanager
    def session(self) -> Iterator[SQLAlchemySession]:
        with self._lock, super().session() as session:
            yield session

    @contextmanager
    def transaction(self) -> Iterator[SQLAlchemySession]:
        with self._lock, super().transaction() as session:
            yield session

    def bulk_load(self, table: str, batch: pa.RecordBatch) -> None:
        import adbc_driver_sqlite.dbapi as adbc

        self.database.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, adbc.connect(str(self.database)) as conn, conn.cursor() as cursor:
            cursor.adbc_ingest(table, _storable(batch), mode="append")
            conn.commit()


def _storable(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Values as SQLite stores them: text for times, decimals and UTC timestamps (ISO 8601)."""
    columns, fields, changed = [], [], False
    for column, field in zip(batch.columns, batch.schema, strict=True):
        dtype = field.type
        if getattr(dtype, "extension_name", None) == "arrow.uuid":
            # Arrow cannot format a UUID as text; these columns take the slow road through Python.
            column = pa.array([None if v is None else str(v) for v in column.to_pylist()], pa.string())
        elif isinstance(dtype, pa.BaseExtensionType):
            column = pc.cast(column.storage, pa.string())
        elif pa.types.is_time(dtype) or pa.types.is_decimal(dtype):
            column = pc.cast(column, pa.string())
        elif pa.types.is_timestamp(dtype) and dtype.tz:
            column = pc.cast(column, pa.timestamp(dtype.unit))
        elif pa.types.is_dictionary(dtype):
            column = pc.cast(column, dtype.value_type)
        else:
            columns.append(column)
            fields.append(field)
            continue
        changed = True
        columns.append(column)
        fields.append(pa.field(field.name, column.type))
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields)) if changed else batch
