"""DuckDB as a source: a table or query of a DuckDB file, streamed as Arrow batches,
with the partitions and incremental windows of every SQL source.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from agent_orchestrated_etl.connectors.duckdb.client import quote, shared_connection
from agent_orchestrated_etl.connectors.duckdb.spec import DuckDBSourceSpec
from agent_orchestrated_etl.connectors.sql.common import connection_error
from agent_orchestrated_etl.connectors.sql.source import SQLSource
from agent_orchestrated_etl.exceptions import ConfigurationError, SourceNotFoundError


class DuckDBSource(SQLSource[DuckDBSourceSpec]):
    """DuckDB has no SQLAlchemy dialect installed here, so this source talks to duckdb directly."""

    spec_model = DuckDBSourceSpec
    label = "duckdb"

    def describe(self) -> str:
        return f"duckdb {self.spec.path}" + (f" table {self.spec.table}" if self.spec.table else " query")

    def quote(self, name: str) -> str:
        return ".".join(quote(part) for part in name.split("."))

    def literal(self, value: Any) -> str:
        # Values are typed (numbers, dates, timestamps) before they get here; see SQLSource.
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal | dt.date):
            raise ConfigurationError(f"bound {value!r} is not a number, date or timestamp", where=self.where)
        if isinstance(value, dt.datetime):
            return f"TIMESTAMPTZ '{value.isoformat()}'" if value.tzinfo else f"TIMESTAMP '{value.isoformat()}'"
        if isinstance(value, dt.date):
            return f"DATE '{value.isoformat()}'"
        return repr(float(value)) if isinstance(value, float) else str(value)

    def _connection(self) -> Any:
        import duckdb

        path = Path(self.spec.path).expanduser()
        if not path.exists():
            raise SourceNotFoundError(f"database file not found: {path}", where=self.where, hint="check `path:`")
        shared = shared_connection(path)
        if shared is not None:  # this process writes the file too: read through the same database
            return shared.cursor()
        return duckdb.connect(str(path), read_only=True)

    def table_names(self, schema: str | None) -> list[str]:
        return [
            row[0]
            for row in self._rows(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = coalesce(?, current_schema()) ORDER BY 1",
                [schema],
            )
        ]

    def primary_key(self, table: str) -> list[str]:
        schema, _, name = table.rpartition(".")
        found = self._rows(
            "SELECT constraint_column_names FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'"
            " AND database_name = current_database() AND schema_name = coalesce(?, current_schema()) AND table_name = ?",
            [schema or None, name],
        )
        return list(found[0][0]) if found else []

    def _rows(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        import duckdb

        conn = self._connection()
        try:
            return conn.execute(sql, params).fetchall()
        except duckdb.Error as exc:
            raise connection_error(exc, self.url, self.where) from exc
        finally:
            conn.close()

    def _scalar(self, sql: str) -> list[Any]:
        import duckdb

        conn = self._connection()
        try:
            return list(conn.execute(sql).fetchone())
        except duckdb.Error as exc:
            raise connection_error(exc, self.url, self.where) from exc
        finally:
            conn.close()

    def stream(self, sql: str) -> Iterator[pa.RecordBatch]:
        import duckdb

        conn = self._connection()
        try:
            try:
                reader = conn.execute(sql).to_arrow_reader(self.batch_rows)
            except duckdb.Error as exc:
                raise connection_error(exc, self.url, self.where) from exc
            utc = _in_utc(reader.schema)
            for batch in reader:
                yield batch if utc is None else batch.cast(utc)
        finally:
            conn.close()


def _in_utc(schema: pa.Schema) -> pa.Schema | None:
    """The schema with zoned timestamps labelled UTC: DuckDB labels them with the machine's zone
    (the same instants; without the ICU extension, which is not packaged, it cannot be told otherwise)."""
    if not any(pa.types.is_timestamp(f.type) and f.type.tz and f.type.tz != "UTC" for f in schema):
        return None
    return pa.schema(
        [
            f.with_type(pa.timestamp(f.type.unit, tz="UTC")) if pa.types.is_timestamp(f.type) and f.type.tz else f
            for f in schema
        ]
    )
