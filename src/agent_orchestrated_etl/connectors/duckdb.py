"""DuckDB as a destination (the source is in duckdb_source.py).

Arrow batches go into staging tables, published in one transaction.
Staging tables live beside the target under a reserved prefix, so a fresh
target can be published by a rename instead of a copy. The commit also
records the run in ``_agent_etl_loads`` and the incremental state in
``_agent_etl_state`` inside the same transaction, which makes committing a
run twice a no-op and keeps the high-water mark with the data.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from agent_orchestrated_etl.connectors.base import (
    CommitResult,
    Destination,
    DestinationCapabilities,
    DestinationSpecBase,
)
from agent_orchestrated_etl.connectors.sql import schema as schemas
from agent_orchestrated_etl.exceptions import ConfigurationError, DataError, ResourceExhaustedError

_STAGING_PREFIX = "_agent_etl_stg_"
_LOADS = "_agent_etl_loads"
_STATE = "_agent_etl_state"
_ROW_GROUP = 122_880  # DuckDB's row group size
_INSERT_ROWS = 4 * _ROW_GROUP
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class ArrowAppender:
    """Appends Arrow batches to DuckDB tables, a few batches per INSERT.

    DuckDB keeps a transaction's appends in memory until it commits, and each
    small committed insert costs a WAL write; a group of batches per statement
    keeps memory flat and throughput near DuckDB's own. The tables written
    are staging areas, so committing each group makes nothing visible.
    """

    def __init__(self, *, where: str, budget_bytes: int, database: Callable[[], Any]) -> None:
        self.where = where
        self.budget_bytes = budget_bytes
        self._database = database  # the connection the cursors belong to: memory settings are per database
        self._pending: dict[str, list[pa.RecordBatch]] = {}
        self._lock = threading.Lock()

    def append(self, cursor: Any, table: str, batch: pa.RecordBatch) -> None:
        with self._lock:
            pending = self._pending.get(table)
            changed = bool(pending) and not pending[0].schema.equals(batch.schema)
        if changed:
            # One INSERT scans one Arrow schema: the batches before a change of types go first,
            # and DuckDB's cast of the new ones into the staging table's types decides.
            self.flush(cursor, table)
        with self._lock:
            pending = self._pending.setdefault(table, [])
            pending.append(batch)
            rows = sum(b.num_rows for b in pending)
            if rows < _INSERT_ROWS:
                return
            # Whole row groups go straight to the file; partial ones are rewritten at
            # checkpoint, which cost 4 s per GB here. DuckDB scans each Arrow batch
            # in its own thread, so each batch must be whole row groups as well.
            whole = rows - rows % _ROW_GROUP
            buffered = pa.Table.from_batches(pending)
            ready = _row_groups(buffered.slice(0, whole))
            self._pending[table] = buffered.slice(whole).to_batches()
        self._insert(cursor, table, ready)

    def discard(self, table: str) -> None:
        with self._lock:
            self._pending.pop(table, None)

    def flush(self, cursor: Any, table: str) -> None:
        with self._lock:
            batches = self._pending.pop(table, [])
        if batches:
            self._insert(cursor, table, batches)

    def _insert(self, cursor: Any, table: str, batches: list[pa.RecordBatch]) -> None:
        import duckdb

        cursor.register("_agent_etl_batches", pa.RecordBatchReader.from_batches(batches[0].schema, batches))
        try:
            with _room_for(cursor, id(self._database()), self.budget_bytes, largest_value(batches)):
                cursor.execute(f"CREATE TABLE IF NOT EXISTS {quote(table)} AS SELECT * FROM _agent_etl_batches LIMIT 0")
                cursor.execute(f"INSERT INTO {quote(table)} BY NAME SELECT * FROM _agent_etl_batches")
        except duckdb.OutOfMemoryException as exc:
            raise ResourceExhaustedError(str(exc).splitlines()[0], where=self.where, hint="raise AGENT_ETL_MEMORY_LIMIT or lower AGENT_ETL_BATCH_ROWS") from exc
        except (duckdb.ConversionException, duckdb.BinderException, duckdb.TypeMismatchException) as exc:
            # The staging table took its types from the first batch; a later batch's column does not fit them.
            raise DataError(str(exc).splitlines()[0], where=self.where, hint="a column changed type between batches; CAST it in a transform") from exc
        finally:
            cursor.unregister("_agent_etl_batches")


def largest_value(batches: list[pa.RecordBatch]) -> int:
    """The size in bytes of the largest text or binary value in ``batches`` (top-level columns)."""
    largest = 0
    for batch in batches:
        for column in batch.columns:
            if pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
                largest = max(largest, pc.max(pc.binary_length(column)).as_py() or 0)
    return largest


@contextmanager
def _room_for(cursor: Any, database: int, budget_bytes: int, largest: int) -> Iterator[None]:
    """Room in DuckDB's memory for an insert holding a value of ``largest`` bytes.

    DuckDB keeps a value in one block, and an insert copies it about twice: a
    50 MiB value does not fit the eighth of the budget the pool has while loading.
    The pool grows by three times the value for that insert and is set back after;
    the destination's value limit (a quarter of the budget) keeps it within the budget.
    """
    pool = _buffer_pool_mb(budget_bytes)
    needed = pool + 3 * largest // (1 << 20)
    if largest * 3 < pool << 20:
        yield
        return
    with _open_lock:
        cursor.execute(f"SET memory_limit = '{needed}MB'")
    try:
        yield
    finally:
        with _open_lock:
            copies = _engine_copies.get(database)
            if copies:  # a pushed-down copy running beside this insert keeps its settings
                _apply_engine_settings(cursor, copies, budget_bytes)
            else:
                cursor.execute(f"SET memory_limit = '{pool}MB'")


def _duckdb_type(cursor: Any, dtype: pa.DataType) -> str:
    """The DuckDB column type that holds an Arrow type (INTEGER for int32)."""
    return str(cursor.from_arrow(pa.table({"x": pa.array([], dtype)})).types[0])


def _row_groups(table: pa.Table) -> list[pa.RecordBatch]:
    batches = table.to_batches()
    if any(b.num_rows % _ROW_GROUP for b in batches):
        batches = table.combine_chunks().to_batches(max_chunksize=_ROW_GROUP)
    return batches


def _string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def postgres_extension() -> str | None:
    """The postgres extension file from the ``duckdb-extension-postgres-scanner`` wheel, if installed.

    Loaded by path: DuckDB would otherwise try to download it, and there may be no network.
    """
    spec = importlib.util.find_spec("duckdb_extension_postgres_scanner")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "extensions" / f"v{importlib.metadata.version('duckdb')}" / "postgres_scanner.duckdb_extension"
    return str(path) if path.exists() else None


class DuckDBDestinationSpec(DestinationSpecBase):
    type: Literal["duckdb"]
    path: str = Field(description="The DuckDB database file; created if missing.")
    table: str | None = Field(None, description="Target table, created from the data's Arrow schema. Left out when the input reads several tables.")
    table_prefix: str | None = Field(None, description="When the input reads several tables: each lands in prefix + its name.")

    @field_validator("table")
    @classmethod
    def _plain_identifier(cls, table: str | None) -> str | None:
        if table is not None and (not _IDENTIFIER.match(table) or table.startswith(_STAGING_PREFIX)):
            raise ValueError(f"table {table!r} must be a plain identifier (letters, digits, _)")
        return table

    @field_validator("table_prefix")
    @classmethod
    def _prefix(cls, prefix: str | None) -> str | None:
        if prefix is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", prefix + "x"):
            raise ValueError(f"table_prefix {prefix!r} must be letters, digits and _")
        return prefix


class DuckDBDestination(Destination):
    spec_model = DuckDBDestinationSpec
    # One process holds a DuckDB file for writing; tasks in it stage through their own cursors.
    capabilities = DestinationCapabilities(
        transactional=True, write_modes=frozenset({"append", "replace", "merge"}), pulls_from=frozenset({"file", "postgres"} if postgres_extension() else {"file"})
    )
    #: Test hook: called inside ``commit`` after the data is published and before COMMIT.
    before_commit: ClassVar[Callable[[str], None] | None] = None

    def __init__(self, spec: DuckDBDestinationSpec, *, memory_limit_bytes: int) -> None:
        super().__init__(spec, memory_limit_bytes=memory_limit_bytes)
        self._conn: Any = None
        self._lock = threading.Lock()
        self._local = threading.local()
        self._appender = ArrowAppender(where=self.describe(), budget_bytes=memory_limit_bytes, database=lambda: self._conn)

    def describe(self) -> str:
        return f"duckdb {self.spec.path} table {self.spec.table}"

    @property
    def table(self) -> str:
        return self.spec.table

    def _cursor(self) -> Any:
        with self._lock:
            if self._conn is None:
                self._conn = _open(Path(self.spec.path).expanduser(), self.memory_limit_bytes)
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self._conn.cursor()
            # The progress bar's counter feeds pushed-down tasks' progress; it prints nothing.
            cursor.execute("SET enable_progress_bar = true")
            cursor.execute("SET enable_progress_bar_print = false")
        return cursor

    def _staging(self, run_id: str, task_id: str, kind: str = "data") -> str:
        slug = re.sub(r"[^A-Za-z0-9_]", "_", task_id)
        return f"{self._own_prefix(run_id)}{slug}_{kind}"

    def _own_prefix(self, run_id: str) -> str:
        # The target's hash keeps apart the staging of destinations of one run in one file (a table each),
        # so aborting one (critical: false) leaves the others' staging for their commits.
        slug = re.sub(r"[^A-Za-z0-9_]", "_", run_id)
        return f"{_STAGING_PREFIX}{slug}_{hashlib.sha1(self.table.encode()).hexdigest()[:8]}_"

    def begin(self, run_id: str, task_id: str) -> None:
        cursor = self._cursor()
        for kind in ("data", "quarantine"):
            self._appender.discard(self._staging(run_id, task_id, kind))
            cursor.execute(f"DROP TABLE IF EXISTS {quote(self._staging(run_id, task_id, kind))}")

    def write_batch(self, run_id: str, task_id: str, batch: pa.RecordBatch) -> None:
        self._appender.append(self._cursor(), self._staging(run_id, task_id), batch)

    def write_quarantine(self, run_id: str, task_id: str, rows: pa.RecordBatch) -> None:
        self._appender.append(self._cursor(), self._staging(run_id, task_id, "quarantine"), rows)

    def finish(self, run_id: str, task_id: str) -> None:
        for kind in ("data", "quarantine"):
            self._appender.flush(self._cursor(), self._staging(run_id, task_id, kind))

    def pull(self, run_id: str, task_id: str, source: Any, partition: Any, progress: Callable[[int, int], None]) -> int:
        """Stage a PostgreSQL partition with DuckDB's postgres extension: binary COPY straight into the table.

        A table is scanned through the attached database (DuckDB splits the scan
        over its threads by page ranges, and pushes the partition's filters
        down); a query runs in PostgreSQL as it is (``postgres_query``). Both use
        the source's own SELECT list, so the columns are those the Arrow path reads.
        """
        if source.spec.type == "file":
            return self._pull_parquet(run_id, task_id, partition, progress)
        from agent_orchestrated_etl.connectors.postgres import libpq_url
        from agent_orchestrated_etl.connectors.sql.common import connection_error

        cursor = self._cursor()
        staging = quote(self._staging(run_id, task_id))
        alias = "_aetl_pg_" + hashlib.sha1(source.url.encode()).hexdigest()[:8]
        try:
            with _attach_lock:  # parallel tasks, of this destination or another in the same file, would race to attach the same database
                if not cursor.execute("SELECT count(*) FROM duckdb_databases() WHERE database_name = ?", [alias]).fetchone()[0]:
                    cursor.execute(f"LOAD '{postgres_extension()}'")
                    # ATTACH takes no parameters: the URL is quoted as a string literal.
                    cursor.execute(f"ATTACH {_string(libpq_url(source.url))} AS {alias} (TYPE postgres, READ_ONLY)")
            # The scanner reads json and jsonb as VARCHAR; the Arrow path stores them as JSON.
            as_json = ", ".join(f"{quote(c)}::JSON AS {quote(c)}" for c in source.json_columns())
            columns = f"* REPLACE ({as_json})" if as_json else "*"
            with _engine_copy(self._conn, self.memory_limit_bytes, keep_order=self.spec.write == "merge"):
                if source.spec.table:
                    cursor.execute(f"CREATE TABLE {staging} AS SELECT {columns} FROM ({source.select(source.predicates(partition), relation=f'{alias}.{source.quote(source.spec.table)}')})")
                else:
                    cursor.execute(f"CREATE TABLE {staging} AS SELECT {columns} FROM postgres_query('{alias}', ?)", [source.sql_for(partition)])
        except Exception as exc:
            # Classified as the Arrow path classifies the same failure: a refused connection is retried there too.
            mapped = connection_error(exc, source.url, f"task {task_id}")
            if type(mapped) is ConfigurationError:
                mapped.hint = "the pushed-down copy failed; AGENT_ETL_PUSHDOWN=false reads through Arrow instead"
            raise mapped from None
        rows = int(cursor.execute(f"SELECT count(*) FROM {staging}").fetchone()[0])
        progress(rows, 0)
        return rows

    def _pull_parquet(self, run_id: str, task_id: str, partition: Any, progress: Callable[[int, int], None]) -> int:
        """Stage a local Parquet file with DuckDB's own reader: parallel, and no Arrow copy in Python.

        Progress comes from DuckDB's query progress, polled from a second thread,
        times the row count in the file's footer.
        """
        if partition.options.get("empty"):
            return 0
        cursor = self._cursor()
        (total,) = cursor.execute("SELECT num_rows FROM parquet_file_metadata(?)", [partition.key]).fetchone()
        staging = quote(self._staging(run_id, task_id))
        reported = [0]
        done = threading.Event()

        def poll() -> None:
            while not done.wait(0.25):
                rows = int(total * max(0.0, cursor.query_progress()) / 100)
                if rows > reported[0]:
                    progress(rows - reported[0], 0)
                    reported[0] = rows

        watcher = threading.Thread(target=poll, name=f"progress {task_id}", daemon=True)
        watcher.start()
        try:
            with _engine_copy(self._conn, self.memory_limit_bytes, keep_order=self.spec.write == "merge"):
                cursor.execute(f"CREATE TABLE {staging} AS SELECT * FROM read_parquet(?)", [partition.key])
        except Exception as exc:
            raise DataError(str(exc).splitlines()[0], where=f"task {task_id}: {partition.key}", hint="the pushed-down copy failed; AGENT_ETL_PUSHDOWN=false reads through Arrow instead") from None
        finally:
            done.set()
            watcher.join()
        rows = int(cursor.execute(f"SELECT count(*) FROM {staging}").fetchone()[0])
        progress(rows - reported[0], 0)
        return rows

    def _existing(self, cursor: Any, names: list[str]) -> list[str]:
        found = {row[0] for row in cursor.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()}
        return [name for name in names if name in found]

    def commit(self, run_id: str, task_ids: list[str], state: dict[str, Any] | None = None) -> CommitResult:
        for task_id in task_ids:
            self.finish(run_id, task_id)
        cursor = self._cursor()
        cursor.execute("BEGIN TRANSACTION")
        try:
            done = cursor.execute(f"SELECT rows, quarantined_rows FROM {_LOADS} WHERE run_id = ? AND table_name = ?", [run_id, self.table]).fetchone()
            if done:
                cursor.execute("ROLLBACK")
                return CommitResult(rows=done[0], quarantined_rows=done[1], already_committed=True)
            staged = self._existing(cursor, [self._staging(run_id, t) for t in task_ids])
            rows, changes = self._publish(cursor, staged)
            quarantined = self._publish_quarantine(cursor, self._existing(cursor, [self._staging(run_id, t, "quarantine") for t in task_ids]))
            cursor.execute(f"INSERT INTO {_LOADS} (run_id, table_name, rows, quarantined_rows) VALUES (?, ?, ?, ?)", [run_id, self.table, rows, quarantined])
            for key, value in (state or {}).items():
                cursor.execute(f"INSERT OR REPLACE INTO {_STATE} (state_key, state_json, run_id) VALUES (?, ?, ?)", [key, json.dumps(value), run_id])
            if type(self).before_commit is not None:
                type(self).before_commit(run_id)  # type: ignore[misc]
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        return CommitResult(rows=rows, quarantined_rows=quarantined, schema_changes=changes)

    def _publish(self, cursor: Any, staged: list[str]) -> tuple[int, list[str]]:
        """Publish the staged tables into the target; returns the rows and the schema changes made."""
        target = quote(self.table)
        rows = sum(cursor.execute(f"SELECT count(*) FROM {quote(s)}").fetchone()[0] for s in staged)
        exists = bool(self._existing(cursor, [self.table]))
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
            summary += changes.summary(self.spec.schema_, lambda dtype: _duckdb_type(cursor, dtype))
            for column, _old, new in changes.widened:
                cursor.execute(f"ALTER TABLE {quote(self.table)} ALTER {quote(column)} TYPE {_duckdb_type(cursor, new)}")
            if self.spec.schema_ == "discard":
                for dropped in changes.added:
                    cursor.execute(f"ALTER TABLE {quote(name)} DROP COLUMN {quote(dropped.name)}")
        return list(dict.fromkeys(summary))  # several staging tables bring the same change

    def _check_merge_key(self, cursor: Any) -> None:
        # DuckDB's MERGE matches on the key columns themselves (no constraint needed), so only a key that
        # `schema: discard` would leave out of a hand-made target stops it.
        if self.spec.schema_ != "discard":
            return
        existing = {r[0] for r in cursor.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = ?", [self.table]).fetchall()}
        absent = [k for k in self.spec.primary_key if k not in existing]
        if absent:
            raise ConfigurationError(
                f"merge key {', '.join(absent)} is not a column of {self.table}, and schema: discard would leave it out of the load",
                where=self.describe(), hint="add the column to the table, or set schema: evolve",
            )

    def _add_new_columns(self, cursor: Any, staged: str) -> None:
        existing = {r[0] for r in cursor.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = ?", [self.table]).fetchall()}
        for name, dtype in cursor.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ?", [staged]).fetchall():
            if name not in existing and name != self.spec.hard_delete:
                cursor.execute(f"ALTER TABLE {quote(self.table)} ADD COLUMN {quote(name)} {dtype}")

    def _duplicate_keys(self, cursor: Any, staged: list[str]) -> bool:
        """Whether a key occurs twice among the staged rows (a grouping on the keys alone, which spills)."""
        keys = ", ".join(quote(k) for k in self.spec.primary_key)
        union = " UNION ALL ".join(f"SELECT {keys} FROM {quote(s)}" for s in staged)
        return cursor.execute(f"SELECT {keys} FROM ({union}) GROUP BY {keys} HAVING count(*) > 1 LIMIT 1").fetchone() is not None

    def _merge(self, cursor: Any, staged: list[str], *, duplicates: bool) -> None:
        keys = ", ".join(quote(k) for k in self.spec.primary_key)
        on = " AND ".join(f"t.{quote(k)} IS NOT DISTINCT FROM s.{quote(k)}" for k in self.spec.primary_key)
        if duplicates:
            # Within one run the last staged row of a key wins: order by task, then by row within the task.
            ordered = " UNION ALL BY NAME ".join(f"SELECT *, {i} AS __task, rowid AS __row FROM {quote(s)}" for i, s in enumerate(staged))
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
            columns = [c for c in cursor.execute(f"SELECT * FROM ({latest}) LIMIT 0").to_arrow_table().schema.names if c != marker]
            deleted = f"s.{quote(marker)} IS TRUE"
            actions = (
                f"WHEN MATCHED AND {deleted} THEN DELETE"
                f" WHEN MATCHED THEN UPDATE SET {', '.join(f'{quote(c)} = s.{quote(c)}' for c in columns)}"
                f" WHEN NOT MATCHED AND NOT ({deleted}) THEN INSERT ({', '.join(quote(c) for c in columns)}) VALUES ({', '.join(f's.{quote(c)}' for c in columns)})"
            )
        cursor.execute(f"MERGE INTO {quote(self.table)} AS t USING ({latest}) AS s ON {on} {actions}")

    def _publish_quarantine(self, cursor: Any, staged: list[str]) -> int:
        if not staged:
            return 0
        target = quote(f"{self.table}__quarantine")
        union = " UNION ALL BY NAME ".join(f"SELECT * FROM {quote(s)}" for s in staged)
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {target} AS {union} LIMIT 0")
        rows = cursor.execute(f"INSERT INTO {target} BY NAME {union}").fetchone()[0]
        for name in staged:
            cursor.execute(f"DROP TABLE {quote(name)}")
        return int(rows)

    def committed(self, run_id: str) -> bool:
        return self._cursor().execute(f"SELECT 1 FROM {_LOADS} WHERE run_id = ? AND table_name = ?", [run_id, self.table]).fetchone() is not None

    def staged_rows(self, run_id: str, task_id: str) -> int | None:
        cursor = self._cursor()
        if not self._existing(cursor, [self._staging(run_id, task_id)]):
            return 0
        return int(cursor.execute(f"SELECT count(*) FROM {quote(self._staging(run_id, task_id))}").fetchone()[0])

    def abort(self, run_id: str) -> None:
        cursor = self._cursor()
        for (name,) in cursor.execute("SELECT table_name FROM duckdb_tables() WHERE starts_with(table_name, ?)", [self._own_prefix(run_id)]).fetchall():
            cursor.execute(f"DROP TABLE IF EXISTS {quote(name)}")

    def read_state(self, key: str) -> Any | None:
        row = self._cursor().execute(f"SELECT state_json FROM {_STATE} WHERE state_key = ?", [key]).fetchone()
        return None if row is None else json.loads(row[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                _release(Path(self.spec.path).expanduser())
                self._conn = None


# A DuckDB file has one writer process; destinations of one run that share a
# file must share its connection too, or they race creating the same tables.
_open_files: dict[Path, list[Any]] = {}
_open_lock = threading.Lock()
_attach_lock = threading.Lock()


def _open(path: Path, memory_limit_bytes: int) -> Any:
    import duckdb

    key = path.resolve()
    with _open_lock:
        if key in _open_files:
            _open_files[key][1] += 1
            return _open_files[key][0]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(f"cannot create the folder for the database: {exc.strerror}", where=f"duckdb {path}", hint="check `path:` in the spec; a file may stand where a folder is needed") from exc
        limit_mb = _buffer_pool_mb(memory_limit_bytes)
        try:
            conn = duckdb.connect(str(path), config={"memory_limit": f"{limit_mb}MB"})
        except duckdb.IOException as exc:
            first = str(exc).splitlines()[0]
            # DuckDB says "Conflicting lock" when another process holds the file; the rest is the file system's.
            hint = "another process holds the file; close it" if "lock" in first.lower() else f"give this user access to {path.parent} (and write access to the file), or point `path:` elsewhere"
            raise ConfigurationError(first, where=f"duckdb {path}", hint=hint) from exc
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {_LOADS} (run_id VARCHAR, table_name VARCHAR, rows BIGINT,"
            " quarantined_rows BIGINT, committed_at TIMESTAMPTZ DEFAULT now(), PRIMARY KEY (run_id, table_name))"
        )
        conn.execute(f"CREATE TABLE IF NOT EXISTS {_STATE} (state_key VARCHAR PRIMARY KEY, state_json VARCHAR NOT NULL, run_id VARCHAR)")
        _open_files[key] = [conn, 1]
        return conn


#: The copies running by themselves in each database: id(conn) -> one flag per copy, "may reorder rows".
_engine_copies: dict[int, list[bool]] = {}


@contextmanager
def _engine_copy(conn: Any, budget_bytes: int, *, keep_order: bool) -> Iterator[None]:
    """Settings for DuckDB while it copies by itself, and back when the last copy ends.

    Measured on lineitem SF1 (bench/README.md): a CREATE TABLE AS that keeps
    the rows in source order needs about 260 MB of DuckDB's memory, and below a
    272 MB limit runs at half speed; allowed to reorder rows, it runs as fast
    within a quarter of the budget (128 MB of 512). Rows are reordered only
    where order means nothing: not for ``write: merge``, where the last row of
    a key within a run wins. Both settings are the database's, so the strictest
    running copy decides them.
    """
    key = id(conn)
    with _open_lock:
        copies = _engine_copies.setdefault(key, [])
        copies.append(not keep_order)
        _apply_engine_settings(conn, copies, budget_bytes)
    try:
        yield
    finally:
        with _open_lock:
            copies.remove(not keep_order)
            if copies:
                _apply_engine_settings(conn, copies, budget_bytes)
            else:
                del _engine_copies[key]
                conn.execute(f"SET memory_limit = '{_buffer_pool_mb(budget_bytes)}MB'")
                conn.execute("RESET preserve_insertion_order")


def _apply_engine_settings(conn: Any, copies: list[bool], budget_bytes: int) -> None:
    unordered = all(copies)
    fraction = (1, 4) if unordered else (9, 16)
    conn.execute(f"SET memory_limit = '{max(64, budget_bytes * fraction[0] // fraction[1] // (1 << 20))}MB'")
    conn.execute(f"SET preserve_insertion_order = {'false' if unordered else 'true'}")


def _buffer_pool_mb(budget_bytes: int) -> int:
    # DuckDB's buffer pool gets an eighth of the agent's budget: loading only
    # appends, so a small pool costs no speed, while Arrow batches in flight and
    # DuckDB's unmanaged allocations (about as much again) need the rest.
    return max(32, budget_bytes // 8 // (1 << 20))


def _release(path: Path) -> None:
    key = path.resolve()
    with _open_lock:
        entry = _open_files.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            entry[0].close()
            del _open_files[key]
