"""How to talk to a DuckDB file: one shared connection per file in the process, a cursor per thread,
Arrow batches appended a few at a time, and DuckDB's memory settings while it loads or copies.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from agent_orchestrated_etl.connectors.duckdb.types import TYPES
from agent_orchestrated_etl.connectors.sql.common import connection_error
from agent_orchestrated_etl.connectors.sql.protocol import EngineClient, Session
from agent_orchestrated_etl.exceptions import AgentETLError, ConfigurationError, DataError, ResourceExhaustedError

_ROW_GROUP = 122_880  # DuckDB's row group size
_INSERT_ROWS = 4 * _ROW_GROUP


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def string_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def postgres_extension() -> str | None:
    """The postgres extension file from the ``duckdb-extension-postgres-scanner`` wheel, if installed.

    Loaded by path: DuckDB would otherwise try to download it, and there may be no network.
    """
    spec = importlib.util.find_spec("duckdb_extension_postgres_scanner")
    if spec is None or spec.origin is None:
        return None
    version = importlib.metadata.version("duckdb")
    path = Path(spec.origin).parent / "extensions" / f"v{version}" / "postgres_scanner.duckdb_extension"
    return str(path) if path.exists() else None


def extension(kind: str) -> str:
    """The file of DuckDB's extension for attaching a database of ``kind``; ConfigurationError when it is not installed."""
    path = postgres_extension() if kind == "postgres" else None
    if path is None:
        raise ConfigurationError(
            f"DuckDB's {kind} extension is not installed", hint="pip install 'agent-orchestrated-etl[postgres]'"
        )
    return path


class DuckDBSession(Session):
    """A DuckDB cursor as a protocol session; ``cursor`` for DuckDB's own calls (Arrow results)."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.cursor.execute(sql, list(params)) if params else self.cursor.execute(sql)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [
            tuple(r)
            for r in (self.cursor.execute(sql, list(params)) if params else self.cursor.execute(sql)).fetchall()
        ]


class DuckDBClient(EngineClient):
    """The protocol's client for a DuckDB file; tasks in this process stage through their own cursors."""

    types = TYPES

    def __init__(self, path: Path, *, memory_limit_bytes: int, where: str) -> None:
        super().__init__(schema=None, where=where)
        self.path = path
        self.memory_limit_bytes = memory_limit_bytes
        self.conn: Any = None
        self._lock = threading.Lock()
        self._local = threading.local()
        self.appender = ArrowAppender(where=where, budget_bytes=memory_limit_bytes, database=lambda: self.conn)

    def quote(self, name: str) -> str:
        return quote(name)

    def cursor(self) -> Any:
        """This thread's cursor of the file's shared connection."""
        with self._lock:
            if self.conn is None:
                self.conn = _open(self.path, self.memory_limit_bytes)
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self.conn.cursor()
            # The progress bar's counter feeds pushed-down tasks' progress; it prints nothing.
            cursor.execute("SET enable_progress_bar = true")
            cursor.execute("SET enable_progress_bar_print = false")
        return cursor

    @contextmanager
    def session(self) -> Iterator[DuckDBSession]:
        yield DuckDBSession(self.cursor())

    @contextmanager
    def transaction(self) -> Iterator[DuckDBSession]:
        cursor = self.cursor()
        cursor.execute("BEGIN TRANSACTION")
        try:
            yield DuckDBSession(cursor)
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT")

    def bulk_load(self, table: str, batch: pa.RecordBatch) -> None:
        self.appender.append(self.cursor(), table, batch)

    def flush(self, table: str) -> None:
        self.appender.flush(self.cursor(), table)

    def discard(self, table: str) -> None:
        self.appender.discard(table)

    def tables(self, session: Session, prefix: str = "") -> list[str]:
        return [
            r[0]
            for r in session.rows(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name ="
                " 'main' AND starts_with(table_name, ?)",
                (prefix,),
            )
        ]

    def columns(self, session: Session, table: str) -> dict[str, pa.DataType | None] | None:
        if table not in self.tables(session, table):
            return None
        schema = _cursor(session).execute(f"SELECT * FROM {quote(table)} LIMIT 0").to_arrow_table().schema
        return {f.name: f.type for f in schema}

    def column_type(self, session: Session, dtype: pa.DataType) -> str:
        """The DuckDB column type that holds an Arrow type, as DuckDB's own Arrow scan makes it (INTEGER for int32)."""
        return str(_cursor(session).from_arrow(pa.table({"x": pa.array([], dtype)})).types[0])

    def driver_errors(self) -> tuple[type[BaseException], ...]:
        import duckdb

        return (duckdb.Error, OSError)

    def error(self, exc: Exception, *, data_hint: str | None = None) -> AgentETLError:
        return connection_error(exc, f"duckdb:///{self.path}", self.where, data_hint=data_hint)

    def close(self) -> None:
        with self._lock:
            if self.conn is not None:
                _release(self.path)
                self.conn = None


def _cursor(session: Session) -> Any:
    assert isinstance(session, DuckDBSession), "a DuckDB client gets its own sessions"
    return session.cursor


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
            changed = bool(pending) and pending is not None and not pending[0].schema.equals(batch.schema)
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
            raise ResourceExhaustedError(
                str(exc).splitlines()[0],
                where=self.where,
                hint="raise AGENT_ETL_MEMORY_LIMIT or lower AGENT_ETL_BATCH_ROWS",
            ) from exc
        except (duckdb.ConversionException, duckdb.BinderException, duckdb.TypeMismatchException) as exc:
            # The staging table took its types from the first batch; a later batch's column does not fit them.
            raise DataError(
                str(exc).splitlines()[0],
                where=self.where,
                hint="a column changed type between batches; CAST it in a transform",
            ) from exc
        finally:
            cursor.unregister("_agent_etl_batches")


def largest_value(batches: list[pa.RecordBatch]) -> int:
    """The size in bytes of the largest text or binary value in ``batches`` (top-level columns)."""
    largest = 0
    for batch in batches:
        for column in batch.columns:
            if (
                pa.types.is_string(column.type)
                or pa.types.is_large_string(column.type)
                or pa.types.is_binary(column.type)
                or pa.types.is_large_binary(column.type)
            ):
                largest = max(largest, pc.max(pc.binary_length(column)).as_py() or 0)
    return largest


def _row_groups(table: pa.Table) -> list[pa.RecordBatch]:
    batches = table.to_batches()
    if any(b.num_rows % _ROW_GROUP for b in batches):
        batches = table.combine_chunks().to_batches(max_chunksize=_ROW_GROUP)
    return batches


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


# A DuckDB file has one writer process; destinations of one run that share a
# file must share its connection too, or they race creating the same tables.
_open_files: dict[Path, list[Any]] = {}
_open_lock = threading.Lock()


def shared_connection(path: Path) -> Any | None:
    """The connection this process holds open on the file at ``path`` (a destination writes it), or None.

    A reader in the same process must read through it: DuckDB refuses a second
    connection to a file one connection of the process writes.
    """
    with _open_lock:
        entry = _open_files.get(path.expanduser().resolve())
    return None if entry is None else entry[0]


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
            raise ConfigurationError(
                f"cannot create the folder for the database: {exc.strerror}",
                where=f"duckdb {path}",
                hint="check `path:` in the spec; a file may stand where a folder is needed",
            ) from exc
        limit_mb = _buffer_pool_mb(memory_limit_bytes)
        try:
            conn = duckdb.connect(str(path), config={"memory_limit": f"{limit_mb}MB"})
        except duckdb.IOException as exc:
            # DuckDB gives one exception class for a lock held by another process and for the file system's refusals.
            raise ConfigurationError(
                str(exc).splitlines()[0],
                where=f"duckdb {path}",
                hint=(
                    f"if another process holds the file, close it; else give this user access to {path.parent} (and"
                    " write access to the file), or point `path:` elsewhere"
                ),
            ) from exc
        _open_files[key] = [conn, 1]
        return conn


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


#: The copies running by themselves in each database: id(conn) -> one flag per copy, "may reorder rows".
_engine_copies: dict[int, list[bool]] = {}


@contextmanager
def engine_copy(conn: Any, budget_bytes: int, *, keep_order: bool) -> Iterator[None]:
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
