"""PostgreSQL as a source and a destination, through ADBC's binary COPY in both directions.

Reading: ADBC streams ``COPY (SELECT ...) TO STDOUT (FORMAT binary)`` into
Arrow batches. Before the first read the source looks up each column's type
in ``pg_type``: enums and char(n) are cast to text in the SELECT (char(n)
without its pad spaces, as DuckDB's own copy reads it), NUMERIC(p, s) arrives
from ADBC as text and is cast to ``decimal128(p, s)`` here, and a type Arrow
cannot hold is refused up front with the cast to use.

Writing: batches go into staging tables with ADBC's bulk ingest (binary COPY
FROM STDIN); the shared SQL destination publishes them with MERGE, TRUNCATE
and INSERT inside one transaction.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from functools import cached_property
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from agent_orchestrated_etl.connectors.base import Attachment, ConnectorSpec, DestinationSpecBase, EngineScan, Partition
from agent_orchestrated_etl.connectors.sql.client import SQLAlchemyClient
from agent_orchestrated_etl.connectors.sql.common import SQLDestinationFields, SQLSourceFields, connection_error
from agent_orchestrated_etl.connectors.sql.destination import SQLDestination
from agent_orchestrated_etl.connectors.sql.source import SQLSource
from agent_orchestrated_etl.connectors.sql.types import TypeTable, cast_columns
from agent_orchestrated_etl.exceptions import DataError, MissingDependencyError

# Types ADBC turns into plain Arrow types (arrays of them too).
_NATIVE = {
    "int2", "int4", "int8", "float4", "float8", "text", "varchar", "bpchar", "name", "char", "bool", "date", "time",
    "timestamp", "timestamptz", "interval", "json", "jsonb", "uuid", "bytea", "oid",
}
_CASTS = {"money": "numeric(19, 2)", "numeric": "numeric(38, 9)"}
# Below any real value: PostgreSQL's dates start in 4713 BC (-2.2e17 microseconds, -2.5e6 days).
_WRAPPED_INFINITY = {pa.int64(): -(1 << 62), pa.int32(): -(1 << 30)}


def libpq_url(url: str) -> str:
    """ADBC takes a libpq URI: no SQLAlchemy driver suffix."""
    head, _, rest = url.partition("://")
    return f"postgresql://{rest}" if head.lower().startswith("postgres") else url


def _adbc() -> Any:
    try:
        import adbc_driver_postgresql.dbapi as adbc
    except ImportError:
        raise MissingDependencyError("PostgreSQL", "postgres") from None
    return adbc


class PostgresSourceSpec(ConnectorSpec, SQLSourceFields):
    type: Literal["postgres"]


class PostgresSource(SQLSource):
    spec_model = PostgresSourceSpec
    label = "postgres"

    def quote(self, name: str) -> str:
        # Always quoted: a pushed-down copy runs this SQL in DuckDB, whose reserved words
        # (BY, ...) PostgreSQL's quoting rules leave bare.
        return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))

    @cached_property
    def _layout(self) -> tuple[str, dict[str, pa.DataType], list[str], list[str]]:
        """The SELECT list (with casts), the decimal type of each NUMERIC column, the date and timestamp columns, and the JSON columns."""
        with self._engine().connect() as conn:
            result = conn.exec_driver_sql(self.raw(f"SELECT * FROM {self.relation()} LIMIT 0"))
            described = result.cursor.description
            oids = sorted({d.type_code for d in described})
            types = {
                row[0]: row[1:]
                for row in conn.exec_driver_sql(
                    "SELECT t.oid, t.typname, t.typtype, e.typname, e.typtype FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'"
                    " WHERE t.oid = ANY(%s)",
                    (oids,),
                )
            }
        listed: list[str] = []
        decimals: dict[str, pa.DataType] = {}
        temporal: list[str] = []
        json: list[str] = []
        for d in described:
            name, (typname, typtype, elem, elemtype) = d.name, types[d.type_code]
            column = self.quote(name)
            if typtype == "e":
                listed.append(f"{column}::text AS {column}")
            elif elemtype == "e":
                listed.append(f"{column}::text[] AS {column}")
            elif "bpchar" in (typname, elem):
                # char(n)'s trailing pad spaces are not data (PostgreSQL's comparisons ignore them, and
                # DuckDB's scanner drops them): its cast to text drops them on every path alike.
                listed.append(f"{column}::text{'[]' if elem else ''} AS {column}")
            elif typname == "numeric" and d.precision is not None:
                # ADBC hands NUMERIC over as text in an opaque extension type; the declared precision makes it exact.
                decimals[name] = pa.decimal128(d.precision, d.scale or 0) if d.precision <= 38 else pa.decimal256(d.precision, d.scale or 0)
                listed.append(column)
            elif typname in _NATIVE or (elem is not None and elem in _NATIVE):
                listed.append(column)
                if typname in ("date", "timestamp", "timestamptz"):
                    temporal.append(name)
                elif typname in ("json", "jsonb"):
                    json.append(name)
            else:
                cast = _CASTS.get(typname, "text")
                why = "it has no declared precision" if typname == "numeric" else f"PostgreSQL type {typname} has no Arrow mapping"
                raise DataError(
                    f"column {name}: {why}",
                    where=self.where,
                    hint=f"read it through query: with CAST({name} AS {cast}) AS {name}",
                )
        return ", ".join(listed), decimals, temporal, json

    def columns(self) -> str:
        try:
            return self._layout[0]
        except DataError:
            raise
        except Exception as exc:
            raise connection_error(exc, self.spec.url, self.where) from exc

    def engine_scan(self, engine: str, partition: Partition) -> EngineScan | None:
        """DuckDB reads PostgreSQL through its postgres extension: binary COPY straight into its table.

        A table is scanned through the attached database (DuckDB splits the scan
        over its threads by page ranges, and pushes the partition's filters down);
        a query runs in PostgreSQL as it is (``postgres_query``). Both use this
        source's own SELECT list, so the columns are those the Arrow path reads.
        """
        if engine != "duckdb":
            return None
        self.columns()  # the layout, with a failure to read it classified as on the Arrow path
        alias = "_aetl_pg_" + hashlib.sha1(self.spec.url.encode()).hexdigest()[:8]
        # The scanner reads json and jsonb as VARCHAR; the Arrow path stores them as JSON.
        as_json = ", ".join(f"{self.quote(c)}::JSON AS {self.quote(c)}" for c in self._layout[3])
        listed = f"* REPLACE ({as_json})" if as_json else "*"
        attach = Attachment(kind="postgres", dsn=libpq_url(self.spec.url), alias=alias)
        if self.spec.table:
            inner = self.select(self.predicates(partition), relation=f"{alias}.{self.quote(self.spec.table)}")
            return EngineScan(f"SELECT {listed} FROM ({inner})", self.where, attach=attach, errors_url=self.spec.url)
        return EngineScan(
            f"SELECT {listed} FROM postgres_query('{alias}', ?)", self.where, params=(self.sql_for(partition),),
            attach=attach, errors_url=self.spec.url,
        )

    def stream(self, sql: str) -> Iterator[pa.RecordBatch]:
        _, decimals, temporal, _ = self._layout
        adbc = _adbc()
        with adbc.connect(libpq_url(self.spec.url)) as conn, conn.cursor() as cursor:
            cursor.execute(sql)
            for batch in cursor.fetch_record_batch():
                self._refuse_infinity(batch, temporal)
                yield cast_columns(batch, decimals) if decimals else batch

    def _refuse_infinity(self, batch: pa.RecordBatch, temporal: list[str]) -> None:
        # PostgreSQL's ±infinity has no Arrow value; the driver's epoch shift wraps it
        # around to a date near the int64 minimum, which would load as year 290279 BC.
        for name in temporal:
            column = batch.column(name)
            raw = column.view(pa.int64() if pa.types.is_timestamp(column.type) else pa.int32())
            lowest = pc.min(raw).as_py()
            if lowest is not None and lowest < _WRAPPED_INFINITY[raw.type]:
                raise DataError(
                    f"column {name} holds infinity or -infinity, which no Arrow {column.type} can hold",
                    where=self.where,
                    hint=f"read it through query: with CASE WHEN isfinite({name}) THEN {name} END AS {name} to load them as NULL, or set retry.on_bad_data: quarantine",
                )


TYPES = TypeTable(
    engine="postgresql",
    title="PostgreSQL",
    columns={
        "bool": "BOOLEAN",
        "int8": "SMALLINT", "int16": "SMALLINT", "int32": "INTEGER", "int64": "BIGINT",
        # Unsigned values need one bit more than the signed type of their width.
        "uint8": "SMALLINT", "uint16": "INTEGER", "uint32": "BIGINT", "uint64": "NUMERIC(20, 0)",
        "float32": "REAL", "float64": "DOUBLE PRECISION",
        "decimal": "NUMERIC({precision}, {scale})",
        "string": "TEXT", "binary": "BYTEA",
        "date": "DATE", "time": "TIME", "timestamp": "TIMESTAMP", "timestamptz": "TIMESTAMPTZ", "interval": "INTERVAL",
        "json": "JSONB", "uuid": "UUID",
        "list": "{item}[]",  # a list of scalars; nested lists and structs have no column type
    },
)


class PostgresDestinationSpec(DestinationSpecBase, SQLDestinationFields):
    type: Literal["postgres"]


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
            conn = self._local.conn = _adbc().connect(libpq_url(self.url))
            self._connections.append(conn)
        return conn

    def bulk_load(self, table: str, batch: pa.RecordBatch) -> None:
        conn = self._adbc_connection()
        with conn.cursor() as cursor:
            cursor.adbc_ingest(table, _ingestable(batch), mode="append", db_schema_name=self.schema)
        conn.commit()


class PostgresDestination(SQLDestination):
    spec_model = PostgresDestinationSpec
    client_class = PostgresClient
    label = "postgres"
    seq_ddl = "BIGINT GENERATED ALWAYS AS IDENTITY"

    def unstorable(self, batch: pa.RecordBatch) -> list[str | None] | None:
        # PostgreSQL text (and json) cannot hold a NUL byte: COPY would refuse the whole batch.
        reasons: list[str | None] | None = None
        for column, field in zip(batch.columns, batch.schema, strict=True):
            values = column.storage if isinstance(column, pa.ExtensionArray) else column
            if pa.types.is_dictionary(values.type):
                values = values.dictionary_decode()
            if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
                continue
            nul = pc.fill_null(pc.match_substring(values, "\x00"), False)
            if pc.any(nul).as_py():
                reasons = reasons or [None] * batch.num_rows
                for i in pc.indices_nonzero(nul).to_pylist():
                    reasons[i] = reasons[i] or f"column {field.name} holds a NUL byte (\\x00), which PostgreSQL text cannot store"
        return reasons

    def clear_sql(self, target: str) -> str:
        return f"TRUNCATE TABLE {target}"

    def value_limit(self) -> tuple[int, str]:
        return min(super().value_limit(), ((1 << 30) - 1, "PostgreSQL's 1 GB field size"))

    def upsert_sql(self, target: str, columns: list[str], source: str) -> str:
        on = " AND ".join(f"t.{self.q(k)} = s.{self.q(k)}" for k in self.spec.primary_key)
        updates = [c for c in columns if c not in self.spec.primary_key]
        matched = f"UPDATE SET {', '.join(f'{self.q(c)} = s.{self.q(c)}' for c in updates)}" if updates else "DO NOTHING"
        listed = ", ".join(self.q(c) for c in columns)
        values = ", ".join(f"s.{self.q(c)}" for c in columns)
        return f"MERGE INTO {target} AS t USING ({source}) AS s ON {on} WHEN MATCHED THEN {matched} WHEN NOT MATCHED THEN INSERT ({listed}) VALUES ({values})"


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


