"""SQLite as a source and a destination, through ADBC so rows move as Arrow batches.

SQLite stores values, not column types: a column declared DATE holds text.
The destination declares what each column holds (DATE, TIME, TIMESTAMP,
TIMESTAMPTZ, BOOLEAN, JSON, and ``TEXT_DECIMAL(p, s)`` for exact decimals:
the TEXT in the name gives it text affinity, so no digit is rounded through
a float), and the source reads those declarations back into Arrow types.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from functools import cached_property
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from agent_orchestrated_etl.connectors.sql.source import SQLSource
from agent_orchestrated_etl.connectors.sqlite.spec import SQLiteSourceSpec
from agent_orchestrated_etl.exceptions import ConfigurationError, DataError, SourceNotFoundError

_DECIMAL = re.compile(r"DECIMAL\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)", re.IGNORECASE)


_DECLARED: dict[str, pa.DataType] = {
    "BOOLEAN": pa.bool_(),
    "DATE": pa.date32(),
    "TIME": pa.time64("us"),
    "TIMESTAMP": pa.timestamp("us"),
    "DATETIME": pa.timestamp("us"),
    "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
    "JSON": pa.json_(pa.string()),
}


class SQLiteSource(SQLSource[SQLiteSourceSpec]):
    spec_model = SQLiteSourceSpec
    label = "sqlite"

    def describe(self) -> str:
        return f"sqlite {self.spec.database}" + (f" table {self.spec.table}" if self.spec.table else " query")

    def table_names(self, schema: str | None) -> list[str]:
        if not self.spec.database.exists():  # SQLAlchemy would create an empty database
            raise SourceNotFoundError(
                f"database file not found: {self.spec.database}", where=self.where, hint="check url/path in the spec"
            )
        return super().table_names(schema)

    @cached_property
    def _declared(self) -> dict[str, pa.DataType]:
        """Arrow types from the table's declared column types (a query's columns have none)."""
        if not self.spec.table:
            return {}
        found = {}
        with self._engine().connect() as conn:
            schema, _, table = self.spec.table.rpartition(".")
            pragma = (
                f"PRAGMA {self.quote(schema)}.table_info({self.quote(table)})"
                if schema
                else f"PRAGMA table_info({self.quote(table)})"
            )
            for _, name, declared, *_ in conn.exec_driver_sql(pragma):
                declared = (declared or "").upper()
                if match := _DECIMAL.search(declared):
                    precision, scale = int(match.group(1)), int(match.group(2))
                    found[name] = (
                        pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
                    )
                elif declared in _DECLARED:
                    found[name] = _DECLARED[declared]
        return found

    def bound(self, column: str, value: Any) -> Any:
        # SQLite keeps a DATE or TIMESTAMP column's values as ISO text; its declared type says what they are.
        declared = self._declared.get(column)
        if not isinstance(value, str) or declared is None:
            return value
        try:
            if pa.types.is_timestamp(declared):
                parsed = dt.datetime.fromisoformat(value)
                return parsed.astimezone(dt.UTC).replace(tzinfo=None) if parsed.tzinfo else parsed
            if pa.types.is_date(declared):
                return dt.date.fromisoformat(value)
        except ValueError:
            raise DataError(
                f"column {column} is declared {declared} but holds {value!r}, which is not ISO 8601",
                where=self.where,
                hint="store ISO 8601 text (2024-01-02 03:46:40) or CAST it in a query:",
            ) from None
        return value

    def stream(self, sql: str) -> Iterator[pa.RecordBatch]:
        import adbc_driver_sqlite.dbapi as adbc

        database = self.spec.database
        if not database.exists():
            raise SourceNotFoundError(
                f"database file not found: {database}", where=self.where, hint="check url/path in the spec"
            )
        declared = self._declared
        # Open read-only through a URI so a typo never creates an empty database.
        with adbc.connect(f"file:{database}?mode=ro") as conn, conn.cursor() as cursor:
            cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(self.batch_rows)})
            try:
                cursor.execute(sql)
            except Exception as exc:  # the driver raises its own DB-API error classes
                message = str(exc)
                if "no such table" in message:
                    raise SourceNotFoundError(
                        message, where=self.where, hint="check `table:`; `sqlite3 FILE .tables` lists them"
                    ) from exc
                raise ConfigurationError(message, where=self.where, hint="check `query:`") from exc
            try:
                for batch in cursor.fetch_record_batch():
                    yield _typed(batch, declared) if declared else batch
            except pa.ArrowInvalid as exc:
                # SQLite lets a column hold several types; ADBC fixes a column's type from the first batch.
                raise DataError(str(exc), where=self.where, hint="CAST the column in a query: source") from exc


def _typed(batch: pa.RecordBatch, declared: dict[str, pa.DataType]) -> pa.RecordBatch:
    columns, fields = list(batch.columns), list(batch.schema)
    for name, dtype in declared.items():
        i = batch.schema.get_field_index(name)
        if i < 0:
            continue
        column = columns[i]
        if column.null_count == len(column):  # ADBC guesses a type for an all-NULL batch; any type holds nulls
            column = pa.nulls(len(column), dtype)
        elif isinstance(dtype, pa.BaseExtensionType):
            column = pa.ExtensionArray.from_storage(dtype, pc.cast(column, dtype.storage_type))
        elif pa.types.is_time(dtype) and pa.types.is_string(column.type):
            column = pc.cast(
                pc.cast(pc.utf8_replace_slice(column, 0, 0, "1970-01-01T"), pa.timestamp("us")), pa.time64("us")
            )
        elif pa.types.is_timestamp(dtype) and dtype.tz and pa.types.is_string(column.type):
            column = pc.cast(pc.cast(column, pa.timestamp("us")), dtype)  # stored in UTC without a zone
        else:
            column = pc.cast(column, dtype)
        columns[i], fields[i] = column, pa.field(name, dtype)
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))
