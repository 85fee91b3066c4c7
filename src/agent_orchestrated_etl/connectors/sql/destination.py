"""A SQL database as a destination: per-task staging tables, published in one transaction.

``begin`` creates nothing; the first batch of a task creates its staging
table from the Arrow schema (after checking that schema against the target,
so ``schema: freeze`` and incompatible types fail before any data moves).
``commit`` then, in one transaction: applies the schema changes (under
``schema: discard`` the columns the target lacks are left out of the
publish, and stay in staging until it is dropped), publishes
every staged table (append, replace or merge), records the run in
``_agent_etl_loads`` and the incremental state in ``_agent_etl_state``.
Committing a run twice finds it in ``_agent_etl_loads`` and does nothing.

Databases without transactional DDL (MySQL, MariaDB) run the DDL (create
the target, add or widen columns: changes every old row still fits) just
before the transaction, and drop the staging tables just after it.
Subclasses give the bulk path (``load``) and the dialect's upsert.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

import pyarrow as pa

from agent_orchestrated_etl.connectors.base import CommitResult, Destination, DestinationCapabilities
from agent_orchestrated_etl.connectors.sql import schema as schemas
from agent_orchestrated_etl.connectors.sql.common import STAGING_PREFIX, connection_error, engine, quote_table, redact
from agent_orchestrated_etl.connectors.sql.types import TypeTable, arrow_type, ddl_type
from agent_orchestrated_etl.exceptions import AgentETLError, ConfigurationError

LOADS = "_agent_etl_loads"
STATE = "_agent_etl_state"
SEQ = "_aetl_seq"
_KINDS = {"data": "d", "quarantine": "q"}
_bookkeeping_lock = threading.Lock()


class SQLDestination(Destination):
    capabilities = DestinationCapabilities(transactional=True, write_modes=frozenset({"append", "replace", "merge"}))
    dialect: ClassVar[str]
    types: ClassVar[TypeTable]
    label: ClassVar[str] = "sql"
    transactional_ddl: ClassVar[bool] = True
    #: Test hook: called inside ``commit`` after the data is published and before COMMIT.
    before_commit: ClassVar[Callable[[str], None] | None] = None

    def __init__(self, spec: Any, *, memory_limit_bytes: int) -> None:
        super().__init__(spec, memory_limit_bytes=memory_limit_bytes)
        self._created: set[str] = set()
        self._checked = False
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"{self.label} {redact(self.spec.url)} table {self.spec.table}"

    @property
    def where(self) -> str:
        return f"destination {self.spec.table}"

    # -- names ----------------------------------------------------------------
    def _engine(self) -> Any:
        return engine(self.spec.url)

    @property
    def _schema(self) -> str | None:
        return self.spec.table.rsplit(".", 1)[0] if "." in self.spec.table else None

    @property
    def _name(self) -> str:
        return self.spec.table.rsplit(".", 1)[-1]

    def q(self, name: str) -> str:
        return quote_table(self._engine().dialect.identifier_preparer, name)

    def _qualified(self, name: str) -> str:
        return self.q(f"{self._schema}.{name}" if self._schema else name)

    def staging(self, run_id: str, task_id: str, kind: str = "data") -> str:
        """Staging table name: short (PostgreSQL cuts names at 63 bytes) and findable by run."""
        return f"{self._own_prefix(run_id)}{_short(task_id)}_{_KINDS[kind]}"

    def _own_prefix(self, run_id: str) -> str:
        # The target's part keeps apart the staging of destinations of one run in one schema (a table each),
        # so aborting one (critical: false) leaves the others' staging for their commits.
        return f"{_run_prefix(run_id)}{_short(self.spec.table)[:6]}"

    # -- staging --------------------------------------------------------------
    def begin(self, run_id: str, task_id: str) -> None:
        self._bookkeeping()
        with self._guard(), self._engine().begin() as conn:
            for kind in _KINDS:
                name = self.staging(run_id, task_id, kind)
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self._qualified(name)}")
                self._created.discard(name)

    def write_batch(self, run_id: str, task_id: str, batch: pa.RecordBatch) -> None:
        name = self.staging(run_id, task_id)
        if name not in self._created:
            self._check_schema(batch.schema)
            self._create_staging(name, batch.schema, seq=self.spec.write == "merge")
        with self._guard():
            self.load(name, batch)

    def write_quarantine(self, run_id: str, task_id: str, rows: pa.RecordBatch) -> None:
        name = self.staging(run_id, task_id, "quarantine")
        if name not in self._created:
            self._create_staging(name, rows.schema, seq=False)
        with self._guard():
            self.load(name, rows)

    def _create_staging(self, name: str, schema: pa.Schema, *, seq: bool) -> None:
        columns = [f"{self.q(f.name)} {ddl_type(self.types, f.type, column=f.name, where=self.where)}" for f in schema]
        if seq and self.seq_ddl:
            columns.insert(0, f"{self.q(SEQ)} {self.seq_ddl}")
        with self._guard(), self._engine().begin() as conn:
            conn.exec_driver_sql(f"CREATE TABLE {self._qualified(name)} ({', '.join(columns)})")
        self._created.add(name)

    def _check_schema(self, incoming: pa.Schema) -> None:
        """Fail on the first batch, not at commit, when the data cannot go into the target."""
        with self._lock:
            if self._checked:
                return
            target = self._target_columns()
            if target is not None:
                changes = schemas.diff({n: self.target_type(c) for n, c in target.items()}, self._without_marker(incoming))
                schemas.check(changes, mode=self.spec.schema_, where=self.where)
                if self.spec.write == "merge":
                    with self._guard(), self._engine().connect() as conn:
                        self._missing_key(conn, target)
            self._checked = True

    def _without_marker(self, incoming: pa.Schema) -> pa.Schema:
        marker = self.spec.hard_delete
        return pa.schema([f for f in incoming if f.name != marker])

    def _target_columns(self, conn: Any = None) -> dict[str, dict[str, Any]] | None:
        import sqlalchemy as sa

        with self._guard():
            inspector = sa.inspect(conn if conn is not None else self._engine())
            if not inspector.has_table(self._name, schema=self._schema):
                return None
            return {c["name"]: c for c in inspector.get_columns(self._name, schema=self._schema)}

    def load(self, name: str, batch: pa.RecordBatch) -> None:
        """Append a batch to staging table ``name`` (in the target's schema).

        This generic path binds Python rows; each dialect overrides it with its bulk path.
        """
        names = ", ".join(self.q(n) for n in batch.schema.names)
        marks = ", ".join(["%s"] * batch.num_columns) if self._engine().dialect.paramstyle in ("format", "pyformat") else ", ".join(["?"] * batch.num_columns)
        with self._engine().begin() as conn:
            conn.exec_driver_sql(f"INSERT INTO {self._qualified(name)} ({names}) VALUES ({marks})", [tuple(r.values()) for r in batch.to_pylist()])

    # -- commit ---------------------------------------------------------------
    def commit(self, run_id: str, task_ids: list[str], state: dict[str, Any] | None = None) -> CommitResult:
        """Publish the staged tables of ``task_ids`` and store ``state`` (state key -> JSON value) atomically."""
        self._bookkeeping()
        with self._guard():
            done = self._loaded(run_id)
            if done is not None:
                return CommitResult(rows=done[0], quarantined_rows=done[1], already_committed=True)
            import sqlalchemy as sa

            inspector = sa.inspect(self._engine())
            present = set(inspector.get_table_names(schema=self._schema))
            data = [n for n in (self.staging(run_id, t) for t in task_ids) if n in present]
            quarantine = [n for n in (self.staging(run_id, t, "quarantine") for t in task_ids) if n in present]
            staged = {n: self.staged_columns(inspector, n) for n in data}
            self._key_added: str | None = None
            if self.transactional_ddl:
                with self._engine().begin() as conn:
                    renamed, dropped, changes = self._prepare(conn, staged)
                    result = self._publish(conn, run_id, _without(staged, dropped) if renamed is None else {}, quarantine, state, rows=renamed)
                    self._drop(conn, data + quarantine)
            else:
                with self._engine().begin() as conn:
                    _, dropped, changes = self._prepare(conn, staged)
                with self._engine().begin() as conn:
                    result = self._publish(conn, run_id, _without(staged, dropped), quarantine, state)
                with self._engine().begin() as conn:
                    self._drop(conn, data + quarantine)
        result.schema_changes = changes
        result.key_added = self._key_added
        return result

    def committed(self, run_id: str) -> bool:
        self._bookkeeping()
        with self._guard():
            return self._loaded(run_id) is not None

    def staged_rows(self, run_id: str, task_id: str) -> int | None:
        import sqlalchemy as sa

        name = self.staging(run_id, task_id)
        with self._guard():
            if not sa.inspect(self._engine()).has_table(name, schema=self._schema):
                return 0
            with self._engine().connect() as conn:
                return int(conn.exec_driver_sql(f"SELECT count(*) FROM {self._qualified(name)}").scalar())

    def _loaded(self, run_id: str) -> tuple[int, int] | None:
        with self._engine().connect() as conn:
            row = conn.exec_driver_sql(f"SELECT rows_loaded, quarantined_rows FROM {self._qualified(LOADS)} WHERE run_id = {self._mark(1)} AND table_name = {self._mark(2)}", self._params(run_id, self.spec.table)).first()
        return (int(row[0]), int(row[1])) if row else None

    def _prepare(self, conn: Any, staged: dict[str, dict[str, dict[str, Any]]]) -> tuple[int | None, set[str], list[str]]:
        """Create the target or bring its columns up to what was staged (the schema DDL).

        A new target fed by one staging table (not a merge) is that table renamed,
        inside the transaction: the rows are not copied. Returns their count then
        (else None), the staged columns to leave out (``schema: discard``), and
        what the schema policy changed, a line a column.
        """
        if not staged:
            return None, set(), []
        wanted: dict[str, dict[str, Any]] = {}
        for columns in staged.values():
            for name, column in columns.items():
                if name != self.spec.hard_delete:
                    wanted.setdefault(name, column)
        target = self._target_columns(conn)
        if target is None and self.transactional_ddl and self.spec.write != "merge" and len(staged) == 1:
            (name,) = staged
            rows = int(conn.exec_driver_sql(f"SELECT count(*) FROM {self._qualified(name)}").scalar())
            conn.exec_driver_sql(f"ALTER TABLE {self._qualified(name)} RENAME TO {self.q(self._name)}")
            return rows, set(), []
        if target is None:
            self._create_target(conn, wanted)
            return None, set(), []
        incoming = pa.schema([(n, arrow_type(c["type"]) or pa.null()) for n, c in wanted.items()])
        changes = schemas.diff({n: self.target_type(c) for n, c in target.items()}, incoming)
        schemas.check(changes, mode=self.spec.schema_, where=self.where)
        add_key = self._missing_key(conn, target) if self.spec.write == "merge" else None
        discard = self.spec.schema_ == "discard"
        if not discard:
            for added in changes.added:
                conn.exec_driver_sql(f"ALTER TABLE {self.q(self.spec.table)} ADD COLUMN {self.q(added.name)} {self._compiled(wanted[added.name])}")
        for name, _old, new in changes.widened:
            conn.exec_driver_sql(self.widen_sql(name, ddl_type(self.types, new, column=name, where=self.where)))
        if add_key is not None:
            self._add_key(conn, add_key)
        dropped = {f.name for f in changes.added} if discard else set()
        return None, dropped, changes.summary(self.spec.schema_, lambda dtype: ddl_type(self.types, dtype, column="", where=self.where), lambda f: self._compiled(wanted[f.name]))

    # -- the merge key ----------------------------------------------------------
    def _missing_key(self, conn: Any, target: dict[str, dict[str, Any]]) -> str | None:
        """The SQL that gives an existing merge target its key, or None when it has one.

        MySQL's ON DUPLICATE KEY and SQLite's ON CONFLICT match rows only through a
        unique key (without one MySQL appends every row again), and PostgreSQL's MERGE
        would carry a keyless table's duplicate and NULL keys along. A target agent-etl
        loaded (it is in the loads ledger) gets the key; any other is refused with the SQL to add it.
        """
        keys = list(self.spec.primary_key)
        listed = ", ".join(keys)
        absent = [k for k in keys if k not in target]
        if absent and self.spec.schema_ == "discard":
            raise ConfigurationError(
                f"merge key {', '.join(absent)} is not a column of {self.spec.table}, and schema: discard would leave it out of the load",
                where=self.where, hint="add the column and a primary key on it to the table, or set schema: evolve",
            )
        if self._has_key(conn, keys):
            return None
        fix = self.add_key_sql(target)
        if not self._ours(conn):
            raise ConfigurationError(
                f"table {self.spec.table} has no primary key or unique index on ({listed}), which write: merge needs to match rows, and agent-etl did not create it",
                where=self.where, hint=f"add it: {fix}",
            )
        return fix

    def _has_key(self, conn: Any, keys: list[str]) -> bool:
        import sqlalchemy as sa

        inspector = sa.inspect(conn)
        wanted = set(keys)
        if set(inspector.get_pk_constraint(self._name, schema=self._schema).get("constrained_columns") or []) == wanted:
            return True
        if any(set(u["column_names"]) == wanted for u in inspector.get_unique_constraints(self._name, schema=self._schema)):
            return True
        # A partial index (WHERE ...) does not make every key unique.
        return any(
            i.get("unique") and set(i["column_names"]) == wanted and not any(k.endswith("_where") and v is not None for k, v in i.get("dialect_options", {}).items())
            for i in inspector.get_indexes(self._name, schema=self._schema)
        )

    def _ours(self, conn: Any) -> bool:
        return conn.exec_driver_sql(f"SELECT 1 FROM {self._qualified(LOADS)} WHERE table_name = {self._mark(1)}", self._params(self.spec.table)).first() is not None

    def _add_key(self, conn: Any, sql: str) -> None:
        try:
            conn.exec_driver_sql(sql)
        except Exception as exc:
            raise ConfigurationError(
                f"cannot add the merge key ({', '.join(self.spec.primary_key)}) to {self.spec.table}, which agent-etl loaded before: {str(getattr(exc, 'orig', exc)).splitlines()[0]}",
                where=self.where, hint=f"its rows hold duplicate or NULL keys (an earlier append?); remove them, then {sql}",
            ) from exc
        self._key_added = sql

    def add_key_sql(self, target: dict[str, dict[str, Any]]) -> str:
        """The DDL that adds the primary key on ``primary_key`` to the existing target."""
        return f"ALTER TABLE {self.q(self.spec.table)} ADD PRIMARY KEY ({', '.join(self.q(k) for k in self.spec.primary_key)})"

    def target_type(self, column: dict[str, Any]) -> pa.DataType | None:
        """The Arrow type a reflected target column holds, to judge schema changes by."""
        return arrow_type(column["type"])

    def staged_columns(self, inspector: Any, name: str) -> dict[str, dict[str, Any]]:
        """A staging table's columns as SQLAlchemy reflects them (a dialect may add the declared "ddl")."""
        return {c["name"]: c for c in inspector.get_columns(name, schema=self._schema) if c["name"] != SEQ}

    def _compiled(self, column: dict[str, Any]) -> str:
        return column.get("ddl") or column["type"].compile(dialect=self._engine().dialect)

    def _create_target(self, conn: Any, columns: dict[str, dict[str, Any]]) -> None:
        keys = set(self.spec.primary_key) if self.spec.write == "merge" else set()
        defs = [f"{self.q(n)} {self.key_type(self._compiled(c)) + ' NOT NULL' if n in keys else self._compiled(c)}" for n, c in columns.items()]
        if self.spec.write == "merge":
            defs.append(f"PRIMARY KEY ({', '.join(self.q(k) for k in self.spec.primary_key)})")
        conn.exec_driver_sql(f"CREATE TABLE {self.q(self.spec.table)} ({', '.join(defs)})")

    def _publish(self, conn: Any, run_id: str, staged: dict[str, dict[str, dict[str, Any]]], quarantine: list[str], state: dict[str, Any] | None, *, rows: int | None = None) -> CommitResult:
        """Publish ``staged`` into the target; ``rows`` is given when the target already is the staged table."""
        target = self.q(self.spec.table)
        if rows is None:
            rows = sum(int(conn.exec_driver_sql(f"SELECT count(*) FROM {self._qualified(n)}").scalar()) for n in staged)
        columns = list(dict.fromkeys(n for cols in staged.values() for n in cols if n != self.spec.hard_delete))
        # An empty input creates no target (it has no types to create one from), so there may be nothing to clear.
        if self.spec.write == "replace" and (staged or (rows == 0 and self._target_columns(conn) is not None)):
            conn.exec_driver_sql(self.clear_sql(target))
        if staged and self.spec.write == "merge":
            self._merge(conn, staged, columns)
        elif staged:
            listed = ", ".join(self.q(c) for c in columns)
            conn.exec_driver_sql(f"INSERT INTO {target} ({listed}) {self._union(staged, columns)}")
        quarantined = self._publish_quarantine(conn, quarantine)
        conn.exec_driver_sql(f"INSERT INTO {self._qualified(LOADS)} (run_id, table_name, rows_loaded, quarantined_rows, committed_at) VALUES ({', '.join(self._mark(i) for i in range(1, 6))})", self._params(run_id, self.spec.table, rows, quarantined, datetime.now(UTC).replace(tzinfo=None)))
        for key, value in (state or {}).items():
            conn.exec_driver_sql(f"DELETE FROM {self._qualified(STATE)} WHERE state_key = {self._mark(1)}", self._params(key))
            conn.exec_driver_sql(f"INSERT INTO {self._qualified(STATE)} (state_key, state_json, run_id) VALUES ({self._mark(1)}, {self._mark(2)}, {self._mark(3)})", self._params(key, json.dumps(value), run_id))
        if type(self).before_commit is not None:
            type(self).before_commit(run_id)  # type: ignore[misc]
        return CommitResult(rows=rows, quarantined_rows=quarantined)

    def _union(self, staged: dict[str, dict[str, dict[str, Any]]], columns: list[str], *, extra: bool = False) -> str:
        """One SELECT over every staged table; a table lacking a column gives NULLs of the right type."""
        types = {n: c for cols in staged.values() for n, c in cols.items()}
        parts = []
        for i, (name, cols) in enumerate(staged.items()):
            listed = [self.q(c) if c in cols else f"{self.null_as(self._compiled(types[c]))} AS {self.q(c)}" for c in columns]
            if extra:
                listed += [f"{i} AS _aetl_task", f"{self.seq_expr} AS {SEQ}"]
            parts.append(f"SELECT {', '.join(listed)} FROM {self._qualified(name)}")
        return " UNION ALL ".join(parts)

    def _merge(self, conn: Any, staged: dict[str, dict[str, dict[str, Any]]], columns: list[str]) -> None:
        marker = self.spec.hard_delete
        union_columns = columns + ([marker] if marker else [])
        keys = ", ".join(self.q(k) for k in self.spec.primary_key)
        # Within one run the last staged row of a key wins: by task, then by arrival within the task.
        latest = (
            f"SELECT * FROM (SELECT u.*, ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY _aetl_task DESC, {SEQ} DESC) AS _aetl_rn"
            f" FROM ({self._union(staged, union_columns, extra=True)}) u) d WHERE _aetl_rn = 1"
        )
        target = self.q(self.spec.table)
        if marker:
            match = " AND ".join(f"s.{self.q(k)} = {target}.{self.q(k)}" for k in self.spec.primary_key)
            conn.exec_driver_sql(f"DELETE FROM {target} WHERE EXISTS (SELECT 1 FROM ({latest}) s WHERE {match} AND s.{self.q(marker)} = {self.true})")
            latest = f"SELECT * FROM ({latest}) k WHERE k.{self.q(marker)} IS NULL OR k.{self.q(marker)} <> {self.true}"
        conn.exec_driver_sql(self.upsert_sql(target, columns, latest))

    def _publish_quarantine(self, conn: Any, staged: list[str]) -> int:
        if not staged:
            return 0
        import sqlalchemy as sa

        target = f"{self._name}__quarantine"
        if not sa.inspect(conn).has_table(target, schema=self._schema):
            conn.exec_driver_sql(f"CREATE TABLE {self._qualified(target)} (run_id TEXT, task_id TEXT, check_name TEXT, reason TEXT, origin TEXT, row_json TEXT)")
        total = 0
        for name in staged:
            total += int(conn.exec_driver_sql(f"SELECT count(*) FROM {self._qualified(name)}").scalar())
            conn.exec_driver_sql(f"INSERT INTO {self._qualified(target)} (run_id, task_id, check_name, reason, origin, row_json) SELECT run_id, task_id, check_name, reason, origin, row_json FROM {self._qualified(name)}")
        return total

    def _drop(self, conn: Any, names: list[str]) -> None:
        for name in names:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self._qualified(name)}")
            self._created.discard(name)

    def abort(self, run_id: str) -> None:
        import sqlalchemy as sa

        with self._guard():
            prefix = self._own_prefix(run_id)
            names = [n for n in sa.inspect(self._engine()).get_table_names(schema=self._schema) if n.startswith(prefix)]
            with self._engine().begin() as conn:
                self._drop(conn, names)

    # -- state ----------------------------------------------------------------
    def read_state(self, key: str) -> Any | None:
        """The state committed under ``key`` (JSON), or None before the first commit."""
        self._bookkeeping()
        with self._guard(), self._engine().connect() as conn:
            value = conn.exec_driver_sql(f"SELECT state_json FROM {self._qualified(STATE)} WHERE state_key = {self._mark(1)}", self._params(key)).scalar()
        return None if value is None else json.loads(value)

    def _bookkeeping(self) -> None:
        # Across destinations: PostgreSQL's CREATE ... IF NOT EXISTS fails when two sessions create the same table at once.
        with self._lock, _bookkeeping_lock:
            if getattr(self, "_bookkept", False):
                return
            with self._guard(), self._engine().begin() as conn:
                if self._schema:
                    conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {self.q(self._schema)}")
                conn.exec_driver_sql(
                    f"CREATE TABLE IF NOT EXISTS {self._qualified(LOADS)} (run_id VARCHAR(64) NOT NULL, table_name VARCHAR(200) NOT NULL,"
                    f" rows_loaded BIGINT NOT NULL, quarantined_rows BIGINT NOT NULL, committed_at {self.timestamp_ddl}, PRIMARY KEY (run_id, table_name))"
                )
                conn.exec_driver_sql(f"CREATE TABLE IF NOT EXISTS {self._qualified(STATE)} (state_key VARCHAR(300) NOT NULL PRIMARY KEY, state_json TEXT NOT NULL, run_id VARCHAR(64))")
            self._bookkept = True

    # -- dialect pieces -------------------------------------------------------
    seq_ddl: ClassVar[str | None] = None
    seq_expr: ClassVar[str] = SEQ
    true: ClassVar[str] = "TRUE"
    timestamp_ddl: ClassVar[str] = "TIMESTAMP"

    def clear_sql(self, target: str) -> str:
        return f"DELETE FROM {target}"

    def widen_sql(self, column: str, new_type: str) -> str:
        return f"ALTER TABLE {self.q(self.spec.table)} ALTER COLUMN {self.q(column)} TYPE {new_type}"

    def upsert_sql(self, target: str, columns: list[str], source: str) -> str:
        """The dialect's INSERT ... ON CONFLICT / MERGE of ``source`` (deduplicated by key) into ``target``."""
        raise NotImplementedError

    def null_as(self, sql_type: str) -> str:
        return f"CAST(NULL AS {sql_type})"

    def key_type(self, sql_type: str) -> str:
        """The column type of a primary key column created for merge."""
        return sql_type

    def _mark(self, n: int) -> str:
        return "%s" if self._engine().dialect.paramstyle in ("format", "pyformat") else "?"

    def _params(self, *values: Any) -> tuple[Any, ...]:
        return values

    def _guard(self) -> _Errors:
        return _Errors(self)


class _Errors:
    """Turns driver exceptions into our tree, with the password scrubbed from the message."""

    def __init__(self, dest: SQLDestination) -> None:
        self.dest = dest

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or isinstance(exc, AgentETLError) or not isinstance(exc, Exception):
            return False
        raise connection_error(exc, self.dest.spec.url, self.dest.where, data_hint="the staged rows do not fit the target; check types, NOT NULL and key columns") from exc


def _without(staged: dict[str, dict[str, dict[str, Any]]], dropped: set[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """The staged tables' columns less ``dropped`` (the columns ``schema: discard`` leaves out)."""
    return {n: {c: column for c, column in cols.items() if c not in dropped} for n, cols in staged.items()}


def _short(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _run_prefix(run_id: str) -> str:
    return f"{STAGING_PREFIX}{_short(run_id)}_"
