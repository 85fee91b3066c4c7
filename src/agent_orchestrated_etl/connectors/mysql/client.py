"""How to talk to MySQL and MariaDB: SQLAlchemy (PyMySQL) for statements, LOAD DATA LOCAL INFILE for batches.

Each batch becomes a CSV file written by DuckDB, which MariaDB loads with
``LOAD DATA LOCAL INFILE``, the server's bulk path. Every value is quoted and
NULL is the bare word NULL (``ESCAPED BY ''``), so no text can be mistaken for
a NULL or an escape; BLOBs travel as hex.
"""

from __future__ import annotations

import os
import tempfile
import threading
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from agent_orchestrated_etl.connectors.mysql.types import TYPES
from agent_orchestrated_etl.connectors.sql.client import SQLAlchemyClient
from agent_orchestrated_etl.exceptions import DataError


class MySQLClient(SQLAlchemyClient):
    """MariaDB and MySQL: SQLAlchemy (PyMySQL) for statements, LOAD DATA LOCAL INFILE of a CSV for batches.

    Their DDL commits by itself, so the protocol runs it just before the publish's transaction.
    """

    types = TYPES
    transactions = "dml"
    _csv: ClassVar[threading.local] = threading.local()

    def rename_table(self, old: str, new: str) -> str:
        # ALTER TABLE ... RENAME TO would move an unqualified new name into the connection's database.
        return f"RENAME TABLE {self.qualified(old)} TO {self.qualified(new)}"

    def bulk_load(self, table: str, batch: pa.RecordBatch) -> None:
        batch = _loadable(batch)
        select, assign, targets = [], [], []
        for i, field in enumerate(batch.schema):
            column = _duck_quote(field.name)
            if (
                pa.types.is_binary(field.type)
                or pa.types.is_large_binary(field.type)
                or pa.types.is_fixed_size_binary(field.type)
            ):
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
                duck.execute(
                    f"COPY (SELECT {', '.join(select)} FROM _aetl_batch) TO '{path}' (FORMAT csv, HEADER false,"
                    " DELIMITER ',', QUOTE '\"', ESCAPE '\"', NULLSTR 'NULL', FORCE_QUOTE *)"
                )
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
                    where=self.where,
                    hint="the target columns are narrower than the data; widen them or CAST in a transform",
                )
        finally:
            os.unlink(path)

    def _duck(self) -> Any:
        import duckdb

        conn = getattr(self._csv, "conn", None)
        if conn is None:
            conn = self._csv.conn = duckdb.connect(config={"threads": 1, "memory_limit": "128MB"})
        return conn


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
