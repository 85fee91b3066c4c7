"""Driver errors map to the exception tree by remedy, against real PostgreSQL and MariaDB errors."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa
from tests.conftest import run_sql

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.connectors.duckdb import postgres_extension
from agent_orchestrated_etl.connectors.sql.common import connection_error
from agent_orchestrated_etl.exceptions import (
    AuthError,
    ConfigurationError,
    ConnectionFailedError,
    DataError,
    RetriableError,
    SourceNotFoundError,
    TransactionConflictError,
)
from agent_orchestrated_etl.orchestrator import run_pipeline
from agent_orchestrated_etl.spec import parse_spec


def deadlock(url: str, table: str, update: str) -> Exception:
    """Two transactions that lock two rows in opposite orders: the server kills one of them."""
    engine = sa.create_engine(url, pool_size=2)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {table} (id int PRIMARY KEY, v int)")
        conn.exec_driver_sql(f"INSERT INTO {table} VALUES (1, 0), (2, 0)")
    both_locked = threading.Barrier(2)
    errors: list[Exception] = []

    def worker(first: int, second: int) -> None:
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(update.format(table=table, id=first))
                both_locked.wait(timeout=10)
                conn.exec_driver_sql(update.format(table=table, id=second))
        except Exception as exc:  # noqa: BLE001 - the deadlock victim's error is what we want
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(1, 2)), threading.Thread(target=worker, args=(2, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {table}")
    engine.dispose()
    assert len(errors) == 1
    return errors[0]


def test_a_postgres_deadlock_is_retriable(pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    error = deadlock(
        url.replace("postgresql://", "postgresql+psycopg://"),
        f"{schema}.d",
        "UPDATE {table} SET v = v + 1 WHERE id = {id}",
    )
    mapped = connection_error(error, url, "destination t")
    assert isinstance(mapped, TransactionConflictError) and isinstance(mapped, RetriableError)
    assert "deadlock detected" in str(mapped)


def test_a_mariadb_deadlock_is_retriable(mysql_database: str) -> None:
    error = deadlock(
        mysql_database.replace("mysql://", "mysql+pymysql://"), "d", "UPDATE {table} SET v = v + 1 WHERE id = {id}"
    )
    assert isinstance(connection_error(error, mysql_database, "destination t"), TransactionConflictError)


def test_a_value_arrow_cannot_hold_is_a_data_error() -> None:
    mapped = connection_error(
        ValueError("The string 'nan' is not a valid decimal128 number"), "postgresql://u:secret@h/db", "source t"
    )
    assert isinstance(mapped, DataError)
    assert "on_bad_data: quarantine" in str(mapped) and "secret" not in str(mapped)


def test_a_postgres_serialization_failure_is_retriable_by_its_sqlstate(pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="REPEATABLE READ")
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {schema}.s (id int PRIMARY KEY, v int)")
        conn.exec_driver_sql(f"INSERT INTO {schema}.s VALUES (1, 0)")
    with engine.connect() as first, engine.connect() as second:
        first.exec_driver_sql(f"SELECT v FROM {schema}.s").all()
        second.exec_driver_sql(f"UPDATE {schema}.s SET v = 1 WHERE id = 1")
        second.commit()
        with pytest.raises(sa.exc.OperationalError) as caught:
            first.exec_driver_sql(f"UPDATE {schema}.s SET v = 2 WHERE id = 1")
    engine.dispose()
    assert caught.value.orig.sqlstate == "40001"
    assert isinstance(connection_error(caught.value, url, "source t"), TransactionConflictError)


def _error(call: Callable[[], object]) -> Exception:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the driver's own error is what we classify
        return exc
    raise AssertionError("no error")


def _psycopg(url: str, sql: str = "SELECT 1") -> None:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


def _adbc(url: str, sql: str = "SELECT 1") -> None:
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(sql)
        cursor.fetchall()


def _duckdb_scanner(url: str, sql: str | None = None) -> None:
    with duckdb.connect() as conn:
        conn.execute(f"LOAD '{postgres_extension()}'")
        conn.execute(f"ATTACH '{url}' AS pg (TYPE postgres, READ_ONLY)")
        if sql:
            conn.execute(sql).fetchall()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("driver", [_psycopg, _adbc, _duckdb_scanner], ids=["psycopg", "adbc", "duckdb-postgres"])
def test_postgres_failures_to_connect_are_classed_alike_by_every_driver(
    postgres_url: str, driver: Callable[..., None]
) -> None:
    base = postgres_url.rsplit("/", 1)[0]
    refused = f"postgresql://postgres@127.0.0.1:{closed_port()}/db"
    cases = {
        refused: ConnectionFailedError,
        base.replace("postgres@", "no_such_role_x@") + "/postgres": AuthError,
        base + "/no_such_database_x": SourceNotFoundError,
    }
    got = {url: type(connection_error(_error(lambda u=url: driver(u)), url, "source t")) for url in cases}
    assert got == cases


def test_postgres_errors_under_a_query_are_classed_by_sqlstate(pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    got = {
        (name, sql): type(connection_error(_error(lambda d=driver, q=sql: d(url, q)), url, "source t"))
        for name, driver in (("psycopg", _psycopg), ("adbc", _adbc))
        for sql in (f"SELECT * FROM {schema}.nope", "SELECT 1 / 0", "SELEC 1")
    }
    assert set(got.values()) == {SourceNotFoundError, DataError, ConfigurationError}
    assert [got[(n, f"SELECT * FROM {schema}.nope")] for n in ("psycopg", "adbc")] == [
        SourceNotFoundError,
        SourceNotFoundError,
    ]
    assert [got[(n, "SELECT 1 / 0")] for n in ("psycopg", "adbc")] == [DataError, DataError]
    assert [got[(n, "SELEC 1")] for n in ("psycopg", "adbc")] == [ConfigurationError, ConfigurationError]
    scanned = _error(lambda: _duckdb_scanner(url, f"SELECT * FROM pg.{schema}.nope"))
    assert type(connection_error(scanned, url, "task t")) is SourceNotFoundError


def test_mariadb_errors_are_classed_by_error_number(mysql_database: str) -> None:
    def pymysql(url: str, sql: str = "SELECT 1") -> None:
        engine = sa.create_engine(url.replace("mysql://", "mysql+pymysql://"))
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(sql)
        finally:
            engine.dispose()

    def connectorx(url: str, sql: str) -> None:
        import connectorx as cx

        for _ in cx.read_sql(url, sql, return_type="arrow_stream", batch_size=10):
            pass

    refused = f"mysql://root@127.0.0.1:{closed_port()}/db"
    cases = [
        (lambda: pymysql(refused), refused, 2003, ConnectionFailedError),
        (lambda: pymysql(mysql_database.replace("root@", "no_such_user_x:pw@")), mysql_database, 1698, AuthError),
        (lambda: pymysql(mysql_database, "SELECT * FROM nope"), mysql_database, 1146, SourceNotFoundError),
        (lambda: pymysql(mysql_database, "SELECT CAST('x' AS JSON)"), mysql_database, None, ConfigurationError),
    ]
    for call, url, number, expected in cases:
        error = _error(call)
        if number is not None:
            assert error.orig.args[0] in (number, 1045)
        assert type(connection_error(error, url, "source t")) is expected, error
    assert (
        type(
            connection_error(
                _error(lambda: connectorx(mysql_database, "SELECT * FROM nope")), mysql_database, "source t"
            )
        )
        is SourceNotFoundError
    )


def _source_spec(url: str, schema: str, table: str) -> str:
    return f"""
name: pg_copy
sources:
  t: {{type: postgres, url: "{url}", table: {schema}.{table}}}
destination: {{type: duckdb, path: out.duckdb, table: t, write: replace}}
retry: {{attempts: 2, backoff_seconds: 0}}
"""


@pytest.mark.parametrize("pushdown", ["true", "false"])
def test_a_refused_postgres_connection_is_retried_on_both_paths(
    pg_schema: tuple[str, str], pushdown: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, schema = pg_schema
    run_sql(url, f"CREATE TABLE {schema}.t (id int)")
    monkeypatch.setenv("AGENT_ETL_PUSHDOWN", pushdown)
    monkeypatch.chdir(tmp_path)
    refused = url.replace("127.0.0.1:5432", f"127.0.0.1:{closed_port()}")
    result = run_pipeline(parse_spec(_source_spec(refused, schema, "t"), file=str(tmp_path / "p.yaml")), Settings())
    assert not result.ok
    task = "t[0]>t"
    choices = [
        (d["choice"], d["reason"].split(";")[0])
        for d in result.decisions
        if d["subject"] == f"task {task}" and d["choice"] in ("retry", "fail")
    ]
    assert [t.kind for t in result.tasks] == ["pushdown" if pushdown == "true" else "extract_load"]
    assert choices == [
        ("retry", "ConnectionFailedError is transient"),
        ("fail", "ConnectionFailedError persisted through 2 attempts"),
    ]


def test_a_backend_terminated_mid_read_is_retried_and_every_row_loads_once(
    pg_schema: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, schema = pg_schema
    # pg_sleep keeps the COPY running long enough to be terminated under it.
    run_sql(
        url,
        f"CREATE VIEW {schema}.slow AS SELECT g AS id FROM generate_series(1, 20000) g WHERE pg_sleep(0.0002) IS NOT NULL",
    )
    monkeypatch.setenv("AGENT_ETL_PUSHDOWN", "false")
    monkeypatch.chdir(tmp_path)
    terminated: list[int] = []

    def terminate_once() -> None:
        deadline = time.monotonic() + 60
        while not terminated and time.monotonic() < deadline:
            rows = run_sql(
                url,
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'COPY%%{schema}%%slow%%' AND pid <> pg_backend_pid()",
            )
            terminated.extend(1 for (done,) in rows if done)
            time.sleep(0.2)

    killer = threading.Thread(target=terminate_once)
    killer.start()
    try:
        result = run_pipeline(parse_spec(_source_spec(url, schema, "slow"), file=str(tmp_path / "p.yaml")), Settings())
    finally:
        killer.join()
    assert terminated == [1]
    assert result.ok and result.rows_written == 20000
    [retry] = [d for d in result.decisions if d["subject"] == "task t[0]>t" and d["choice"] in ("retry", "fail")]
    assert retry["choice"] == "retry" and retry["reason"].startswith(
        "ConnectionFailedError is transient; attempt 2 of 2"
    )
    with duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT id), min(id), max(id) FROM t").fetchone() == (
            20000,
            20000,
            1,
            20000,
        )


@pytest.mark.parametrize(
    "message",
    [
        "consuming input failed: server closed the connection unexpectedly",
        "SSL SYSCALL error: EOF detected",
        "could not receive data from server: Connection reset by peer",
    ],
)
def test_libpq_messages_of_a_broken_connection_without_sqlstate_are_retriable(message: str) -> None:
    # Provoking these needs a network that fails mid-query; libpq gives them no SQLSTATE.
    import psycopg

    error = psycopg.OperationalError(message)
    assert error.sqlstate is None
    assert isinstance(connection_error(error, "postgresql://h/db", "source t"), ConnectionFailedError)


def test_a_postgres_statement_timeout_is_retriable_as_before(postgres_url: str) -> None:
    error = _error(lambda: _psycopg(postgres_url + "?options=-c%20statement_timeout%3D50", "SELECT pg_sleep(1)"))
    assert error.orig.sqlstate == "57014"
    assert isinstance(connection_error(error, postgres_url, "source t"), ConnectionFailedError)


def test_sqlite_errors_are_classed_by_result_code_and_a_missing_table_is_missing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")

    def run(sql: str) -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql(sql)

    missing, duplicate = _error(lambda: run("SELECT * FROM nope")), _error(lambda: run("INSERT INTO t VALUES (1)"))
    engine.dispose()
    assert type(connection_error(missing, url, "source t")) is SourceNotFoundError
    assert duplicate.orig.sqlite_errorcode & 0xFF == 19  # SQLITE_CONSTRAINT
    assert type(connection_error(duplicate, url, "destination t")) is DataError
