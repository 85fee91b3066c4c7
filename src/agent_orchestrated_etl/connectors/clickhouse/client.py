"""How to talk to ClickHouse in process, through chdb: one connection, statements that commit one by one.

chdb runs the ClickHouse engine inside this process on one data directory
(``path``); a process can open one such directory at a time. ClickHouse has
no multi-statement transactions, so ``transaction()`` is a session like any
other and the destination (``LedgerDestination``) makes its publish
idempotent instead. Errors are mapped by ClickHouse's error code.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, ClassVar, Literal

import pyarrow as pa

from agent_orchestrated_etl.connectors.clickhouse.types import TYPES, arrow_type
from agent_orchestrated_etl.connectors.sql.protocol import EngineClient, Session
from agent_orchestrated_etl.exceptions import (
    AgentETLError,
    ConfigurationError,
    DataError,
    InternalError,
    MissingDependencyError,
    ResourceExhaustedError,
    TransactionConflictError,
)

_CODE = re.compile(r"Code: (\d+)\.")
# ClickHouse error codes (src/Common/ErrorCodes.cpp) by remedy.
_DATA = {
    6,  # CANNOT_PARSE_TEXT
    27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    53,  # TYPE_MISMATCH
    69,  # ARGUMENT_OUT_OF_BOUND
    70,  # CANNOT_CONVERT_TYPE
    321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
    407,  # DECIMAL_OVERFLOW
}
_EXHAUSTED = {241, 243}  # MEMORY_LIMIT_EXCEEDED, NOT_ENOUGH_SPACE
_CONFLICT = {473, 236}  # DEADLOCK_AVOIDED, ABORTED
_CONFIGURATION = {
    36,  # BAD_ARGUMENTS (a second data directory in one process)
    76,  # CANNOT_OPEN_FILE
    81,  # UNKNOWN_DATABASE
    107,  # FILE_DOESNT_EXIST
    291,  # DATABASE_ACCESS_DENIED
    1001,  # STD_EXCEPTION (permissions on the data directory)
}
_PARAM_TYPES: dict[type, str] = {bool: "Bool", int: "Int64", float: "Float64", str: "String", datetime: "DateTime64(6)"}


class ChdbSession(Session):
    def __init__(self, client: ChdbClient) -> None:
        self.client = client

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.client.query(sql, params)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        table = self.client.query(sql, params, arrow=True)
        return list(zip(*(c.to_pylist() for c in table.columns), strict=True))


class ChdbClient(EngineClient):
    transactions: ClassVar[Literal["ddl", "dml", "none"]] = "none"
    types = TYPES

    def __init__(self, *, path: str, schema: str, where: str) -> None:
        super().__init__(schema=schema, where=where)
        self.database = schema
        self.path = path
        self._conn: Any = None
        # One statement at a time on the connection: a streaming insert holds it until it finishes.
        self._lock = threading.RLock()

    def _connection(self) -> Any:
        if self._conn is None:
            try:
                import chdb
            except ImportError:
                raise MissingDependencyError("the clickhouse destination", "clickhouse") from None
            try:
                self._conn = chdb.connect(self.path)
            except Exception as exc:
                raise self.error(exc) from exc
            if self.database != "default":
                self._conn.query(f"CREATE DATABASE IF NOT EXISTS {self.quote(self.database)} ENGINE = Atomic")
        return self._conn

    def query(self, sql: str, params: Sequence[Any] = (), *, arrow: bool = False) -> Any:
        """Run one statement; ``?`` marks become ClickHouse's typed parameters, bound by the engine."""
        named: dict[str, Any] = {}
        parts = sql.split(self.mark)
        if len(parts) != len(params) + 1:
            raise InternalError(
                f"{len(parts) - 1} parameter marks for {len(params)} values in {sql!r}", where=self.where
            )
        text = parts[0]
        for i, (value, part) in enumerate(zip(params, parts[1:], strict=True)):
            named[f"p{i}"] = value
            text += f"{{p{i}:{_PARAM_TYPES[type(value)]}}}{part}"
        with self._lock:
            return self._connection().query(text, "ArrowTable" if arrow else "CSV", params=named)

    def quote(self, name: str) -> str:
        return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"

    @contextmanager
    def session(self) -> Iterator[Session]:
        yield ChdbSession(self)

    def transaction(self) -> Any:
        # No multi-statement transactions: each statement commits alone (see the module's docstring).
        return self.session()

    def bulk_load(self, table: str, batch: pa.RecordBatch) -> None:
        batch, sink = _storable(batch), io.BytesIO()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        try:
            with (
                self._lock,
                self._connection().send_insert(f"INSERT INTO {self.qualified(table)}", "ArrowStream") as ins,
            ):
                ins.append(sink.getvalue())
                ins.finish()
        except RuntimeError as exc:  # the streaming insert raises chdb's messages as plain RuntimeError
            raise self.error(exc) from exc

    def driver_errors(self) -> tuple[type[BaseException], ...]:
        import chdb

        return (chdb.ChdbError,)

    def tables(self, session: Session, prefix: str = "") -> list[str]:
        found = session.rows(
            "SELECT name FROM system.tables WHERE database = ? AND startsWith(name, ?) ORDER BY name",
            (self.database, prefix),
        )
        return [str(name) for (name,) in found]

    def described(self, session: Session, table: str) -> list[tuple[str, str, str]] | None:
        """(name, ClickHouse type, comment) of each column of ``table``, in order; None when there is no such table."""
        if table not in self.tables(session, table):
            return None
        found = session.rows(
            "SELECT name, type, comment FROM system.columns WHERE database = ? AND table = ? ORDER BY position",
            (self.database, table),
        )
        return [(str(n), str(t), str(c)) for n, t, c in found]

    def columns(self, session: Session, table: str) -> dict[str, pa.DataType | None] | None:
        described = self.described(session, table)
        return None if described is None else {n: arrow_type(t, c) for n, t, c in described}

    def comment(self, session: Session, table: str) -> str | None:
        """The table's comment (where the destination marks which run published it), or None without the table."""
        found = session.rows(
            "SELECT comment FROM system.tables WHERE database = ? AND name = ?", (self.database, table)
        )
        return str(found[0][0]) if found else None

    def create_table(
        self, name: str, columns: Sequence[tuple[str, str]], *, key: Sequence[str] = (), exists_ok: bool = False
    ) -> str:
        # Block numbers and offsets give each staged row its arrival order, which a merge needs (the last row wins).
        # A key orders the table, so that a merge's DELETE of staged keys skips the granules without them;
        # data columns are all Nullable, hence allow_nullable_key.
        order = f"({', '.join(self.quote(k) for k in key)})" if key else "tuple()"
        return (
            f"CREATE TABLE {'IF NOT EXISTS ' if exists_ok else ''}{self.qualified(name)}"
            f" ({', '.join(f'{self.quote(n)} {t}' for n, t in columns)}) ENGINE = MergeTree ORDER BY {order}"
            " SETTINGS enable_block_number_column = 1, enable_block_offset_column = 1, allow_nullable_key = 1"
        )

    def error(self, exc: Exception, *, data_hint: str | None = None) -> AgentETLError:
        message = str(exc)
        found = _CODE.search(message)
        code = int(found.group(1)) if found else None
        where = f"{self.where} (chdb data directory {self.path})"
        if code in _DATA:
            return DataError(f"ClickHouse refused the rows: {message}", where=where, hint=data_hint)
        if code in _EXHAUSTED:
            return ResourceExhaustedError(
                f"ClickHouse ran out of memory or disk: {message}",
                where=where,
                hint="free memory, or disk space under the data directory, then run `agent-etl resume <run id>`",
            )
        if code in _CONFLICT:
            return TransactionConflictError(f"ClickHouse aborted a statement: {message}", where=where)
        if code in _CONFIGURATION or "EmbeddedServer" in message:
            return ConfigurationError(
                f"cannot use the chdb data directory: {message}",
                where=where,
                hint="check that the path is writable; one process opens one chdb data directory at a time,"
                " so give every clickhouse destination of a pipeline the same path",
            )
        return InternalError(f"ClickHouse failed: {message}", where=where, hint="report it with the run id")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _storable(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Extension columns as their storage (JSON text, 16-byte UUIDs), which ClickHouse's Arrow input reads."""
    if not any(isinstance(f.type, pa.BaseExtensionType) for f in batch.schema):
        return batch
    columns = [c.storage if isinstance(c, pa.ExtensionArray) else c for c in batch.columns]
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)
