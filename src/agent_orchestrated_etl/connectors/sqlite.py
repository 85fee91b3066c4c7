"""SQLite as a source and a destination, through ADBC so rows move as Arrow batches.

SQLite stores values, not column types: a column declared DATE holds text.
The destination declares what each column holds (DATE, TIME, TIMESTAMP,
TIMESTAMPTZ, BOOLEAN, JSON, and ``TEXT_DECIMAL(p, s)`` for exact decimals:
the TEXT in the name gives it text affinity, so no digit is rounded through
a float), and the source reads those declarations back into Arrow types.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from agent_orchestrated_etl.connectors.base import ConnectorSpec, DestinationCapabilities, DestinationSpecBase
from agent_orchestrated_etl.connectors.sql.client import SQLAlchemyClient
from agent_orchestrated_etl.connectors.sql.common import SQLDestinationFields, SQLSourceFields
from agent_orchestrated_etl.connectors.sql.destination import SQLDestination
from agent_orchestrated_etl.connectors.sql.source import SQLSource
from agent_orchestrated_etl.connectors.sql.types import TypeTable
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


def _database(url: str | None, path: str | None) -> Path:
    return Path(path if path is not None else url.removeprefix("sqlite:///")).expanduser()  # type: ignore[union-attr]


class SQLiteSourceSpec(ConnectorSpec, SQLSourceFields):
    type: Literal["sqlite"]
    url: str | None = Field(None, description="sqlite:///relative.db or sqlite:////absolute.db")  # type: ignore[assignment]
    path: str | None = Field(None, description="The database file, instead of url.")

    @model_validator(mode="after")
    def _one_of_each(self) -> SQLiteSourceSpec:
        if (self.url is None) == (self.path is None):
            raise ValueError("give exactly one of url or path")
        if self.url is not None and not self.url.startswith("sqlite:///"):
            raise ValueError("url must start with sqlite:/// (e.g. sqlite:///shop.db)")
        return self

    def rebased(self, base: Path) -> SQLiteSourceSpec:
        if self.url is not None and not os.path.isabs(os.path.expanduser(self.url.removeprefix("sqlite:///"))):
            return self.model_copy(update={"url": f"sqlite:///{base / self.url.removeprefix('sqlite:///')}"})
        return super().rebased(base)

    @property
    def database(self) -> Path:
        return _database(self.url, self.path)


class SQLiteSource(SQLSource):
    spec_model = SQLiteSourceSpec
    label = "sqlite"

    @property
    def url(self) -> str:
        return f"sqlite:///{self.spec.database}"

    def describe(self) -> str:
        return f"sqlite {self.spec.database}" + (f" table {self.spec.table}" if self.spec.table else " query")

    def table_names(self, schema: str | None) -> list[str]:
        if not self.spec.database.exists():  # SQLAlchemy would create an empty database
            raise SourceNotFoundError(f"database file not found: {self.spec.database}", where=self.where, hint="check url/path in the spec")
        return super().table_names(schema)

    @cached_property
    def _declared(self) -> dict[str, pa.DataType]:
        """Arrow types from the table's declared column types (a query's columns have none)."""
        if not self.spec.table:
            return {}
        found = {}
        with self._engine().connect() as conn:
            schema, _, table = self.spec.table.rpartition(".")
            pragma = f"PRAGMA {self.quote(schema)}.table_info({self.quote(table)})" if schema else f"PRAGMA table_info({self.quote(table)})"
            for _, name, declared, *_ in conn.exec_driver_sql(pragma):
                declared = (declared or "").upper()
                if match := _DECIMAL.search(declared):
                    precision, scale = int(match.group(1)), int(match.group(2))
                    found[name] = pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
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
            raise DataError(f"column {column} is declared {declared} but holds {value!r}, which is not ISO 8601", where=self.where, hint="store ISO 8601 text (2024-01-02 03:46:40) or CAST it in a query:") from None
        return value

    def stream(self, sql: str) -> Iterator[pa.RecordBatch]:
        import adbc_driver_sqlite.dbapi as adbc

        database = self.spec.database
        if not database.exists():
            raise SourceNotFoundError(f"database file not found: {database}", where=self.where, hint="check url/path in the spec")
        declared = self._declared
        # Open read-only through a URI so a typo never creates an empty database.
        with adbc.connect(f"file:{database}?mode=ro") as conn, conn.cursor() as cursor:
            cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(self.batch_rows)})
            try:
                cursor.execute(sql)
            except Exception as exc:  # the driver raises its own DB-API error classes
                message = str(exc)
                if "no such table" in message:
                    raise SourceNotFoundError(message, where=self.where, hint="check `table:`; `sqlite3 FILE .tables` lists them") from exc
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
            column = pc.cast(pc.cast(pc.utf8_replace_slice(column, 0, 0, "1970-01-01T"), pa.timestamp("us")), pa.time64("us"))
        elif pa.types.is_timestamp(dtype) and dtype.tz and pa.types.is_string(column.type):
            column = pc.cast(pc.cast(column, pa.timestamp("us")), dtype)  # stored in UTC without a zone
        else:
            column = pc.cast(column, dtype)
        columns[i], fields[i] = column, pa.field(name, dtype)
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))


TYPES = TypeTable(
    engine="sqlite",
    title="SQLite",
    columns={
        "bool": "BOOLEAN",
        **dict.fromkeys(("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"), "INTEGER"),
        "float32": "REAL", "float64": "REAL",
        # SQLite has no exact decimal: text affinity (the TEXT in the name) keeps every digit.
        "decimal": "TEXT_DECIMAL({precision}, {scale})",
        "string": "TEXT", "binary": "BLOB",
        "date": "DATE", "time": "TIME", "timestamp": "TIMESTAMP", "timestamptz": "TIMESTAMPTZ",
        "json": "JSON", "uuid": "UUID",
    },
)


class SQLiteDestinationSpec(DestinationSpecBase, SQLDestinationFields):
    type: Literal["sqlite"]
    url: str = Field(description="sqlite:///relative.db or sqlite:////absolute.db; created if missing.")

    def rebased(self, base: Path) -> SQLiteDestinationSpec:
        path = self.url.removeprefix("sqlite:///")
        if not os.path.isabs(os.path.expanduser(path)):
            return self.model_copy(update={"url": f"sqlite:///{base / path}"})
        return self


class SQLiteClient(SQLAlchemyClient):
    """SQLite: SQLAlchemy (the standard library's driver) for statements, ADBC's ingest for batches."""

    types = TYPES

    def bulk_load(self, table: str, batch: pa.RecordBatch) -> None:
        import adbc_driver_sqlite.dbapi as adbc

        database = _database(self.url, None)
        database.parent.mkdir(parents=True, exist_ok=True)
        with adbc.connect(str(database)) as conn, conn.cursor() as cursor:
            cursor.adbc_ingest(table, _storable(batch), mode="append")
            conn.commit()


class SQLiteDestination(SQLDestination):
    spec_model = SQLiteDestinationSpec
    client_class = SQLiteClient
    label = "sqlite"
    seq_expr = "rowid"
    true = "1"
    # One writer at a time: SQLite locks the whole file for a write.
    capabilities = DestinationCapabilities(transactional=True, write_modes=frozenset({"append", "replace", "merge"}), parallel_staging=False)

    def value_limit(self) -> tuple[int, str]:
        return min(super().value_limit(), (1_000_000_000, "SQLite's SQLITE_MAX_LENGTH"))

    def staged_columns(self, inspector: Any, name: str) -> dict[str, dict[str, Any]]:
        # The declared type names carry the Arrow types (TEXT_DECIMAL, TIMESTAMPTZ); reflection would fold them.
        columns = super().staged_columns(inspector, name)
        with self.client.session() as session:
            for _, column, declared, *_ in session.rows(f"PRAGMA table_info({self.q(name)})"):
                if column in columns:
                    columns[column]["ddl"] = declared
        return columns

    def target_type(self, column: dict[str, Any]) -> pa.DataType | None:
        # An INTEGER column holds 64-bit values: int64 data fits the column that int64 data created.
        if type(column["type"]).__name__.upper() == "INTEGER":
            return pa.int64()
        return super().target_type(column)

    def upsert_sql(self, target: str, columns: list[str], source: str) -> str:
        listed = ", ".join(self.q(c) for c in columns)
        keys = ", ".join(self.q(k) for k in self.spec.primary_key)
        updates = [c for c in columns if c not in self.spec.primary_key]
        action = f"DO UPDATE SET {', '.join(f'{self.q(c)} = excluded.{self.q(c)}' for c in updates)}" if updates else "DO NOTHING"
        # `WHERE true` lets SQLite's parser tell the upsert clause from a join constraint.
        return f"INSERT INTO {target} ({listed}) SELECT {listed} FROM ({source}) WHERE true ON CONFLICT ({keys}) {action}"

    def add_key_sql(self, target: dict[str, dict[str, Any]]) -> str:
        # SQLite cannot add a primary key to a table; ON CONFLICT matches a unique index as well.
        return f"CREATE UNIQUE INDEX {self.q(self._name + '__merge_key')} ON {self.q(self.spec.table)} ({', '.join(self.q(k) for k in self.spec.primary_key)})"

    def widen_sql(self, column: str, new_type: str) -> str:
        # SQLite keeps any value in any column: a wider value needs no DDL.
        return "SELECT 1"


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
