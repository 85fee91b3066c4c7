"""Where each side of a reconciliation is computed: a database engine, or DuckDB over a reader's batches.

A database (PostgreSQL, MariaDB/MySQL, DuckDB) computes its fingerprint
itself; a file or SQLite source is read once more through its own reader and
DuckDB aggregates the batches as they stream, in this process. An API is
never read again (see reconcile.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from agent_orchestrated_etl.connectors.incremental import Window
from agent_orchestrated_etl.connectors.incremental import window_predicates as sql_window
from agent_orchestrated_etl.exceptions import ConfigurationError, DataError
from agent_orchestrated_etl.verify.fingerprint import Dialect

_MYSQL_TYPES = {
    0: "decimal",
    246: "decimal",
    1: "tinyint",
    2: "smallint",
    3: "int",
    8: "bigint",
    9: "mediumint",
    13: "year",
    4: "float",
    5: "double",
    7: "timestamp",
    12: "datetime",
    10: "date",
    11: "time",
    16: "bit",
}


class DatabaseSide:
    """A relation in PostgreSQL or MariaDB/MySQL, queried over a connection of its own."""

    def __init__(self, url: str, relation: str, where: list[str], *, label: str) -> None:
        import sqlalchemy as sa

        from agent_orchestrated_etl.connectors.sql.common import scheme, sqlalchemy_url

        self.url, self.relation, self.where, self.label = url, relation, where, label
        self.dialect: Dialect = "postgresql" if scheme(url).startswith("postgres") else "mysql"
        # Its own engine: the session settings below must not leak into the connectors' pools.
        self._engine = sa.create_engine(sqlalchemy_url(url), poolclass=sa.pool.NullPool)

    def quote(self, name: str) -> str:
        return f"`{name.replace('`', '``')}`" if self.dialect == "mysql" else '"' + name.replace('"', '""') + '"'

    def _cursor_run(self, sql: str, read: Callable[[Any], Any]) -> Any:
        from agent_orchestrated_etl.connectors.sql.common import connection_error

        try:
            with self._engine.connect() as conn:
                cursor = conn.connection.cursor()
                if self.dialect == "mysql":
                    cursor.execute("SET time_zone = '+00:00'")
                cursor.execute(sql)
                return read(cursor)
        except Exception as exc:
            raise connection_error(exc, self.url, self.label) from exc

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._cursor_run(sql, lambda c: c.fetchall())]

    def types(self) -> dict[str, str]:
        def described(cursor: Any) -> dict[str, str]:
            cursor.fetchall()
            if self.dialect == "postgresql":
                return {c.name: c.type_display for c in cursor.description}
            return {c[0]: _MYSQL_TYPES.get(c[1], "text") for c in cursor.description}

        return self._cursor_run(f"SELECT * FROM {self.relation} LIMIT 0", described)

    def close(self) -> None:
        self._engine.dispose()


class SQLiteCount:
    """A SQLite target, which has no md5: only its row count is asked for."""

    def __init__(self, url: str, table: str, *, label: str) -> None:
        import sqlalchemy as sa

        from agent_orchestrated_etl.connectors.sqlite.spec import database_path

        self.url, self.label = url, label
        self.relation = '"' + table.replace('"', '""') + '"'
        self._engine = sa.create_engine(f"sqlite:///{database_path(url, None)}", poolclass=sa.pool.NullPool)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        from agent_orchestrated_etl.connectors.sql.common import connection_error

        try:
            with self._engine.connect() as conn:
                return [tuple(r) for r in conn.exec_driver_sql(sql)]
        except Exception as exc:
            raise connection_error(exc, self.url, self.label) from exc

    def close(self) -> None:
        self._engine.dispose()


class DuckDBSide:
    """A relation in a DuckDB file: through this process's own connection to it, if it has one."""

    dialect: Dialect = "duckdb"

    def __init__(self, path: str, relation: str, where: list[str], *, label: str) -> None:
        self.path, self.relation, self.where, self.label = Path(path).expanduser(), relation, where, label
        self._conn: Any = None

    def quote(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def _cursor(self) -> Any:
        import duckdb

        from agent_orchestrated_etl.connectors.duckdb.client import shared_connection

        if self._conn is None:
            shared = shared_connection(self.path)
            if shared is not None:
                self._conn = shared.cursor()
            elif not self.path.exists():
                raise ConfigurationError(
                    f"database file not found: {self.path}", where=self.label, hint="check `path:`"
                )
            else:
                try:
                    self._conn = duckdb.connect(str(self.path), read_only=True)
                except duckdb.IOException as exc:
                    raise ConfigurationError(
                        str(exc).splitlines()[0],
                        where=self.label,
                        hint="another process holds the file; verify when it is done",
                    ) from exc
        return self._conn

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return self._fetch(sql)

    def _fetch(self, sql: str) -> list[tuple[Any, ...]]:
        import duckdb

        try:
            return self._cursor().execute(sql).fetchall()
        except duckdb.Error as exc:
            raise DataError(
                str(exc).splitlines()[0],
                where=self.label,
                hint="the verify query failed; check the table and its columns",
            ) from exc

    def types(self) -> dict[str, str]:
        return {row[0]: row[1] for row in self._fetch(f"DESCRIBE SELECT * FROM {self.relation}")}

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


class ReaderSide:
    """A source read again through its own reader; DuckDB aggregates its batches as they stream."""

    dialect: Dialect = "duckdb"
    #: The name the batches are scanned under; ``relation`` may wrap it in a SELECT.
    table = "_aetl_src"

    def __init__(self, batches: Callable[[], Iterator[pa.RecordBatch]], *, label: str) -> None:
        import duckdb

        self._batches, self.label = batches, label
        self.relation, self.where = self.table, list[str]()
        self._conn = duckdb.connect()
        self._schema: pa.Schema | None = None

    def quote(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def _reader(self) -> pa.RecordBatchReader:
        batches = self._batches()
        first = next(batches, None)
        if self._schema is None:
            self._schema = first.schema if first is not None else pa.schema([])
        schema = self._schema

        def conformed() -> Iterator[pa.RecordBatch]:
            for batch in [first] if first is not None else []:
                yield batch
            for batch in batches:
                yield (
                    batch
                    if batch.schema.equals(schema)
                    else pa.Table.from_batches([batch])
                    .select(schema.names)
                    .cast(schema)
                    .combine_chunks()
                    .to_batches()[0]
                )

        return pa.RecordBatchReader.from_batches(schema, conformed())

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        import duckdb

        self._conn.register(self.table, self._reader())
        try:
            return self._conn.execute(sql).fetchall()
        except (duckdb.Error, pa.ArrowException) as exc:
            raise DataError(
                str(exc).splitlines()[0],
                where=self.label,
                hint="reading the source again for verify failed; `columns:` can leave out a column it cannot compare",
            ) from exc
        finally:
            self._conn.unregister(self.table)

    def types(self) -> dict[str, str]:
        # A reader reads the first batch only, for its schema.
        schema = self._reader().schema if self._schema is None else self._schema
        self._conn.register(
            self.table, pa.table({n: pa.array([], type=t) for n, t in zip(schema.names, schema.types, strict=True)})
        )
        try:
            return {row[0]: row[1] for row in self._conn.execute(f"DESCRIBE SELECT * FROM {self.relation}").fetchall()}
        finally:
            self._conn.unregister(self.table)

    def close(self) -> None:
        self._conn.close()


def window_predicates(window: Window, quote: Callable[[str], str], dialect: Dialect) -> list[str]:
    """The rows of one run's incremental window, in the engine's SQL: ``cursor >= start`` (``>``), ``<= end``.

    The rows the window excluded at its start (loaded by the run before) are
    compared too: both sides hold them, unchanged if nothing changed them.
    """
    return sql_window(window, quote, lambda value: _literal(value, dialect))


def _literal(value: Any, dialect: Dialect) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | dt.date):
        raise ConfigurationError(f"incremental bound {value!r} is not a number, date or timestamp")
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None and dialect == "mysql":  # the MySQL side reads in UTC
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        kind = "TIMESTAMPTZ" if value.tzinfo is not None else "TIMESTAMP"
        return f"{kind} '{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    return repr(value) if isinstance(value, float) else str(value)
