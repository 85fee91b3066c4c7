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

import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa

from agent_orchestrated_etl.connectors.base import DestinationCapabilities
from agent_orchestrated_etl.connectors.sql import schema as schemas
from agent_orchestrated_etl.connectors.sql.client import SQLAlchemyClient, SQLAlchemySession
from agent_orchestrated_etl.connectors.sql.common import redact
from agent_orchestrated_etl.connectors.sql.protocol import (
    KINDS,
    Kind,
    Published,
    Session,
    TransactionalDestination,
    short_hash,
)
from agent_orchestrated_etl.connectors.sql.types import arrow_type, ddl_type
from agent_orchestrated_etl.exceptions import ConfigurationError

SEQ = "_aetl_seq"
#: The staging prefix of these engines before the protocol's one prefix; resume adopts, commit and abort drop.
LEGACY_PREFIX = "_aetl_stg_"


@dataclass
class _Prepared:
    """What the schema DDL left for the publish: the staged columns to publish, or the rows a rename published."""

    staged: dict[str, dict[str, dict[str, Any]]]
    renamed: int | None = None
    changes: list[str] = field(default_factory=list)
    key_added: str | None = None


class SQLDestination(TransactionalDestination):
    """The staged destination of a database reached through SQLAlchemy; each engine gives its client and upsert."""

    capabilities = DestinationCapabilities(transactional=True, write_modes=frozenset({"append", "replace", "merge"}))
    label: ClassVar[str] = "sql"
    #: The engine's client class (its bulk path and its transactions).
    client_class: ClassVar[type[SQLAlchemyClient]] = SQLAlchemyClient

    def __init__(self, spec: Any, *, memory_limit_bytes: int) -> None:
        super().__init__(spec, memory_limit_bytes=memory_limit_bytes)
        self._checked = False
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"{self.label} {redact(self.spec.url)} table {self.spec.table}"

    def make_client(self) -> SQLAlchemyClient:
        return self.client_class(self.spec.url, schema=self._schema, where=self.where)

    @property
    def sql(self) -> SQLAlchemyClient:
        client = self.client
        assert isinstance(client, SQLAlchemyClient)
        return client

    # -- names ----------------------------------------------------------------
    def legacy_prefix(self, run_id: str) -> str | None:
        # Before the one prefix, PostgreSQL, MariaDB and SQLite named their staging as now but for the prefix.
        return f"{LEGACY_PREFIX}{short_hash(run_id)}_{short_hash(self.target)[:6]}"

    def legacy_staging(self, run_id: str, task_id: str, kind: Kind) -> str | None:
        return f"{self.legacy_prefix(run_id)}{short_hash(task_id)}_{KINDS[kind]}"

    @property
    def _schema(self) -> str | None:
        return self.spec.table.rsplit(".", 1)[0] if "." in self.spec.table else None

    @property
    def _name(self) -> str:
        return self.spec.table.rsplit(".", 1)[-1]

    def q(self, name: str) -> str:
        return self.sql.quote_path(name)

    def _qualified(self, name: str) -> str:
        return self.client.qualified(name)

    def bookkeeping(self) -> None:
        if self._schema and not self._bookkept:
            with self.guard(), self.client.transaction() as session:
                session.execute(f"CREATE SCHEMA IF NOT EXISTS {self.q(self._schema)}")
        super().bookkeeping()

    # -- staging --------------------------------------------------------------
    def create_staging(self, name: str, schema: pa.Schema, *, kind: Kind) -> None:
        """The first batch of a task creates its table, after checking its schema against the target's."""
        if kind == "data":
            self._check_schema(schema)
        columns = [
            f"{self.q(f.name)} {ddl_type(self.client.types, f.type, column=f.name, where=self.where)}" for f in schema
        ]
        if kind == "data" and self.spec.write == "merge" and self.seq_ddl:
            columns.insert(0, f"{self.q(SEQ)} {self.seq_ddl}")
        with self.guard(), self.client.transaction() as session:
            session.execute(f"CREATE TABLE {self._qualified(name)} ({', '.join(columns)})")

    def _check_schema(self, incoming: pa.Schema) -> None:
        """Fail on the first batch, not at commit, when the data cannot go into the target."""
        with self._lock:
            if self._checked:
                return
            target = self._target_columns()
            if target is not None:
                changes = schemas.diff(
                    {n: self.target_type(c) for n, c in target.items()}, self._without_marker(incoming)
                )
                schemas.check(changes, mode=self.spec.schema_, where=self.where)
                if self.spec.write == "merge":
                    with self.guard(), self.client.session() as session:
                        self._missing_key(_conn(session), target)
            self._checked = True

    def _without_marker(self, incoming: pa.Schema) -> pa.Schema:
        marker = self.spec.hard_delete
        return pa.schema([f for f in incoming if f.name != marker])

    def _target_columns(self, conn: Any = None) -> dict[str, dict[str, Any]] | None:
        with self.guard():
            if conn is not None:
                return self.sql.reflect(SQLAlchemySession(conn), self._name)
            with self.client.session() as session:
                return self.sql.reflect(session, self._name)

    # -- the publish ----------------------------------------------------------
    def prepare(self, session: Session, staged: list[str]) -> _Prepared:
        conn = _conn(session)
        import sqlalchemy as sa

        inspector = sa.inspect(conn)
        columns = {n: self.staged_columns(inspector, n) for n in staged}
        self._key_added: str | None = None
        renamed, dropped, changes = self._prepare(conn, columns)
        kept = (
            {}
            if renamed is not None
            else {n: {c: v for c, v in cols.items() if c not in dropped} for n, cols in columns.items()}
        )
        return _Prepared(kept, renamed, changes, self._key_added)

    def publish(self, session: Session, staged: list[str], prepared: _Prepared) -> Published:
        rows = self._publish(_conn(session), prepared.staged, rows=prepared.renamed)
        return Published(rows, prepared.changes, prepared.key_added)

    def _prepare(
        self, conn: Any, staged: dict[str, dict[str, dict[str, Any]]]
    ) -> tuple[int | None, set[str], list[str]]:
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
        if target is None and self.client.transactions == "ddl" and self.spec.write != "merge" and len(staged) == 1:
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
                conn.exec_driver_sql(
                    f"ALTER TABLE {self.q(self.spec.table)} ADD COLUMN {self.q(added.name)}"
                    f" {self._compiled(wanted[added.name])}"
                )
        for name, _old, new in changes.widened:
            conn.exec_driver_sql(self.widen_sql(name, ddl_type(self.client.types, new, column=name, where=self.where)))
        if add_key is not None:
            self._add_key(conn, add_key)
        dropped = {f.name for f in changes.added} if discard else set()
        return (
            None,
            dropped,
            changes.summary(
                self.spec.schema_,
                lambda dtype: ddl_type(self.client.types, dtype, column="", where=self.where),
                lambda f: self._compiled(wanted[f.name]),
            ),
        )

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
                f"merge key {', '.join(absent)} is not a column of {self.spec.table}, and schema: discard would leave"
                " it out of the load",
                where=self.where,
                hint="add the column and a primary key on it to the table, or set schema: evolve",
            )
        if self._has_key(conn, keys):
            return None
        fix = self.add_key_sql(target)
        if not self._ours(conn):
            raise ConfigurationError(
                f"table {self.spec.table} has no primary key or unique index on ({listed}), which write: merge needs to"
                " match rows, and agent-etl did not create it",
                where=self.where,
                hint=f"add it: {fix}",
            )
        return fix

    def _has_key(self, conn: Any, keys: list[str]) -> bool:
        import sqlalchemy as sa

        inspector = sa.inspect(conn)
        wanted = set(keys)
        if set(inspector.get_pk_constraint(self._name, schema=self._schema).get("constrained_columns") or []) == wanted:
            return True
        if any(
            set(u["column_names"]) == wanted for u in inspector.get_unique_constraints(self._name, schema=self._schema)
        ):
            return True
        # A partial index (WHERE ...) does not make every key unique.
        return any(
            i.get("unique")
            and set(i["column_names"]) == wanted
            and not any(k.endswith("_where") and v is not None for k, v in i.get("dialect_options", {}).items())
            for i in inspector.get_indexes(self._name, schema=self._schema)
        )

    def _ours(self, conn: Any) -> bool:
        return self.ledger.ours(SQLAlchemySession(conn))

    def _add_key(self, conn: Any, sql: str) -> None:
        try:
            conn.exec_driver_sql(sql)
        except Exception as exc:
            raise ConfigurationError(
                f"cannot add the merge key ({', '.join(self.spec.primary_key)}) to {self.spec.table}, which agent-etl"
                f" loaded before: {str(getattr(exc, 'orig', exc)).splitlines()[0]}",
                where=self.where,
                hint=f"its rows hold duplicate or NULL keys (an earlier append?); remove them, then {sql}",
            ) from exc
        self._key_added = sql

    def add_key_sql(self, target: dict[str, dict[str, Any]]) -> str:
        """The DDL that adds the primary key on ``primary_key`` to the existing target."""
        return (
            f"ALTER TABLE {self.q(self.spec.table)} ADD PRIMARY KEY"
            f" ({', '.join(self.q(k) for k in self.spec.primary_key)})"
        )

    def target_type(self, column: dict[str, Any]) -> pa.DataType | None:
        """The Arrow type a reflected target column holds, to judge schema changes by."""
        return arrow_type(column["type"])

    def staged_columns(self, inspector: Any, name: str) -> dict[str, dict[str, Any]]:
        """A staging table's columns as SQLAlchemy reflects them (a dialect may add the declared "ddl")."""
        return {c["name"]: c for c in inspector.get_columns(name, schema=self._schema) if c["name"] != SEQ}

    def _compiled(self, column: dict[str, Any]) -> str:
        return column.get("ddl") or column["type"].compile(dialect=self.sql.engine.dialect)

    def _create_target(self, conn: Any, columns: dict[str, dict[str, Any]]) -> None:
        keys = set(self.spec.primary_key) if self.spec.write == "merge" else set()
        defs = [
            f"{self.q(n)} {self.key_type(self._compiled(c)) + ' NOT NULL' if n in keys else self._compiled(c)}"
            for n, c in columns.items()
        ]
        if self.spec.write == "merge":
            defs.append(f"PRIMARY KEY ({', '.join(self.q(k) for k in self.spec.primary_key)})")
        conn.exec_driver_sql(f"CREATE TABLE {self.q(self.spec.table)} ({', '.join(defs)})")

    def _publish(self, conn: Any, staged: dict[str, dict[str, dict[str, Any]]], *, rows: int | None = None) -> int:
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
        return rows

    def _union(self, staged: dict[str, dict[str, dict[str, Any]]], columns: list[str], *, extra: bool = False) -> str:
        """One SELECT over every staged table; a table lacking a column gives NULLs of the right type."""
        types = {n: c for cols in staged.values() for n, c in cols.items()}
        parts = []
        for i, (name, cols) in enumerate(staged.items()):
            listed = [
                self.q(c) if c in cols else f"{self.null_as(self._compiled(types[c]))} AS {self.q(c)}" for c in columns
            ]
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
            f"SELECT * FROM (SELECT u.*, ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY _aetl_task DESC, {SEQ} DESC)"
            f" AS _aetl_rn FROM ({self._union(staged, union_columns, extra=True)}) u) d WHERE _aetl_rn = 1"
        )
        target = self.q(self.spec.table)
        if marker:
            match = " AND ".join(f"s.{self.q(k)} = {target}.{self.q(k)}" for k in self.spec.primary_key)
            conn.exec_driver_sql(
                f"DELETE FROM {target} WHERE EXISTS (SELECT 1 FROM ({latest}) s WHERE {match} AND s.{self.q(marker)} ="
                f" {self.true})"
            )
            latest = f"SELECT * FROM ({latest}) k WHERE k.{self.q(marker)} IS NULL OR k.{self.q(marker)} <> {self.true}"
        conn.exec_driver_sql(self.upsert_sql(target, columns, latest))

    # -- dialect pieces -------------------------------------------------------
    seq_ddl: ClassVar[str | None] = None
    seq_expr: ClassVar[str] = SEQ
    true: ClassVar[str] = "TRUE"

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


def _conn(session: Session) -> Any:
    assert isinstance(session, SQLAlchemySession), "a SQL destination gets its client's sessions"
    return session.conn
