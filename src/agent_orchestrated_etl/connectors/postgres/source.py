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
from collections.abc import Iterator
from functools import cached_property

import pyarrow as pa
import pyarrow.compute as pc

from agent_orchestrated_etl.connectors.base import Attachment, EngineScan, Partition
from agent_orchestrated_etl.connectors.postgres.client import adbc_dbapi, libpq_url
from agent_orchestrated_etl.connectors.postgres.spec import PostgresSourceSpec
from agent_orchestrated_etl.connectors.sql.source import SQLSource
from agent_orchestrated_etl.connectors.sql.types import cast_columns
from agent_orchestrated_etl.exceptions import AgentETLError, DataError

# Types ADBC turns into plain Arrow types (arrays of them too).
_NATIVE = {
    "int2",
    "int4",
    "int8",
    "float4",
    "float8",
    "text",
    "varchar",
    "bpchar",
    "name",
    "char",
    "bool",
    "date",
    "time",
    "timestamp",
    "timestamptz",
    "interval",
    "json",
    "jsonb",
    "uuid",
    "bytea",
    "oid",
}


_CASTS = {"money": "numeric(19, 2)", "numeric": "numeric(38, 9)"}


# Below any real value: PostgreSQL's dates start in 4713 BC (-2.2e17 microseconds, -2.5e6 days).
_WRAPPED_INFINITY = {pa.int64(): -(1 << 62), pa.int32(): -(1 << 30)}


# A typical row's bytes in binary COPY, to turn the batch size in rows into the driver's hint in bytes.
_ROW_BYTES = 128


class PostgresSource(SQLSource[PostgresSourceSpec]):
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
                    "SELECT t.oid, t.typname, t.typtype, e.typname, e.typtype FROM pg_type t LEFT JOIN pg_type e ON"
                    " e.oid = t.typelem AND t.typcategory = 'A' WHERE t.oid = ANY(%s)",
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
                decimals[name] = (
                    pa.decimal128(d.precision, d.scale or 0)
                    if d.precision <= 38
                    else pa.decimal256(d.precision, d.scale or 0)
                )
                listed.append(column)
            elif typname in _NATIVE or (elem is not None and elem in _NATIVE):
                listed.append(column)
                if typname in ("date", "timestamp", "timestamptz"):
                    temporal.append(name)
                elif typname in ("json", "jsonb"):
                    json.append(name)
            else:
                cast = _CASTS.get(typname, "text")
                why = (
                    "it has no declared precision"
                    if typname == "numeric"
                    else f"PostgreSQL type {typname} has no Arrow mapping"
                )
                raise DataError(
                    f"column {name}: {why}",
                    where=self.where,
                    hint=f"read it through query: with CAST({name} AS {cast}) AS {name}",
                )
        return ", ".join(listed), decimals, temporal, json

    def select_list(self) -> str:
        return self._layout[0]

    def pushdown_blocker(self) -> str | None:
        """A NUMERIC column holding NaN or ±Infinity keeps the copy on the Arrow path.

        DuckDB's postgres scanner reads those values as 0 without a word (seen with
        DuckDB 1.5.5), where the Arrow path refuses them and the recovery sets their
        range aside with the reason.
        """
        if self._holds_special_numerics:
            return "a NUMERIC column holds NaN or Infinity, which DuckDB's postgres scanner reads as 0"
        return None

    @cached_property
    def _holds_special_numerics(self) -> bool:
        """Asked once per source: it costs the server a scan of the NUMERIC columns (none without one),
        and the planner asks for every destination the source feeds."""
        try:
            self.columns()
            decimals = list(self._layout[1])
            if not decimals:
                return False
            special = " OR ".join(f"{self.quote(c)} IN ('NaN', 'Infinity', '-Infinity')" for c in decimals)
            [found] = self._scalar(f"SELECT EXISTS (SELECT 1 FROM {self.relation()} WHERE {special})")
        except AgentETLError:
            return False  # a column no path can read, or the server gone: the task meets it and reports it
        return bool(found)

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
            f"SELECT {listed} FROM postgres_query('{alias}', ?)",
            self.where,
            params=(self.sql_for(partition),),
            attach=attach,
            errors_url=self.spec.url,
        )

    def stream(self, sql: str) -> Iterator[pa.RecordBatch]:
        _, decimals, temporal, _ = self._layout
        adbc = adbc_dbapi()
        with adbc.connect(libpq_url(self.spec.url)) as conn, conn.cursor() as cursor:
            # The driver cuts batches by bytes of COPY data (16 MB by default, whatever the batch
            # size); scaled to AGENT_ETL_BATCH_ROWS, a smaller batch size lowers its buffer too.
            hint = min(max(self.batch_rows * _ROW_BYTES, 1 << 16), 1 << 26)
            cursor.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(hint)})
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
                    hint=(
                        f"read it through query: with CASE WHEN isfinite({name}) THEN {name} END AS {name} to load them"
                        " as NULL, or set retry.on_bad_data: quarantine"
                    ),
                )
