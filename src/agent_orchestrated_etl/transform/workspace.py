"""The run workspace: a DuckDB file where inputs of SQL transforms are materialised.

A transform with several inputs (a join) needs them all at once, so upstream
tasks stage them here and the transform task streams its result out. The
connection is sandboxed: user SQL cannot read or write files, ATTACH, or
INSTALL/LOAD extensions, and cannot change that configuration. DuckDB
spills to the temp directory, so memory stays within its limit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from agent_orchestrated_etl.connectors.duckdb import ArrowAppender, quote
from agent_orchestrated_etl.exceptions import ConfigurationError, DataError


class Workspace:
    def __init__(self, directory: Path, *, memory_limit_bytes: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        limit_mb = max(64, memory_limit_bytes // 4 // (1 << 20))
        self.path = directory / "workspace.duckdb"
        self._conn = duckdb.connect(
            str(self.path),
            config={
                "memory_limit": f"{limit_mb}MB",
                "temp_directory": str(directory / "spill"),
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
            },
        )
        # Spilling to temp_directory must stay possible, so the sandbox closes after it is set.
        self._conn.execute("SET enable_external_access = false")
        self._conn.execute("SET lock_configuration = true")
        self._local = threading.local()
        self._appender = ArrowAppender(where="run workspace")

    def _cursor(self) -> Any:
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self._conn.cursor()
        return cursor

    def begin(self, table: str) -> None:
        self._appender.discard(table)
        self._cursor().execute(f"DROP TABLE IF EXISTS {quote(table)}")

    def append(self, table: str, batch: pa.RecordBatch) -> None:
        self._appender.append(self._cursor(), table, batch)

    def finish(self, table: str) -> None:
        self._appender.flush(self._cursor(), table)

    def union_partitions(self, table: str, parts: list[str]) -> None:
        """Expose a source staged in several partitions as one view named like the source."""
        cursor = self._cursor()
        existing = {r[0] for r in cursor.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        present = [p for p in parts if p in existing]
        if not present:
            raise DataError(f"input {table} has no staged rows", hint="the source was empty or its tasks did not run")
        union = " UNION ALL BY NAME ".join(f"SELECT * FROM {quote(p)}" for p in present)
        cursor.execute(f"CREATE OR REPLACE VIEW {quote(table)} AS {union}")

    def define(self, name: str, sql: str) -> None:
        """Make a transform's SQL a view, so later transforms can read it by name."""
        try:
            self._cursor().execute(f"CREATE OR REPLACE VIEW {quote(name)} AS {sql}")
        except duckdb.Error as exc:
            raise ConfigurationError(str(exc).splitlines()[0], where=f"transform {name}", hint="fix the transform's sql:") from exc

    def stream(self, name: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
        try:
            reader = self._cursor().execute(f"SELECT * FROM {quote(name)}").to_arrow_reader(batch_rows)
            yield from reader
        except duckdb.Error as exc:
            raise DataError(str(exc).splitlines()[0], where=f"transform {name}", hint="fix the transform's sql:") from exc

    def stream_if_exists(self, table: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
        if self._cursor().execute("SELECT 1 FROM duckdb_tables() WHERE table_name = ?", [table]).fetchone():
            yield from self.stream(table, batch_rows)

    def close(self) -> None:
        self._conn.close()
