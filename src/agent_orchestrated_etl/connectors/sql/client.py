"""The protocol's engine client for databases reached through SQLAlchemy (PostgreSQL, MariaDB, SQLite).

Each engine's client (``postgres/client.py``, ...) adds only its bulk path;
this one binds Python rows, the slow road any SQLAlchemy database takes.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

from agent_orchestrated_etl.connectors.sql.common import connection_error, engine, quote_table
from agent_orchestrated_etl.connectors.sql.protocol import EngineClient, Session
from agent_orchestrated_etl.connectors.sql.types import arrow_type
from agent_orchestrated_etl.exceptions import AgentETLError


class SQLAlchemySession(Session):
    """A SQLAlchemy connection as a protocol session; ``conn`` for the dialect's own reflection."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.conn.exec_driver_sql(sql, tuple(params)) if params else self.conn.exec_driver_sql(sql)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        result = self.conn.exec_driver_sql(sql, tuple(params)) if params else self.conn.exec_driver_sql(sql)
        return [tuple(r) for r in result.all()]


class SQLAlchemyClient(EngineClient):
    """Talks to the database at ``url`` through one pooled engine per URL for the process."""

    def __init__(self, url: str, *, schema: str | None, where: str) -> None:
        super().__init__(schema=schema, where=where)
        self.url = url
        self.mark = "%s" if self.engine.dialect.paramstyle in ("format", "pyformat") else "?"

    @property
    def engine(self) -> Any:
        return engine(self.url)

    def quote(self, name: str) -> str:
        return str(self.engine.dialect.identifier_preparer.quote(name))

    def quote_path(self, name: str) -> str:
        """A ``schema.name`` as written in a spec, quoted part by part."""
        return quote_table(self.engine.dialect.identifier_preparer, name)

    @contextmanager
    def session(self) -> Iterator[SQLAlchemySession]:
        # SQLAlchemy begins a transaction anyway; committing at the end of the block keeps reads and drops cheap.
        with self.engine.begin() as conn:
            yield SQLAlchemySession(conn)

    @contextmanager
    def transaction(self) -> Iterator[SQLAlchemySession]:
        with self.engine.begin() as conn:
            yield SQLAlchemySession(conn)

    def bulk_load(self, table: str, batch: pa.RecordBatch) -> None:
        names = ", ".join(self.quote(n) for n in batch.schema.names)
        marks = ", ".join([self.mark] * batch.num_columns)
        with self.engine.begin() as conn:
            conn.exec_driver_sql(
                f"INSERT INTO {self.qualified(table)} ({names}) VALUES ({marks})",
                [tuple(r.values()) for r in batch.to_pylist()],
            )

    def tables(self, session: Session, prefix: str = "") -> list[str]:
        import sqlalchemy as sa

        return [n for n in sa.inspect(_conn(session)).get_table_names(schema=self.schema) if n.startswith(prefix)]

    def columns(self, session: Session, table: str) -> dict[str, pa.DataType | None] | None:
        reflected = self.reflect(session, table)
        return None if reflected is None else {n: arrow_type(c["type"]) for n, c in reflected.items()}

    def reflect(self, session: Session, table: str) -> dict[str, dict[str, Any]] | None:
        """SQLAlchemy's reflection of ``table``'s columns (name -> column dict), or None when it does not exist."""
        import sqlalchemy as sa

        inspector = sa.inspect(_conn(session))
        if not inspector.has_table(table, schema=self.schema):
            return None
        return {c["name"]: c for c in inspector.get_columns(table, schema=self.schema)}

    def driver_errors(self) -> tuple[type[BaseException], ...]:
        import sqlalchemy as sa

        found: list[type[BaseException]] = [sa.exc.SQLAlchemyError, pa.ArrowException, OSError]
        for module, name in _DRIVER_ERRORS:
            try:
                found.append(getattr(importlib.import_module(module), name))
            except ImportError:  # an optional driver that is not installed raises nothing
                continue
        return tuple(found)

    def error(self, exc: Exception, *, data_hint: str | None = None) -> AgentETLError:
        return connection_error(exc, self.url, self.where, data_hint=data_hint)

    def close(self) -> None:
        return None  # the engine is shared by every connector of the URL in this process


# The base classes of the drivers behind SQLAlchemy and of the bulk paths (ADBC; DuckDB writes MariaDB's CSV files).
_DRIVER_ERRORS = [
    ("psycopg", "Error"),
    ("pymysql.err", "Error"),
    ("sqlite3", "Error"),
    ("adbc_driver_manager", "Error"),
    ("duckdb", "Error"),
]


def _conn(session: Session) -> Any:
    assert isinstance(session, SQLAlchemySession), "a SQLAlchemy client gets its own sessions"
    return session.conn
