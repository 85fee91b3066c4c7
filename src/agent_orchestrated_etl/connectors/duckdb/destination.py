"""DuckDB as a destination (the source is in source.py), on the staged-destination protocol.

Arrow batches go into staging tables, published in one transaction with the
loads ledger and the incremental state (``sql/protocol.py``). Staging tables
live beside the target under the protocol's prefix, so a fresh target can be
published by a rename instead of a copy.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from agent_orchestrated_etl.connectors.base import Attachment, DestinationCapabilities, Partition, Source
from agent_orchestrated_etl.connectors.duckdb.client import (
    DuckDBClient,
    DuckDBSession,
    engine_copy,
    extension,
    postgres_extension,
    quote,
    string_literal,
)
from agent_orchestrated_etl.connectors.duckdb.spec import DuckDBDestinationSpec
from agent_orchestrated_etl.connectors.sql import schema as schemas
from agent_orchestrated_etl.connectors.sql.common import connection_error
from agent_orchestrated_etl.connectors.sql.protocol import (
    STAGING_PREFIX,
    Kind,
    Published,
    Session,
    TransactionalDestination,
)
from agent_orchestrated_etl.exceptions import ConfigurationError, DataError, InternalError

_attach_lock = threading.Lock()


class DuckDBDestination(TransactionalDestination):
    spec_model = DuckDBDestinationSpec
    # One process holds a DuckDB file for writing; tasks in it stage through their own cursors.
    capabilities = DestinationCapabilities(
        transactional=True,
        write_modes=frozenset({"append", "replace", "merge"}),
        pulls_from=frozenset({"file", "postgres"} if postgres_extension() else {"file"}),
    )
    # DuckDB files written before the protocol name the ledger's row count `rows`.
    ledger_rows_column = "rows"

    def describe(self) -> str:
        return f"duckdb {self.spec.path} table {self.spec.table}"

    @property
    def where(self) -> str:
        return self.describe()

    @property
    def table(self) -> str:
        return self.spec.table

    def legacy_prefix(self, run_id: str) -> str | None:
        # Before the protocol, DuckDB's staging had the same prefix with the run and task spelled out.
        return f"{STAGING_PREFIX}{_slug(run_id)}_{hashlib.sha1(self.target.encode()).hexdigest()[:8]}_"

    def legacy_staging(self, run_id: str, task_id: str, kind: Kind) -> str | None:
        return f"{self.legacy_prefix(run_id)}{_slug(task_id)}_{kind}"

    def make_client(self) -> DuckDBClient:
        return DuckDBClient(
            Path(self.spec.path).expanduser(), memory_limit_bytes=self.memory_limit_bytes, where=self.describe()
        )

    @property
    def duck(self) -> DuckDBClient:
        client = self.client
        assert isinstance(client, DuckDBClient)
        return client

    def _cursor(self) -> Any:
        """This thread's cursor of the file."""
        return self.duck.cursor()

    def create_staging(self, name: str, schema: pa.Schema, *, kind: Any) -> None:
        return None  # the first insert creates the table from the batch's Arrow schema, as DuckDB maps it

    def engine_cursor(self) -> Any:
        """A cursor of its own on the file, for a query that streams while this thread's cursor writes."""
        self._cursor()  # opens the file
        assert self.duck.conn is not None
        return self.duck.conn.cursor()

    def pull(
        self,
        run_id: str,
        task_id: str,
        source: Source,
        partition: Partition,
        progress: Callable[[int, int], None],
        *,
        keep_order: bool = False,
    ) -> int:
        """Stage a partition by DuckDB itself, reading the source as the source offers (``Source.engine_scan``).

        A PostgreSQL table is scanned through the attached database (DuckDB splits
        the scan over its threads by page ranges, and pushes the partition's filters
        down), a local Parquet file by DuckDB's own reader: parallel, and no Arrow
        copy in Python. Progress comes from DuckDB's query progress, polled from a
        second thread, times the row count the source gives up front, if it can.
        ``keep_order`` stages the rows in the source's order (checks evaluated over them need it).
        """
        import duckdb

        scan = source.engine_scan("duckdb", partition)
        if scan is None:
            raise InternalError(
                f"{source.describe()} offers no scan to DuckDB, yet the plan pushed it down", where=f"task {task_id}"
            )
        if scan.empty:
            return 0
        cursor = self._cursor()
        staging = quote(self.staging(run_id, task_id))
        reported = [0]
        done = threading.Event()
        watcher: threading.Thread | None = None
        try:
            if scan.attach is not None:
                self._attach(cursor, scan.attach)
            if scan.rows_sql is not None:
                (total,) = cursor.execute(scan.rows_sql, list(scan.params)).fetchone()

                def poll() -> None:
                    while not done.wait(0.25):
                        rows = int(total * max(0.0, cursor.query_progress()) / 100)
                        if rows > reported[0]:
                            progress(rows - reported[0], 0)
                            reported[0] = rows

                watcher = threading.Thread(target=poll, name=f"progress {task_id}", daemon=True)
                watcher.start()
            with engine_copy(
                self.duck.conn, self.memory_limit_bytes, keep_order=keep_order or self.spec.write == "merge"
            ):
                cursor.execute(f"CREATE TABLE {staging} AS {scan.select}", list(scan.params))
        except duckdb.Error as exc:
            # Classified as the Arrow path classifies the same failure (a refused connection is retried there too).
            mapped = connection_error(
                exc, scan.errors_url or f"duckdb:///{self.spec.path}", f"task {task_id}: {scan.origin}"
            )
            if type(mapped) is ConfigurationError or isinstance(mapped, DataError):
                mapped.hint = "the pushed-down copy failed; AGENT_ETL_PUSHDOWN=false reads through Arrow instead"
            raise mapped from None
        finally:
            done.set()
            if watcher is not None:
                watcher.join()
        rows = int(cursor.execute(f"SELECT count(*) FROM {staging}").fetchone()[0])
        progress(rows - reported[0], 0)
        return rows

    def _attach(self, cursor: Any, attach: Attachment) -> None:
        with (
            _attach_lock
        ):  # parallel tasks, of this destination or another in the same file, would race to attach the same database
            if not cursor.execute(
                "SELECT count(*) FROM duckdb_databases() WHERE database_name = ?", [attach.alias]
            ).fetchone()[0]:
                cursor.execute(f"LOAD '{extension(attach.kind)}'")
                # ATTACH takes no parameters: the connection string is quoted as a string literal.
                cursor.execute(f"ATTACH {string_literal(attach.dsn)} AS {attach.alias} (TYPE {attach.kind}, READ_ONLY)")

    def publish(self, session: Session, staged: list[str], prepared: Any) -> Published:
        rows, changes = self._publish(_cursor(session), staged)
        return Published(rows, changes)

    def _publish(self, cursor: Any, staged: list[str]) -> tuple[int, list[str]]:
        """Publish the staged tables into the target; returns the rows and the schema changes made."""
        target = quote(self.table)
        rows = sum(cursor.execute(f"SELECT count(*) FROM {quote(s)}").fetchone()[0] for s in staged)
        exists = bool(self.duck.columns(DuckDBSession(cursor), self.table) is not None)
        mode = self.spec.write
        if not staged:
            if mode == "replace" and exists:
                cursor.execute(f"DELETE FROM {target}")
            return 0, []
        # write: replace under evolve rebuilds the table from the data; freeze and discard keep the target's columns.
        fresh = not exists or (mode == "replace" and self.spec.schema_ == "evolve")
        if mode == "merge" and exists:
            self._check_merge_key(cursor)
        changes = [] if fresh else self._check_schema(cursor, staged)
        duplicates = mode == "merge" and self._duplicate_keys(cursor, staged)
        if mode == "merge" and not exists and not duplicates and not self.spec.hard_delete:
            mode = "append"  # a first merge with unique keys is a plain load
        if mode != "merge" and fresh and len(staged) == 1:
            # A fresh or replaced target is the staging table renamed: no copy of the data.
            if exists:
                cursor.execute(f"DROP TABLE {target}")
            cursor.execute(f"ALTER TABLE {quote(staged[0])} RENAME TO {target}")
            return rows, []
        union = " UNION ALL BY NAME ".join(f"SELECT * FROM {quote(s)}" for s in staged)
        if mode != "merge" and fresh:
            cursor.execute(f"CREATE OR REPLACE TABLE {target} AS {union}")
        else:
            if not exists:
                marker = f" EXCLUDE ({quote(self.spec.hard_delete)})" if self.spec.hard_delete else ""
                cursor.execute(f"CREATE TABLE {target} AS SELECT *{marker} FROM {quote(staged[0])} LIMIT 0")
            for name in staged:
                self._add_new_columns(cursor, name)
            if mode == "replace":
                cursor.execute(f"DELETE FROM {target}")
            if mode == "merge":
                self._merge(cursor, staged, duplicates=duplicates)
            else:
                cursor.execute(f"INSERT INTO {target} BY NAME {union}")
        for name in staged:
            cursor.execute(f"DROP TABLE {quote(name)}")
        return rows, changes

    def _check_schema(self, cursor: Any, staged: list[str]) -> list[str]:
        """Apply the schema policy to the existing target; returns what it changed, a line a column.

        Incompatible types, and any change under ``schema: freeze``, fail with
        a readable diff. Under ``schema: discard`` the columns the target lacks
        are dropped from the staging tables, so the publish never sees them.
        """
        target = cursor.execute(f"SELECT * FROM {quote(self.table)} LIMIT 0").to_arrow_table().schema
        summary: list[str] = []
        for name in staged:
            incoming = cursor.execute(f"SELECT * FROM {quote(name)} LIMIT 0").to_arrow_table().schema
            incoming = pa.schema([f for f in incoming if f.name != self.spec.hard_delete])
            changes = schemas.diff({f.name: f.type for f in target}, incoming)
            schemas.check(changes, mode=self.spec.schema_, where=self.describe())
            summary += changes.summary(
                self.spec.schema_, lambda dtype: self.duck.column_type(DuckDBSession(cursor), dtype)
            )
            for column, _old, new in changes.widened:
                cursor.execute(
                    f"ALTER TABLE {quote(self.table)} ALTER {quote(column)} TYPE"
                    f" {self.duck.column_type(DuckDBSession(cursor), new)}"
                )
            if self.spec.schema_ == "discard":
                for dropped in changes.added:
                    cursor.execute(f"ALTER TABLE {quote(name)} DROP COLUMN {quote(dropped.name)}")
        return list(dict.fromkeys(summary))  # several staging tables bring the same change

    def _check_merge_key(self, cursor: Any) -> None:
        # DuckDB's MERGE matches on the key columns themselves (no constraint needed), so only a key that
        # `schema: discard` would leave out of a hand-made target stops it.
        if self.spec.schema_ != "discard":
            return
        existing = {
            r[0]
            for r in cursor.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = ?", [self.table]
            ).fetchall()
        }
        absent = [k for k in self.spec.primary_key if k not in existing]
        if absent:
            raise ConfigurationError(
                f"merge key {', '.join(absent)} is not a column of {self.table}, and schema: discard would leave it out"
                " of the load",
                where=self.describe(),
                hint="add the column to the table, or set schema: evolve",
            )

    def _add_new_columns(self, cursor: Any, staged: str) -> None:
        existing = {
            r[0]
            for r in cursor.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = ?", [self.table]
            ).fetchall()
        }
        for name, dtype in cursor.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ?", [staged]
        ).fetchall():
            if name not in existing and name != self.spec.hard_delete:
                cursor.execute(f"ALTER TABLE {quote(self.table)} ADD COLUMN {quote(name)} {dtype}")

    def _duplicate_keys(self, cursor: Any, staged: list[str]) -> bool:
        """Whether a key occurs twice among the staged rows (a grouping on the keys alone, which spills)."""
        keys = ", ".join(quote(k) for k in self.spec.primary_key)
        union = " UNION ALL ".join(f"SELECT {keys} FROM {quote(s)}" for s in staged)
        return (
            cursor.execute(f"SELECT {keys} FROM ({union}) GROUP BY {keys} HAVING count(*) > 1 LIMIT 1").fetchone()
            is not None
        )

    def _merge(self, cursor: Any, staged: list[str], *, duplicates: bool) -> None:
        keys = ", ".join(quote(k) for k in self.spec.primary_key)
        on = " AND ".join(f"t.{quote(k)} IS NOT DISTINCT FROM s.{quote(k)}" for k in self.spec.primary_key)
        if duplicates:
            # Within one run the last staged row of a key wins: order by task, then by row within the task.
            ordered = " UNION ALL BY NAME ".join(
                f"SELECT *, {i} AS __task, rowid AS __row FROM {quote(s)}" for i, s in enumerate(staged)
            )
            latest = (
                f"SELECT * EXCLUDE (__task, __row) FROM ({ordered})"
                f" QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY __task DESC, __row DESC) = 1"
            )
        else:  # the window over every staged row costs memory; without duplicates it is not needed
            latest = " UNION ALL BY NAME ".join(f"SELECT * FROM {quote(s)}" for s in staged)
        marker = self.spec.hard_delete
        if marker is None:
            actions = "WHEN MATCHED THEN UPDATE BY NAME WHEN NOT MATCHED THEN INSERT BY NAME"
        else:
            columns = [
                c
                for c in cursor.execute(f"SELECT * FROM ({latest}) LIMIT 0").to_arrow_table().schema.names
                if c != marker
            ]
            deleted = f"s.{quote(marker)} IS TRUE"
            actions = (
                f"WHEN MATCHED AND {deleted} THEN DELETE WHEN MATCHED THEN UPDATE SET"
                f" {', '.join(f'{quote(c)} = s.{quote(c)}' for c in columns)} WHEN NOT MATCHED AND NOT ({deleted}) THEN"
                f" INSERT ({', '.join(quote(c) for c in columns)}) VALUES"
                f" ({', '.join(f's.{quote(c)}' for c in columns)})"
            )
        cursor.execute(f"MERGE INTO {quote(self.table)} AS t USING ({latest}) AS s ON {on} {actions}")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _cursor(session: Session) -> Any:
    assert isinstance(session, DuckDBSession), "a DuckDB destination gets its client's sessions"
    return session.cursor
