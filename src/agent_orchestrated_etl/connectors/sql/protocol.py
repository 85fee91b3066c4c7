"""The staged-destination protocol, written once for every database engine.

Every engine loads through the same steps (docs: the commit protocol)::

    begin(run, task)       drop what an earlier attempt of the task staged
    write_batch(...)       append to the task's staging table (``STAGING_PREFIX``...), which no reader sees
    commit(run, tasks)     publish the staging into the target, record the run in the loads ledger
                           (``_agent_etl_loads``) and the incremental state: one atomic step
    abort(run)             drop the run's staging of this target; the target stays as it was

``committed`` and ``staged_rows`` answer from the ledger and the staging tables,
which is what resume and the settlement of a crashed run read.

What differs per engine is kept in two small pieces, as Dagster's DbClient and
DbTypeHandler keep them apart:

- an ``EngineClient``: how to talk to the engine (sessions and transactions,
  bulk-loading one batch, listing and describing tables, and its family's map
  of driver errors to the exception tree);
- a ``TypeTable`` (``types.py``): how it stores each Arrow type, as data.

The publish itself (append, replace or merge, under the schema policy) is the
engine's SQL, given by the destination's ``publish``. Two ways make it atomic:

- ``TransactionalDestination``: one transaction holds the publish, the ledger
  row and the state. An engine whose DDL commits by itself (MariaDB) runs its
  DDL (``prepare``) in a transaction just before.
- ``LedgerDestination``: for engines without multi-statement transactions
  (ClickHouse), as the file destinations' manifest does. The publish is
  idempotent per run and marked in the ledger before it starts; the ledger
  row written last, one single-row insert carrying the state, is the commit.
"""

from __future__ import annotations

import hashlib
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import pyarrow as pa

from agent_orchestrated_etl.connectors.base import QUARANTINE_SCHEMA, CommitResult, Destination
from agent_orchestrated_etl.connectors.sql.types import TypeTable, ddl_type
from agent_orchestrated_etl.exceptions import AgentETLError

#: The one prefix of every engine's staging tables; a target may not start with it.
STAGING_PREFIX = "_agent_etl_stg_"
LOADS = "_agent_etl_loads"
STATE = "_agent_etl_state"
Kind = Literal["data", "quarantine"]
KINDS: dict[Kind, str] = {"data": "d", "quarantine": "q"}


@dataclass
class Published:
    """What a publish did: the rows it published, the schema policy's changes, the merge key it added."""

    rows: int
    schema_changes: list[str] = field(default_factory=list)
    key_added: str | None = None
    #: The incremental state the publish stored with the data (``LedgerDestination.landed``), if it did.
    state: dict[str, Any] | None = None

    def result(self, quarantined: int) -> CommitResult:
        return CommitResult(
            rows=self.rows, quarantined_rows=quarantined, schema_changes=self.schema_changes, key_added=self.key_added
        )


class Session(ABC):
    """One connection of an engine, inside a transaction or not: run SQL, read rows back."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement; ``params`` fill the client's ``mark`` placeholders."""

    @abstractmethod
    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one query and return its rows."""

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row, or None without rows."""
        found = self.rows(sql, params)
        return found[0][0] if found else None


class EngineClient(ABC):
    """How to talk to one engine: a small class per engine, no knowledge of loads in it.

    ``transactions`` says what the engine's transactions hold: ``"ddl"`` (DDL
    and DML alike: PostgreSQL, SQLite, DuckDB), ``"dml"`` (DDL commits by itself:
    MariaDB), ``"none"`` (one statement at a time: ClickHouse).
    """

    transactions: ClassVar[Literal["ddl", "dml", "none"]] = "ddl"
    #: The driver's placeholder for one parameter.
    mark: str = "?"
    #: How this engine stores each Arrow type.
    types: ClassVar[TypeTable]

    def __init__(self, *, schema: str | None, where: str) -> None:
        self.schema = schema
        self.where = where

    @abstractmethod
    def quote(self, name: str) -> str:
        """One identifier, quoted."""

    def qualified(self, name: str) -> str:
        """A table of the target's schema, quoted."""
        return f"{self.quote(self.schema)}.{self.quote(name)}" if self.schema else self.quote(name)

    @abstractmethod
    def session(self) -> AbstractContextManager[Session]:
        """A session whose statements commit one by one."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Session]:
        """A session whose statements commit together when the block ends, and roll back if it raises."""

    @abstractmethod
    def bulk_load(self, table: str, batch: pa.RecordBatch) -> None:
        """Append ``batch`` to staging table ``table`` (of the target's schema) by the engine's bulk path."""

    def flush(self, table: str) -> None:  # noqa: B027 - only buffering clients hold rows back
        """Write out what ``bulk_load`` buffered for ``table``."""

    def discard(self, table: str) -> None:  # noqa: B027 - only buffering clients hold rows back
        """Forget what ``bulk_load`` buffered for ``table`` (its staging is dropped)."""

    @abstractmethod
    def tables(self, session: Session, prefix: str = "") -> list[str]:
        """The tables of the target's schema whose names start with ``prefix``."""

    @abstractmethod
    def columns(self, session: Session, table: str) -> dict[str, pa.DataType | None] | None:
        """The Arrow type each column of ``table`` holds (None: cannot tell), or None when there is no such table."""

    def create_table(
        self, name: str, columns: Sequence[tuple[str, str]], *, key: Sequence[str] = (), exists_ok: bool = False
    ) -> str:
        """The CREATE TABLE statement of the ledger, the state, a staging or a quarantine table.

        ``columns`` are (name, column type) pairs; ``key`` the primary key. An
        engine may add its table options (ClickHouse's ENGINE and ORDER BY).
        """
        defs = [f"{self.quote(n)} {t}" for n, t in columns]
        if key:
            defs.append(f"PRIMARY KEY ({', '.join(self.quote(k) for k in key)})")
        return f"CREATE TABLE {'IF NOT EXISTS ' if exists_ok else ''}{self.qualified(name)} ({', '.join(defs)})"

    def rename_table(self, old: str, new: str) -> str:
        """The statement that renames table ``old`` of the target's schema to ``new``, in the same schema."""
        return f"ALTER TABLE {self.qualified(old)} RENAME TO {self.quote(new)}"

    def driver_errors(self) -> tuple[type[BaseException], ...]:
        """The exception classes of the engine's drivers, which ``error`` maps; any other is a bug and propagates."""
        return (OSError,)

    @abstractmethod
    def error(self, exc: Exception, *, data_hint: str | None = None) -> AgentETLError:
        """The family's one map of a driver error to the exception tree (by SQLSTATE, error number or class)."""

    def close(self) -> None:  # noqa: B027 - a client may hold nothing open
        """Release connections."""


@dataclass(frozen=True)
class Ledger:
    """The loads ledger and the state table of one target.

    ``rows_column`` is the name the ledger's row count has in databases
    written before: ``rows`` in DuckDB files, ``rows_loaded`` elsewhere.
    """

    client: EngineClient
    table: str
    rows_column: str = "rows_loaded"

    def create(self, session: Session) -> None:
        types = self.client.types
        key, text, count, stamp = types.key_text, types.text, types.ddl(pa.int64()), types.ddl(pa.timestamp("us"))
        session.execute(
            self.client.create_table(
                LOADS,
                [
                    ("run_id", f"{key} NOT NULL"),
                    ("table_name", f"{key} NOT NULL"),
                    (self.rows_column, f"{count} NOT NULL"),
                    ("quarantined_rows", f"{count} NOT NULL"),
                    ("committed_at", stamp),
                ],
                key=("run_id", "table_name"),
                exists_ok=True,
            )
        )
        session.execute(
            self.client.create_table(
                STATE,
                [("state_key", f"{key} NOT NULL"), ("state_json", f"{text} NOT NULL"), ("run_id", key)],
                key=("state_key",),
                exists_ok=True,
            )
        )

    def loaded(self, session: Session, run_id: str) -> tuple[int, int] | None:
        """(rows, quarantined rows) the ledger records for ``run_id`` on this target, or None."""
        m = self.client.mark
        found = session.rows(
            f"SELECT {self.client.quote(self.rows_column)}, quarantined_rows FROM {self.client.qualified(LOADS)}"
            f" WHERE run_id = {m} AND table_name = {m}",
            (run_id, self.table),
        )
        return (int(found[0][0]), int(found[0][1])) if found else None

    def ours(self, session: Session) -> bool:
        """Whether agent-etl ever loaded this target."""
        m = self.client.mark
        return bool(session.rows(f"SELECT 1 FROM {self.client.qualified(LOADS)} WHERE table_name = {m}", (self.table,)))

    def record(self, session: Session, run_id: str, rows: int, quarantined: int, state: dict[str, Any] | None) -> None:
        m, q = self.client.mark, self.client.qualified
        session.execute(
            f"INSERT INTO {q(LOADS)} (run_id, table_name, {self.client.quote(self.rows_column)},"
            " quarantined_rows, committed_at)"
            f" VALUES ({m}, {m}, {m}, {m}, {m})",
            (run_id, self.table, rows, quarantined, datetime.now(UTC).replace(tzinfo=None)),
        )
        for key, value in (state or {}).items():
            session.execute(f"DELETE FROM {q(STATE)} WHERE state_key = {m}", (key,))
            session.execute(
                f"INSERT INTO {q(STATE)} (state_key, state_json, run_id) VALUES ({m}, {m}, {m})",
                (key, json.dumps(value), run_id),
            )

    def state(self, session: Session, key: str) -> Any | None:
        value = session.scalar(
            f"SELECT state_json FROM {self.client.qualified(STATE)} WHERE state_key = {self.client.mark}", (key,)
        )
        return None if value is None else json.loads(value)


class StagedDestination(Destination):
    """What every engine's destination shares: staging names, staging, the ledger, abort and resume.

    A subclass gives ``make_client`` and the engine's ``publish``; its
    ``TransactionalDestination`` or ``LedgerDestination`` base gives ``commit``.
    """

    #: Test hook: called inside ``commit`` after the data is published and before the commit point.
    before_commit: ClassVar[Callable[[str], None] | None] = None
    #: See ``Ledger.rows_column``.
    ledger_rows_column: ClassVar[str] = "rows_loaded"

    def __init__(self, spec: Any, *, memory_limit_bytes: int) -> None:
        super().__init__(spec, memory_limit_bytes=memory_limit_bytes)
        self._client: EngineClient | None = None
        self._client_lock = threading.Lock()
        self._bookkept = False
        self._created: set[str] = set()

    # -- the client -------------------------------------------------------------
    @abstractmethod
    def make_client(self) -> EngineClient:
        """The engine's client for this destination's target."""

    @property
    def client(self) -> EngineClient:
        with self._client_lock:
            if self._client is None:
                self._client = self.make_client()
            return self._client

    @property
    def target(self) -> str:
        """The target table as the spec names it (``schema.name`` or ``name``)."""
        return str(self.spec.table)

    @property
    def target_name(self) -> str:
        """The target table without its schema."""
        return self.target.rsplit(".", 1)[-1]

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.client, self.target, self.ledger_rows_column)

    # -- names ------------------------------------------------------------------
    def staging(self, run_id: str, task_id: str, kind: Kind = "data") -> str:
        """A task's staging table: short (PostgreSQL cuts names at 63 bytes) and findable by run and target."""
        return f"{self.own_prefix(run_id)}{short_hash(task_id)}_{KINDS[kind]}"

    def own_prefix(self, run_id: str) -> str:
        # The target's part keeps apart the staging of destinations of one run in one schema (a table each),
        # so aborting one (critical: false) leaves the others' staging for their commits.
        return f"{STAGING_PREFIX}{short_hash(run_id)}_{short_hash(self.target)[:6]}"

    def legacy_prefix(self, run_id: str) -> str | None:
        """The prefix of this target's staging of ``run_id`` as the engine named it before the one staging prefix.

        None (the default): the engine's staging names never changed. Resume adopts a
        checkpointed task's staging of those names (``staged_rows``); ``commit`` and
        ``abort`` drop the rest, which no name of now would find.
        """
        return None

    def legacy_staging(self, run_id: str, task_id: str, kind: Kind) -> str | None:
        """A task's staging table under the names before the one prefix (None: see ``legacy_prefix``)."""
        return None

    def legacy_leftovers(self, session: Session, run_id: str) -> list[str]:
        """The staging tables of ``run_id`` on this target that still have the names of before the one prefix."""
        prefix = self.legacy_prefix(run_id)
        return [] if prefix is None else self.client.tables(session, prefix)

    def _adoptable(self, session: Session, run_id: str, task_id: str) -> dict[str, str]:
        """The renames (old name -> name now) that adopt a task's staging of before the one prefix; {} when none.

        Safe because the ledger never changed: the run is not committed (resume asks
        only then), the staged rows are checked against the checkpoint after this,
        and a quarantine staging of other columns is not adopted (the task is read again).
        """
        legacy = {kind: self.legacy_staging(run_id, task_id, kind) for kind in KINDS}
        present = set(self.legacy_leftovers(session, run_id))
        if legacy["data"] not in present:
            return {}
        quarantine = legacy["quarantine"]
        if quarantine in present and set(self.client.columns(session, quarantine) or {}) != set(
            QUARANTINE_SCHEMA.names
        ):
            return {}
        return {name: self.staging(run_id, task_id, kind) for kind, name in legacy.items() if name in present}

    # -- staging ----------------------------------------------------------------
    def bookkeeping(self) -> None:
        """Create the ledger and the state table once per destination (and whatever else the engine needs first)."""
        with _bookkeeping_lock:
            if self._bookkept:
                return
            with self.guard():
                self.create_ledger()
            self._bookkept = True

    def create_ledger(self) -> None:
        """Create the loads ledger and the state table if they are missing, in one transaction."""
        with self.client.transaction() as session:
            self.ledger.create(session)

    def begin(self, run_id: str, task_id: str) -> None:
        self.bookkeeping()
        with self.guard(), self.client.transaction() as session:
            for kind in KINDS:
                name = self.staging(run_id, task_id, kind)
                self.client.discard(name)
                session.execute(f"DROP TABLE IF EXISTS {self.client.qualified(name)}")
                self._created.discard(name)

    def write_batch(self, run_id: str, task_id: str, batch: pa.RecordBatch) -> None:
        self._stage(self.staging(run_id, task_id), batch, kind="data")

    def write_quarantine(self, run_id: str, task_id: str, rows: pa.RecordBatch) -> None:
        self._stage(self.staging(run_id, task_id, "quarantine"), rows, kind="quarantine")

    def _stage(self, name: str, batch: pa.RecordBatch, *, kind: Kind) -> None:
        if name not in self._created:
            self.create_staging(name, batch.schema, kind=kind)
            self._created.add(name)
        with self.guard():
            self.client.bulk_load(name, batch)

    def create_staging(self, name: str, schema: pa.Schema, *, kind: Kind) -> None:
        """Create staging table ``name`` for batches of ``schema``, its columns from the type table.

        An engine that creates its staging from the first batch itself (DuckDB) makes this a no-op.
        """
        columns = [(f.name, ddl_type(self.client.types, f.type, column=f.name, where=self.where)) for f in schema]
        with self.guard(), self.client.transaction() as session:
            session.execute(self.client.create_table(name, columns))

    def finish(self, run_id: str, task_id: str) -> None:
        for kind in KINDS:
            with self.guard():
                self.client.flush(self.staging(run_id, task_id, kind))

    def staged_names(self, session: Session, run_id: str, task_ids: list[str], kind: Kind) -> list[str]:
        """The staging tables of ``task_ids`` that exist, in task order (a task that staged nothing has none)."""
        present = set(self.client.tables(session, self.own_prefix(run_id)))
        return [n for n in (self.staging(run_id, t, kind) for t in task_ids) if n in present]

    def count(self, session: Session, table: str) -> int:
        return int(session.scalar(f"SELECT count(*) FROM {self.client.qualified(table)}"))

    def drop(self, session: Session, names: list[str]) -> None:
        for name in names:
            session.execute(f"DROP TABLE IF EXISTS {self.client.qualified(name)}")
            self._created.discard(name)

    # -- the publish, per engine ------------------------------------------------
    def prepare(self, session: Session, staged: list[str]) -> Any:
        """The schema DDL before the publish (create the target, add or widen columns); what ``publish`` needs of it.

        Runs in the publish's transaction where the engine's DDL is transactional, just before it otherwise.
        """
        return None

    @abstractmethod
    def publish(self, session: Session, staged: list[str], prepared: Any) -> Published:
        """Publish the staged tables into the target (append, replace or merge), with what ``prepare`` returned."""

    def publish_quarantine(self, session: Session, staged: list[str]) -> int:
        """Append the staged quarantined rows to ``<target>__quarantine``; their count."""
        if not staged:
            return 0
        client, target = self.client, f"{self.target_name}__quarantine"
        if client.columns(session, target) is None:
            session.execute(client.create_table(target, [(f.name, client.types.text) for f in QUARANTINE_SCHEMA]))
        listed = ", ".join(client.quote(f.name) for f in QUARANTINE_SCHEMA)
        total = 0
        for name in staged:
            total += self.count(session, name)
            session.execute(
                f"INSERT INTO {client.qualified(target)} ({listed}) SELECT {listed} FROM {client.qualified(name)}"
            )
        return total

    # -- what resume and settlement read ---------------------------------------
    def committed(self, run_id: str) -> bool:
        self.bookkeeping()
        with self.guard(), self.client.session() as session:
            return self.ledger.loaded(session, run_id) is not None

    def staged_rows(self, run_id: str, task_id: str) -> int | None:
        """The task's staged data rows; staging named as before the one prefix is adopted first (``_adoptable``)."""
        name = self.staging(run_id, task_id)
        with self.guard():
            with self.client.session() as session:
                if name in self.client.tables(session, name):
                    return self.count(session, name)
                renames = self._adoptable(session, run_id, task_id)
            if not renames:
                return 0
            with self.client.transaction() as session:
                for old, new in renames.items():
                    session.execute(self.client.rename_table(old, new))
                return self.count(session, name)

    def read_state(self, key: str) -> Any | None:
        self.bookkeeping()
        with self.guard(), self.client.session() as session:
            return self.ledger.state(session, key)

    def abort(self, run_id: str) -> None:
        with self.guard():
            with self.client.session() as session:
                names = self.client.tables(session, self.own_prefix(run_id)) + self.legacy_leftovers(session, run_id)
            for name in names:
                self.client.discard(name)
            with self.client.transaction() as session:
                self.drop(session, names)

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- errors -----------------------------------------------------------------
    @property
    def where(self) -> str:
        return f"destination {self.target}"

    def guard(self) -> _Errors:
        """A block whose driver errors become our tree, through the client's map."""
        return _Errors(self)

    data_hint: ClassVar[str] = "the staged rows do not fit the target; check types, NOT NULL and key columns"


class TransactionalDestination(StagedDestination):
    """The publish, the ledger row and the state in one transaction."""

    def commit(self, run_id: str, task_ids: list[str], state: dict[str, Any] | None = None) -> CommitResult:
        """Publish the staged tables of ``task_ids`` and store ``state`` (state key -> JSON value) atomically."""
        for task_id in task_ids:
            self.finish(run_id, task_id)
        self.bookkeeping()
        client = self.client
        with self.guard():
            with client.session() as session:
                done = self.ledger.loaded(session, run_id)
                if done is None:
                    data = self.staged_names(session, run_id, task_ids, "data")
                    quarantine = self.staged_names(session, run_id, task_ids, "quarantine")
                    # Staging of before the one prefix that resume did not adopt (its tasks were read again) is no one's now.
                    leftovers = self.legacy_leftovers(session, run_id)
            if done is not None:
                return CommitResult(rows=done[0], quarantined_rows=done[1], already_committed=True)
            prepared = None
            if client.transactions == "dml":
                with client.transaction() as session:
                    prepared = self.prepare(session, data)
            with client.transaction() as session:
                if (done := self.ledger.loaded(session, run_id)) is not None:  # a commit beside this one won
                    return CommitResult(rows=done[0], quarantined_rows=done[1], already_committed=True)
                if client.transactions == "ddl":
                    prepared = self.prepare(session, data)
                published = self.publish(session, data, prepared)
                quarantined = self.publish_quarantine(session, quarantine)
                self.ledger.record(session, run_id, published.rows, quarantined, state)
                if (hook := type(self).before_commit) is not None:
                    hook(run_id)
                if client.transactions == "ddl":
                    self.drop(session, data + quarantine + leftovers)
            if client.transactions != "ddl":
                with client.session() as session:
                    self.drop(session, data + quarantine + leftovers)
        return published.result(quarantined)


class LedgerDestination(StagedDestination):
    """For engines without multi-statement transactions: an idempotent publish, then the ledger row as the commit.

    The ledger of this variant has a ``status`` column: ``publishing`` is
    written before the publish starts, ``committed`` (with the state, as JSON)
    after it ends. A commit that finds ``publishing`` for its run resumes an
    interrupted publish (``resumed=True``), which the engine must finish without
    publishing any row twice (replace by an atomic swap, append by an insert
    deduplicated per run, merge by the engine's replacing table). Until
    ``committed`` is written the load does not count: ``committed`` and
    ``read_state`` read only those rows.
    """

    def commit(self, run_id: str, task_ids: list[str], state: dict[str, Any] | None = None) -> CommitResult:
        for task_id in task_ids:
            self.finish(run_id, task_id)
        self.bookkeeping()
        ledger = self.ledger_rows
        with self.guard(), self.client.session() as session:
            status = ledger.status(session, run_id)
            if status is not None and status[0] == "committed":
                return CommitResult(rows=status[1], quarantined_rows=status[2], already_committed=True)
            data = self.staged_names(session, run_id, task_ids, "data")
            quarantine = self.staged_names(session, run_id, task_ids, "quarantine")
            resumed = status is not None
            if not resumed:
                ledger.mark(session, run_id, "publishing")
            landed = self.landed(session, run_id) if resumed else None
            published = landed or self.publish_once(session, run_id, data, resumed=resumed, state=state)
            quarantined = self.publish_quarantine_once(session, run_id, quarantine, resumed=resumed)
            if (hook := type(self).before_commit) is not None:
                hook(run_id)
            # The commit point: until this row is written, the run has not loaded.
            ledger.mark(session, run_id, "committed", rows=published.rows, quarantined=quarantined, state=state)
            self.drop(session, data + quarantine)
        return published.result(quarantined)

    @property
    def ledger_rows(self) -> StatusLedger:
        return StatusLedger(self.client, self.target)

    def create_ledger(self) -> None:
        with self.client.session() as session:
            self.ledger_rows.create(session)

    def publish(self, session: Session, staged: list[str], prepared: Any) -> Published:
        raise NotImplementedError("a ledger destination publishes through publish_once")

    @abstractmethod
    def publish_once(
        self, session: Session, run_id: str, staged: list[str], *, resumed: bool, state: dict[str, Any] | None
    ) -> Published:
        """Publish the staged tables so that running this again for ``run_id`` (``resumed``) publishes no row twice.

        ``state`` is what the ledger's committed row will carry; an engine whose
        publish is one atomic step may store it there too (and give it back from ``landed``).

        ``Published.rows`` are the rows the run published. When ``resumed``, part
        of it may have happened (a staging table already swapped in, an insert
        already done): the rows are the run's all the same.
        """

    @abstractmethod
    def publish_quarantine_once(self, session: Session, run_id: str, staged: list[str], *, resumed: bool) -> int:
        """``publish_quarantine`` that a resumed commit does not repeat (the rows carry their run_id)."""

    def landed(self, session: Session, run_id: str) -> Published | None:
        """The publish of ``run_id``, if the engine's own atomic publish marker says it landed (its rows and state).

        Asked for a run whose ledger row says ``publishing``: a crash between the
        publish and the committed row. When it answers, the committed row is
        written from it instead of publishing again. None (the default): the
        engine keeps no such marker, and the publish is resumed.
        """
        return None

    def committed(self, run_id: str) -> bool:
        """Whether ``run_id`` loaded; a publish that landed without its committed row gets the row now (settlement)."""
        self.bookkeeping()
        with self.guard(), self.client.session() as session:
            status = self.ledger_rows.status(session, run_id)
            if status is None or status[0] == "committed":
                return status is not None
            landed = self.landed(session, run_id)
            if landed is None:
                return False
            staged = self.client.tables(session, self.own_prefix(run_id))
            quarantine = [n for n in staged if n.endswith(f"_{KINDS['quarantine']}")]
            quarantined = self.publish_quarantine_once(session, run_id, quarantine, resumed=True)
            self.ledger_rows.mark(
                session, run_id, "committed", rows=landed.rows, quarantined=quarantined, state=landed.state
            )
            self.drop(session, staged)
        return True

    def read_state(self, key: str) -> Any | None:
        self.bookkeeping()
        with self.guard(), self.client.session() as session:
            return self.ledger_rows.state(session, key)


@dataclass(frozen=True)
class StatusLedger:
    """The ledger of ``LedgerDestination``: one row per (run, target, status), the state in the committed row.

    Only single-row inserts and reads: an engine without transactions (or
    without UPDATE) keeps it as an append-only table.
    """

    client: EngineClient
    table: str

    def create(self, session: Session) -> None:
        types = self.client.types
        key, text, count, stamp = types.key_text, types.text, types.ddl(pa.int64()), types.ddl(pa.timestamp("us"))
        session.execute(
            self.client.create_table(
                LOADS,
                [
                    ("run_id", key),
                    ("table_name", key),
                    ("status", key),
                    ("rows_loaded", count),
                    ("quarantined_rows", count),
                    ("state_json", text),
                    ("committed_at", stamp),
                ],
                key=("run_id", "table_name", "status"),
                exists_ok=True,
            )
        )

    def status(self, session: Session, run_id: str) -> tuple[str, int, int] | None:
        """("committed", rows, quarantined), or ("publishing", 0, 0) for an interrupted publish, or None."""
        m = self.client.mark
        found = session.rows(
            f"SELECT status, rows_loaded, quarantined_rows FROM {self.client.qualified(LOADS)}"
            f" WHERE run_id = {m} AND table_name = {m}",
            (run_id, self.table),
        )
        committed = [r for r in found if r[0] == "committed"]
        chosen = committed[0] if committed else found[0] if found else None
        return None if chosen is None else (str(chosen[0]), int(chosen[1] or 0), int(chosen[2] or 0))

    def mark(
        self,
        session: Session,
        run_id: str,
        status: Literal["publishing", "committed"],
        *,
        rows: int = 0,
        quarantined: int = 0,
        state: dict[str, Any] | None = None,
    ) -> None:
        m = self.client.mark
        session.execute(
            f"INSERT INTO {self.client.qualified(LOADS)}"
            " (run_id, table_name, status, rows_loaded, quarantined_rows, state_json, committed_at)"
            f" VALUES ({m}, {m}, {m}, {m}, {m}, {m}, {m})",
            (
                run_id,
                self.table,
                status,
                rows,
                quarantined,
                json.dumps(state or {}),
                datetime.now(UTC).replace(tzinfo=None),
            ),
        )

    def state(self, session: Session, key: str) -> Any | None:
        """The value of ``key`` in the newest committed row of any target that stored it."""
        found = session.rows(
            f"SELECT state_json FROM {self.client.qualified(LOADS)}"
            " WHERE status = 'committed' ORDER BY committed_at DESC"
        )
        for (text,) in found:
            values = json.loads(text or "{}")
            if key in values:
                return values[key]
        return None


class _Errors:
    """Turns driver exceptions into our tree through the client's map, with secrets scrubbed there."""

    def __init__(self, dest: StagedDestination) -> None:
        self.dest = dest

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        # Only the drivers' errors: an error of ours passes as it is, and any other is a bug to show as one.
        drivers = self.dest.client.driver_errors()
        if isinstance(exc, Exception) and not isinstance(exc, AgentETLError) and isinstance(exc, drivers):
            raise self.dest.client.error(exc, data_hint=self.dest.data_hint) from exc


_bookkeeping_lock = (
    threading.Lock()
)  # PostgreSQL's CREATE ... IF NOT EXISTS fails when two sessions create one table at once


def short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def run_staging_prefix(run_id: str) -> str:
    """The prefix of every staging table of ``run_id``, of any target."""
    return f"{STAGING_PREFIX}{short_hash(run_id)}_"
