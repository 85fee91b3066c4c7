"""How to talk to PostgreSQL: SQLAlchemy (psycopg) for statements, ADBC's binary COPY for batches."""

from __future__ import annotations

import threading
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from agent_orchestrated_etl.connectors.postgres.types import TYPES
from agent_orchestrated_etl.connectors.sql.client import SQLAlchemyClient
from agent_orchestrated_etl.exceptions import MissingDependencyError


def libpq_url(url: str) -> str:
    """ADBC takes a libpq URI: no SQLAlchemy driver suffix."""
    head, _, rest = url.partition("://")
    return f"postgresql://{rest}" if head.lower().startswith("postgres") else url


def adbc_dbapi() -> Any:
    try:
        import adbc_driver_postgresql.dbapi as adbc
    except ImportError:
        raise MissingDependencyError("PostgreSQL", "postgres") from None
    return adbc


class PostgresClient(SQLAlchemyClient):
    """PostgreSQL: SQLAlchemy (psycopg) for statements, ADBC's binary COPY for batches, a connection per thread."""

    types = TYPES

    def __init__(self, url: str, *, schema: str | None, where: str) -> None:
        super().__init__(url, schema=schema, where=where)
        self._local = threading.local()
        self._connections: list[Any] = []

    def _adbc_connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = adbc_dbapi().connect(libpq_url(self.url))
            self._connections.append(conn)
        return conn

    def bulk_load(self, table: str, batch: pa.RecordBatch) -> None:
        conn = self._adbc_connection()
        with conn.cursor() as cursor:
            cursor.adbc_ingest(table, _ingestable(batch), mode="append", db_schema_name=self.schema)
        conn.commit()


def _ingestable(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Cast the types binary COPY cannot send as they are (unsigned, dictionary) to ones it can."""
    changed = False
    columns, fields = [], []
    for column, field in zip(batch.columns, batch.schema, strict=True):
        dtype = field.type
        target = None
        if pa.types.is_dictionary(dtype):
            target = dtype.value_type
        elif pa.types.is_unsigned_integer(dtype):
            target = {8: pa.int16(), 16: pa.int32(), 32: pa.int64(), 64: pa.decimal128(20, 0)}[dtype.bit_width]
        if target is not None:
            column, field, changed = pc.cast(column, target), pa.field(field.name, target), True
        columns.append(column)
        fields.append(field)
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields)) if changed else batch
