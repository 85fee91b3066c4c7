"""How to talk to SQLite: SQLAlchemy (the standard library's driver) for statements, ADBC's ingest for batches."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from agent_orchestrated_etl.connectors.sql.client import SQLAlchemyClient
from agent_orchestrated_etl.connectors.sqlite.spec import database_path
from agent_orchestrated_etl.connectors.sqlite.types import TYPES


class SQLiteClient(SQLAlchemyClient):
    """SQLite: SQLAlchemy (the standard library's driver) for statements, ADBC's ingest for batches."""

    types = TYPES

    def bulk_load(self, table: str, batch: pa.RecordBatch) -> None:
        import adbc_driver_sqlite.dbapi as adbc

        database = database_path(self.url, None)
        database.parent.mkdir(parents=True, exist_ok=True)
        with adbc.connect(str(database)) as conn, conn.cursor() as cursor:
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
