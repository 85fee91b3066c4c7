"""MySQL and MariaDB as a source (connectorx, streamed) and a destination (LOAD DATA LOCAL INFILE).

Reading: connectorx turns the MySQL wire protocol into Arrow batches in Rust,
streamed with ``return_type="arrow_stream"``, so memory follows the batch
size. Types come from ``SHOW COLUMNS`` first: DECIMAL is selected as text
and cast to its exact ``decimal128(p, s)`` (connectorx would round to
scale 10), TIMESTAMP is read in UTC and marked so, JSON is marked as JSON,
and a type with no Arrow mapping (geometry, ...) is refused with the cast to use.

Writing: each batch becomes a CSV file written by DuckDB, which MariaDB
loads with ``LOAD DATA LOCAL INFILE``, the server's bulk path. Every value
is quoted and NULL is the bare word NULL (``ESCAPED BY ''``), so no text
can be mistaken for a NULL or an escape; BLOBs travel as hex.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Iterator
from functools import cached_property
from typing import Any, ClassVar, Literal

import pyarrow as pa
import pyarrow.compute as pc

from agent_orchestrated_etl.connectors.base import ConnectorSpec, DestinationSpecBase
from agent_orchestrated_etl.connectors.sql.client import SQLAlchemyClient
from agent_orchestrated_etl.connectors.sql.common import SQLDestinationFields, SQLSourceFields, connection_error
from agent_orchestrated_etl.connectors.sql.destination import SQLDestination
from agent_orchestrated_etl.connectors.sql.source import SQLSource
from agent_orchestrated_etl.connectors.sql.types import TypeTable, cast_columns
from agent_orchestrated_etl.exceptions import DataError, MissingDependencyError

_NATIVE = re.compile(
    r"^(tinyint|smallint|mediumint|int|integer|bigint|float|double|real|char|varchar|tinytext|text|mediumtext|longtext|"
    r"binary|varbinary|tinyblob|blob|mediumblob|longblob|date|time|datetime|timestamp|year|enum|set|bit|uuid|bool|boolean)\b"
)


def connectorx_url(url: str) -> str:
    head, _, rest = url.partition("://")
    return f"mysql://{rest}"


class MySQLSourceSpec(ConnectorSpec, SQLSourceFields):
    type: Literal["mysql"]


class MySQLSource(SQLSource):
    spec_model = MySQLSourceSpec
    label = "mysql"

    @cached_property
    def _layout(self) -> tuple[str, dict[str, pa.DataType]]:
        """The SELECT list and the Arrow type each specially read column must end as."""
        with self._engine().connect() as conn:
            if self.spec.table:
                described = conn.exec_driver_sql(f"SHOW COLUMNS FROM {self.quote(self.spec.table)}").all()
            else:
                conn.exec_driver_sql(self.raw(f"CREATE TEMPORARY TABLE _aetl_probe AS SELECT * FROM {self.relation()} LIMIT 0"))
                described = conn.exec_driver_sql("SHOW COLUMNS FROM _aetl_probe").all()
                conn.exec_driver_sql("DROP TEMPORARY TABLE _aetl_probe")
        listed: list[str] = []
        casts: dict[str, pa.DataType] = {}
        for name, declared, *_ in described:
            declared = declared.lower()
            column = self.quote(name)
            if match := re.match(r"^decimal\((\d+),(\d+)\)", declared):
                precision, scale = int(match.group(1)), int(match.group(2))
                casts[name] = pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
                listed.append(f"CAST({column} AS CHAR) AS {column}")
            elif declared.startswith("timestamp"):
                casts[name] = pa.timestamp("us", tz="UTC")
                listed.append(column)
            elif declared == "json":  # MySQL's own JSON; MariaDB's is a longtext and arrives as text
                casts[name] = pa.json_(pa.string())
                listed.append(column)
            elif _NATIVE.match(declared):
                listed.append(column)
            else:
                raise DataError(f"column {name}: MySQL type {declared} has no Arrow mapping", where=self.where, hint=f"read it through query: with CAST({name} AS CHAR) AS {name} (or ST_AsText for geometry)")
        return ", ".join(listed), casts

    def columns(self) -> str:
        try:
            return self._layout[0]
        except DataError:
            raise
        except Exception as exc:
            raise connection_error(exc, self.spec.url, self.where) from exc

    def stream(self, sql: str) -> Iterator[pa.RecordBatch]:
        try:
            import connectorx
        except ImportError:
            raise MissingDependencyError("MySQL", "mysql") from None
        casts = self._layout[1]
        reader = connectorx.read_sql(
            connectorx_url(self.spec.url), sql, return_type="arrow_stream", batch_size=self.batch_rows,
            pre_execution_query=["SET time_zone = '+00:00'"],
        )
        for batch in reader:
            yield cast_columns(batch, casts) if casts else batch


TYPES = TypeTable(
    engine="mysql",
    title="MySQL",
    columns={
        "bool": "BOOLEAN",
        "int8": "SMALLINT", "int16": "SMALLINT", "int32": "INTEGER", "int64": "BIGINT",
        "uint8": "TINYINT UNSIGNED", "uint16": "SMALLINT UNSIGNED", "uint32": "INT UNSIGNED", "uint64": "BIGINT UNSIGNED",
        "float32": "FLOAT", "float64": "DOUBLE PRECISION",
        "decimal": "NUMERIC({precision}, {scale})",
        "string": "LONGTEXT", "binary": "LONGBLOB",
        # DATETIME: TIMESTAMP ends in 2038; tz-aware values are stored in UTC.
        "date": "DATE", "time": "TIME(6)", "timestamp": "DATETIME(6)", "timestamptz": "DATETIME(6)",
        "json": "JSON", "uuid": "CHAR(36)",
    },
    max_decimal_digits=65,
)


class MySQLDestinationSpec(DestinationSpecBase, SQLDestinationFields):
    type: Literal["mysql"]


class MySQLClient(SQLAlchemyClient):
    """MariaDB and MySQL: SQLAlchemy (PyMySQL) for statements, LOAD DATA LOCAL INFILE of a CSV for batches.

    Their DDL commits by itself, so the protocol runs it just before the publish's transaction.
    """

    types = TYPES
    transactions = "dml"
    _csv: ClassVar[threading.local] = threading.local()

    def bulk_load(self, table: str, batch: pa.RecordBatch) -> None:
        batch = _loadable(batch)
        select, assign, targets = [], [], []
        for i, field in enumerate(batch.schema):
            column = _duck_quote(field.name)
            if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type) or pa.types.is_fixed_size_binary(field.type):
                select.append(f"hex({column})")
                targets.append(f"@v{i}")
                assign.append(f"{self.quote(field.name)} = UNHEX(@v{i})")
            else:
                select.append(column)
                targets.append(self.quote(field.name))
        fd, path = tempfile.mkstemp(prefix="aetl-", suffix=".csv")
        os.close(fd)
        try:
            duck = self._duck()
            duck.register("_aetl_batch", batch)
            try:
                duck.execute(f"COPY (SELECT {', '.join(select)} FROM _aetl_batch) TO '{path}' (FORMAT csv, HEADER false, DELIMITER ',', QUOTE '\"', ESCAPE '\"', NULLSTR 'NULL', FORCE_QUOTE *)")
            finally:
                duck.unregister("_aetl_batch")
            sql = (
                f"LOAD DATA LOCAL INFILE %s INTO TABLE {self.qualified(table)} CHARACTER SET utf8mb4"
                " FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' LINES TERMINATED BY '\\n'"
                f" ({', '.join(targets)})" + (f" SET {', '.join(assign)}" if assign else "")
            )
            with self.engine.begin() as conn:
                conn.exec_driver_sql(sql, (path,))
                warnings = conn.exec_driver_sql("SHOW WARNINGS LIMIT 3").all()
            if warnings:
                raise DataError(
                    "MariaDB changed values while loading: " + "; ".join(str(w[2]) for w in warnings),
                    where=self.where, hint="the target columns are narrower than the data; widen them or CAST in a transform",
                )
        finally:
            os.unlink(path)

    def _duck(self) -> Any:
        import duckdb

        conn = getattr(self._csv, "conn", None)
        if conn is None:
            conn = self._csv.conn = duckdb.connect(config={"threads": 1, "memory_limit": "128MB"})
        return conn



class MySQLDestination(SQLDestination):
    spec_model = MySQLDestinationSpec
    client_class = MySQLClient
    label = "mysql"
    seq_ddl = "BIGINT AUTO_INCREMENT PRIMARY KEY"

    def value_limit(self) -> tuple[int, str]:
        # LOAD DATA takes bigger values, but a statement or a row sent to a client is bounded by max_allowed_packet.
        if getattr(self, "_packet", None) is None:
            with self.guard(), self.client.session() as session:
                self._packet = int(session.scalar("SELECT @@max_allowed_packet"))
        return min(super().value_limit(), (self._packet, "the server's max_allowed_packet"))

    def widen_sql(self, column: str, new_type: str) -> str:
        return f"ALTER TABLE {self.q(self.spec.table)} MODIFY COLUMN {self.q(column)} {new_type}"

    def upsert_sql(self, target: str, columns: list[str], source: str) -> str:
        listed = ", ".join(self.q(c) for c in columns)
        updates = [c for c in columns if c not in self.spec.primary_key] or list(self.spec.primary_key)
        assignments = ", ".join(f"{self.q(c)} = VALUES({self.q(c)})" for c in updates)
        return f"INSERT INTO {target} ({listed}) SELECT {listed} FROM ({source}) s ON DUPLICATE KEY UPDATE {assignments}"

    def null_as(self, sql_type: str) -> str:
        return "NULL"  # MySQL's CAST knows only a few type names

    def add_key_sql(self, target: dict[str, dict[str, Any]]) -> str:
        # The key columns take the types and NOT NULL a created merge target gives them (no TEXT key without a length).
        columns = [f"MODIFY COLUMN {self.q(k)} {self.key_type(self._compiled(target[k]))} NOT NULL" for k in self.spec.primary_key if k in target]
        keys = ", ".join(self.q(k) for k in self.spec.primary_key)
        return f"ALTER TABLE {self.q(self.spec.table)} {', '.join([*columns, f'ADD PRIMARY KEY ({keys})'])}"

    def key_type(self, sql_type: str) -> str:
        # TEXT and BLOB columns cannot be keys without a prefix length.
        upper = sql_type.upper()
        return "VARCHAR(255)" if "TEXT" in upper else "VARBINARY(255)" if "BLOB" in upper else sql_type


def _duck_quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _loadable(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Values as LOAD DATA reads them: booleans as 0/1, aware timestamps in UTC without zone, big decimals as text."""
    columns, fields, changed = [], [], False
    for column, field in zip(batch.columns, batch.schema, strict=True):
        dtype = field.type
        target = None
        if pa.types.is_boolean(dtype):
            target = pa.int8()
        elif pa.types.is_timestamp(dtype) and dtype.tz:
            target = pa.timestamp(dtype.unit)
        elif pa.types.is_decimal256(dtype):
            target = pa.string()
        if target is not None:
            column, field, changed = pc.cast(column, target), pa.field(field.name, target), True
        columns.append(column)
        fields.append(field)
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields)) if changed else batch
