"""Driver errors map to the exception tree by remedy, against real PostgreSQL and MariaDB errors."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from agent_orchestrated_etl.connectors.sql.common import connection_error
from agent_orchestrated_etl.exceptions import DataError, RetriableError, TransactionConflictError


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
    error = deadlock(url.replace("postgresql://", "postgresql+psycopg://"), f"{schema}.d", "UPDATE {table} SET v = v + 1 WHERE id = {id}")
    mapped = connection_error(error, url, "destination t")
    assert isinstance(mapped, TransactionConflictError) and isinstance(mapped, RetriableError)
    assert "deadlock detected" in str(mapped)


def test_a_mariadb_deadlock_is_retriable(mysql_database: str) -> None:
    error = deadlock(mysql_database.replace("mysql://", "mysql+pymysql://"), "d", "UPDATE {table} SET v = v + 1 WHERE id = {id}")
    assert isinstance(connection_error(error, mysql_database, "destination t"), TransactionConflictError)


def test_a_value_arrow_cannot_hold_is_a_data_error() -> None:
    mapped = connection_error(ValueError("The string 'nan' is not a valid decimal128 number"), "postgresql://u:secret@h/db", "source t")
    assert isinstance(mapped, DataError)
    assert "on_bad_data: quarantine" in str(mapped) and "secret" not in str(mapped)


def test_serialization_failures_are_retriable() -> None:
    error = RuntimeError("could not serialize access due to concurrent update")
    assert isinstance(connection_error(error, "postgresql://h/db", "source t"), TransactionConflictError)
