"""How to talk to MySQL and MariaDB: SQLAlchemy (PyMySQL) for statements, LOAD DATA LOCAL INFILE for batches.

Each batch becomes a CSV written by DuckDB (into a FIFO when AGENT_ETL_ENCRYPTION_KEY is set, so no
row touches the disk in the clear), which MariaDB loads with
``LOAD DATA LOCAL INFILE``, the server's bulk path. Every value is quoted and
NULL is the bare word NULL (``ESCAPED BY ''``), so no text can be mistaken for
a NULL or an escape; BLOBs travel as hex.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from agent_orchestrated_etl import encryption
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
        copy = (
            f"COPY (SELECT {', '.join(select)} FROM _aetl_batch) TO '{{path}}' (FORMAT csv, HEADER false,"
            " DELIMITER ',', QUOTE '\"', ESCAPE '\"', NULLSTR 'NULL', FORCE_QUOTE *, USE_TMP_FILE false)"
        )
        sql = (
            f"LOAD DATA LOCAL INFILE %s INTO TABLE {self.qualified(table)} CHARACTER SET utf8mb4"
            " FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' LINES TERMINATED BY '\\n'"
            f" ({', '.join(targets)})" + (f" SET {', '.join(assign)}" if assign else "")
        )
        with tempfile.TemporaryDirectory(prefix="aetl-") as scratch:
            path = os.path.join(scratch, "batch.csv")
            if encryption.key() is None:
                self._write_csv(batch, copy.format(path=path))
                writer = None
            else:
                # Encryption at rest: the rows go through a pipe, never a file on disk.
                os.mkfifo(path, 0o600)
                writer = _PipeWriter(self, batch, copy.format(path=path), path)
            try:
                with self.engine.begin() as conn:
                    conn.exec_driver_sql(sql, (path,))
                    if writer is not None:
                        writer.finish()  # inside the transaction: a CSV cut short by a failed writer is rolled back
                    warnings = conn.exec_driver_sql("SHOW WARNINGS LIMIT 3").all()
            finally:
                if writer is not None:
                    writer.abandon()
        if warnings:
            raise DataError(
                "MariaDB changed values while loading: " + "; ".join(str(w[2]) for w in warnings),
                where=self.where,
                hint="the target columns are narrower than the data; widen them or CAST in a transform",
            )

    def _write_csv(self, batch: pa.RecordBatch, copy: str) -> None:
        duck = self._duck()
        duck.register("_aetl_batch", batch)
        try:
            duck.execute(copy)
        finally:
            duck.unregister("_aetl_batch")

    def _duck(self) -> Any:
        import duckdb

        conn = getattr(self._csv, "conn", None)
        if conn is None:
            conn = self._csv.conn = duckdb.connect(config={"threads": 1, "memory_limit": "128MB"})
        return conn


class _PipeWriter:
    """DuckDB writes the batch's CSV into a FIFO from a thread while PyMySQL reads it for LOAD DATA."""

    def __init__(self, client: MySQLClient, batch: pa.RecordBatch, copy: str, path: str) -> None:
        self._path = path
        self._where = client.where
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(client, batch, copy), daemon=True)
        self._thread.start()

    def _run(self, client: MySQLClient, batch: pa.RecordBatch, copy: str) -> None:
        try:
            client._write_csv(batch, copy)
        except BaseException as exc:  # noqa: BLE001  # re-raised in the loading thread by finish()
            self._error = exc

    def finish(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise DataError(
                f"writing a batch for LOAD DATA failed: {str(self._error).splitlines()[0]}",
                where=self._where,
                hint="see the error above; the batch was not loaded",
            ) from self._error

    def abandon(self) -> None:
        """If the server never read the pipe (LOAD DATA failed first), drain it so the writer ends."""
        if not self._thread.is_alive():
            return
        fd = os.open(self._path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            deadline = time.monotonic() + 30
            while self._thread.is_alive() and time.monotonic() < deadline:
                with contextlib.suppress(BlockingIOError):
                    os.read(fd, 1 << 16)
                self._thread.join(0.005)
        finally:
            os.close(fd)


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
