"""Which branch of the exception tree a database driver's error belongs to, read from its code.

One table per family, keyed by what the server itself reports: SQLSTATE for
PostgreSQL (an exact code first, then its two-character class), the error
number for MySQL and MariaDB, the primary result code for SQLite. The
message text is never consulted while a code is there.

Text is the fallback only where no code exists to read:

- libpq reports a failed connection attempt, and a connection that ended
  under a running query (``pg_terminate_backend``, a server restart), without
  SQLSTATE: psycopg's ``sqlstate`` is None and ADBC raises a bare OSError
  from the stream. What libpq says then is matched by ``_LIBPQ``.
- DuckDB's postgres extension passes on only libpq's text. Its own
  exception classes come first (``_DUCKDB``), then the same ``_LIBPQ`` text.
- SQLite's result code for any SQL error is SQLITE_ERROR, a missing table included.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Literal

Kind = Literal["transient", "conflict", "resource", "auth", "missing", "data", "config"]

# PostgreSQL: exact SQLSTATEs, then classes (the first two characters).
_POSTGRES_CODES: dict[str, Kind] = {
    "57P01": "transient",  # admin_shutdown: pg_terminate_backend, a fast shutdown
    "57P02": "transient",  # crash_shutdown
    "57P03": "transient",  # cannot_connect_now: the server is starting up
    "57P05": "transient",  # idle_session_timeout
    "53300": "transient",  # too_many_connections: a slot frees up
    "57014": "transient",  # query_canceled: statement_timeout under load
    "55P03": "conflict",  # lock_not_available: lock_timeout
    "40001": "conflict",  # serialization_failure
    "40P01": "conflict",  # deadlock_detected
    "42P01": "missing",  # undefined_table
    "3F000": "missing",  # invalid_schema_name
    "3D000": "missing",  # invalid_catalog_name: no such database
    "42501": "auth",  # insufficient_privilege
}
_POSTGRES_CLASSES: dict[str, Kind] = {
    "08": "transient",  # connection exception
    "40": "conflict",  # transaction rollback
    "53": "resource",  # insufficient resources (out of memory, disk full)
    "28": "auth",  # invalid authorization specification
    "22": "data",  # data exception
    "23": "data",  # integrity constraint violation: the rows do not fit the target
}

# MySQL and MariaDB error numbers (client errors are 2000 and up).
_MYSQL_CODES: dict[int, Kind] = {
    2002: "transient",  # can't connect through the socket
    2003: "transient",  # can't connect to the server
    2006: "transient",  # server has gone away
    2013: "transient",  # lost connection during query
    2055: "transient",  # lost connection at a system error
    1040: "transient",  # too many connections
    1053: "transient",  # server shutdown in progress
    1927: "transient",  # MariaDB: connection was killed
    4031: "transient",  # disconnected by the server for inactivity
    1317: "transient",  # query execution was interrupted
    3024: "transient",  # max_execution_time exceeded
    1205: "conflict",  # lock wait timeout
    1213: "conflict",  # deadlock
    1045: "auth",  # access denied (password)
    1698: "auth",  # access denied (no password, or a socket-only user)
    1044: "auth",  # access denied to the database
    1142: "auth",  # command denied on a table
    1143: "auth",  # command denied on a column
    1146: "missing",  # no such table
    1049: "missing",  # unknown database
    1051: "missing",  # unknown table
    1037: "resource",  # out of memory
    1038: "resource",  # out of sort memory
    1041: "resource",  # out of memory
    1114: "resource",  # the table is full
    1048: "data",  # column cannot be null
    1062: "data",  # duplicate entry
    1264: "data",  # out of range value
    1265: "data",  # data truncated
    1292: "data",  # incorrect value
    1366: "data",  # incorrect string value
    1406: "data",  # data too long
    1690: "data",  # value out of range
    3140: "data",  # invalid JSON
    4025: "data",  # CHECK constraint failed
}

# SQLite primary result codes (the low byte of an extended code).
_SQLITE_CODES: dict[int, Kind] = {
    5: "conflict",  # SQLITE_BUSY: another connection writes
    6: "conflict",  # SQLITE_LOCKED
    7: "resource",  # SQLITE_NOMEM
    13: "resource",  # SQLITE_FULL
    14: "missing",  # SQLITE_CANTOPEN
    18: "data",  # SQLITE_TOOBIG
    19: "data",  # SQLITE_CONSTRAINT
    20: "data",  # SQLITE_MISMATCH
}

# What libpq says where it gives no SQLSTATE (see the module docstring); first match wins.
_LIBPQ: list[tuple[re.Pattern[str], Kind]] = [
    (re.compile(r'password authentication failed|role "[^"]*" does not exist|no pg_hba\.conf entry'), "auth"),
    (re.compile(r'database "[^"]*" does not exist|relation "[^"]*" does not exist'), "missing"),
    # FATAL ends the session: the server went away or threw us out; a new connection may well work.
    (
        re.compile(
            r"\bFATAL:|connection to server .*failed|could not connect|server closed the connection|no connection to the server"
            r"|could not (send|receive) data (to|from) server|SSL SYSCALL error|SSL connection has been closed|could not translate host name"
        ),
        "transient",
    ),
]

# DuckDB's exception classes, for its postgres extension (most specific first).
_DUCKDB: list[tuple[str, Kind]] = [
    ("CatalogException", "missing"),
    ("OutOfMemoryException", "resource"),
    ("ConversionException", "data"),
    ("OutOfRangeException", "data"),
]
# DuckDB's exception classes for its own errors (a DuckDB file, a Parquet file it reads); other classes are "config".
_DUCKDB_OWN: list[tuple[str, Kind]] = [
    *_DUCKDB,
    ("TypeMismatchException", "data"),
    ("ConstraintException", "data"),
    ("InvalidInputException", "data"),  # a damaged Parquet file, a value a cast refuses
    ("TransactionException", "conflict"),  # a write-write conflict between two cursors of one database
]

_MYSQL_IN_TEXT = re.compile(
    r"\bERROR (\d{4,5}) \([0-9A-Z]{5}\)"
)  # connectorx: "MySqlError { ERROR 1146 (42S02): ... }"
_OS_ERROR_IN_TEXT = re.compile(r"\(os error \d+\)")  # connectorx: a socket error of the operating system
_SQLSTATE_IN_TEXT = re.compile(r"SQLSTATE: ([0-9A-Z]{5})")  # ADBC appends it to the message


def classify(exc: BaseException, family: str) -> Kind:
    """The kind of failure ``exc`` is; ``family`` is the URL scheme of the database it came from."""
    chain = list(_chain(exc))
    if family == "duckdb":
        return _by_class(chain, _DUCKDB_OWN) or "config"
    if any(type(e).__module__.startswith(("duckdb", "_duckdb")) for e in chain):
        return _duckdb(chain)
    if family.startswith("postgres"):
        return _postgres(chain)
    if family in ("mysql", "mariadb"):
        return _mysql(chain)
    if family == "sqlite":
        return _sqlite(chain)
    return _generic(chain)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The error, the driver error SQLAlchemy wrapped (``orig``), and their causes."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [getattr(e, "orig", None), e.__cause__, e.__context__]


def _postgres(chain: list[BaseException]) -> Kind:
    for e in chain:
        state = getattr(e, "sqlstate", None)
        if not isinstance(state, str):
            found = _SQLSTATE_IN_TEXT.search(str(e))
            state = found.group(1) if found else None
        if state:
            return _POSTGRES_CODES.get(state) or _POSTGRES_CLASSES.get(state[:2]) or "config"
    return _libpq(chain) or _generic(chain)


def _mysql(chain: list[BaseException]) -> Kind:
    for e in chain:
        number = (
            e.args[0] if e.args and isinstance(e.args[0], int) and type(e).__module__.startswith("pymysql") else None
        )
        if number is None and (found := _MYSQL_IN_TEXT.search(str(e))):
            number = int(found.group(1))
        if number is not None:
            return _MYSQL_CODES.get(number, "config")
    if any(_OS_ERROR_IN_TEXT.search(str(e)) for e in chain):
        return "transient"
    return _generic(chain)


def _sqlite(chain: list[BaseException]) -> Kind:
    # SQLITE_ERROR (1) is every SQL error alike, and ADBC gives no code at all: a missing table is told by its words.
    if any("no such table" in str(e) for e in chain):
        return "missing"
    for e in chain:
        code = getattr(e, "sqlite_errorcode", None)
        if isinstance(code, int):
            return _SQLITE_CODES.get(code & 0xFF, "config")
    return _generic(chain)


def _by_class(chain: list[BaseException], table: list[tuple[str, Kind]]) -> Kind | None:
    names = {cls.__name__ for e in chain for cls in type(e).__mro__}
    return next((kind for name, kind in table if name in names), None)


def _duckdb(chain: list[BaseException]) -> Kind:
    """An error of DuckDB's postgres extension: DuckDB's class, else what libpq said."""
    if (kind := _by_class(chain, _DUCKDB)) is not None:
        return kind
    names = {cls.__name__ for e in chain for cls in type(e).__mro__}
    found = _libpq(chain)
    if found:
        return found
    # An IOException of the extension that libpq did not explain is still the connection.
    return "transient" if "IOException" in names else "config"


def _libpq(chain: list[BaseException]) -> Kind | None:
    text = "\n".join(str(e) for e in chain)
    return next((kind for pattern, kind in _LIBPQ if pattern.search(text)), None)


def _generic(chain: list[BaseException]) -> Kind:
    exc = chain[0]
    if isinstance(exc, ValueError):  # pyarrow's ArrowInvalid too: a value the Arrow conversion cannot hold
        return "data"
    if isinstance(exc, ConnectionError | TimeoutError):
        return "transient"
    return "config"
