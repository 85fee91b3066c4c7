"""Incremental loads end to end through the agents: ties at the boundary, faults before commit, lag."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.connectors.duckdb import DuckDBDestination
from agent_orchestrated_etl.exceptions import ConnectionFailedError
from agent_orchestrated_etl.orchestrator import run_pipeline
from agent_orchestrated_etl.run_result import RunResult
from agent_orchestrated_etl.spec import parse_spec


def spec(url: str, schema: str, out: Path, *, write: str = "append", extra: str = "") -> str:
    return f"""
name: orders_sync
sources:
  orders:
    type: postgres
    url: {url}
    table: {schema}.orders
    incremental: {{cursor: updated_at, primary_key: [id]{extra}}}
destination: {{type: duckdb, path: {out}, table: orders, write: {write}{", primary_key: [id]" if write == "merge" else ""}}}
"""


def run(text: str) -> RunResult:
    return run_pipeline(parse_spec(text, file="p.yaml"), Settings())


def target(out: Path) -> list[tuple]:
    with duckdb.connect(str(out), read_only=True) as conn:
        return conn.execute("SELECT id, v FROM orders ORDER BY id").fetchall()


def state(out: Path) -> str | None:
    with duckdb.connect(str(out), read_only=True) as conn:
        row = conn.execute("SELECT state_json FROM _agent_etl_state WHERE state_key = 'orders_sync/orders'").fetchone()
    return row[0] if row else None


@pytest.fixture
def orders(pg_schema: tuple[str, str]) -> tuple[str, str, sa.Engine]:
    url, schema = pg_schema
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {schema}.orders (id int PRIMARY KEY, v text, updated_at timestamptz)")
        conn.exec_driver_sql(
            f"INSERT INTO {schema}.orders VALUES (1, 'a', '2024-01-01 10:00+00'), (2, 'b', '2024-01-02 10:00+00'), (3, 'c', '2024-01-02 10:00+00')"
        )
    return url, schema, engine


def insert(engine: sa.Engine, schema: str, values: str) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(f"INSERT INTO {schema}.orders VALUES {values}")


def test_rows_sharing_the_boundary_value_are_neither_lost_nor_duplicated(orders: tuple, tmp_path: Path) -> None:
    url, schema, engine = orders
    out = tmp_path / "w.duckdb"
    first = run(spec(url, schema, out))
    assert first.ok and first.rows_written == 3
    # A late row at exactly the committed mark, and a newer one.
    insert(engine, schema, "(4, 'late tie', '2024-01-02 10:00+00'), (5, 'e', '2024-01-03 10:00+00')")
    second = run(spec(url, schema, out))
    assert second.ok and second.rows_written == 2
    assert target(out) == [(1, "a"), (2, "b"), (3, "c"), (4, "late tie"), (5, "e")]
    decision = next(d for d in second.decisions if d["subject"] == "source orders")
    assert (
        decision["choice"]
        == "read incrementally from updated_at >= 2024-01-02 10:00:00+00:00, skipping 2 row(s) already loaded at that value"
    )
    third = run(spec(url, schema, out))
    assert third.ok and third.rows_written == 0
    assert len(target(out)) == 5


def test_a_fault_between_staging_and_commit_keeps_the_target_and_the_cursor(
    orders: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, schema, engine = orders
    out = tmp_path / "w.duckdb"
    assert run(spec(url, schema, out)).rows_written == 3
    before = (target(out), state(out))
    insert(engine, schema, "(6, 'f', '2024-02-01 00:00+00')")

    def crash(run_id: str) -> None:
        raise ConnectionFailedError("injected: the connection drops before COMMIT")

    monkeypatch.setattr(DuckDBDestination, "before_commit", crash)
    failed = run(spec(url, schema, out))
    assert failed.status == "failed" and "injected" in failed.error
    assert (target(out), state(out)) == before
    monkeypatch.setattr(DuckDBDestination, "before_commit", None)
    again = run(spec(url, schema, out))
    assert again.ok and again.rows_written == 1
    assert target(out)[-1] == (6, "f")


def test_lag_rereads_a_window_and_needs_merge(orders: tuple, tmp_path: Path) -> None:
    url, schema, engine = orders
    out = tmp_path / "w.duckdb"
    refused = run(spec(url, schema, out, extra=", lag: 1d"))
    assert refused.status == "failed"
    assert "incremental.lag re-reads rows already loaded" in refused.error and "write: append" in refused.error
    assert run(spec(url, schema, out, write="merge", extra=", lag: 1d")).rows_written == 3
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"UPDATE {schema}.orders SET v = 'B', updated_at = '2024-01-02 09:00+00' WHERE id = 2"
        )  # a late write, older than the mark
    again = run(spec(url, schema, out, write="merge", extra=", lag: 1d"))
    assert again.ok and again.rows_written == 3  # rows since 2024-01-01 10:00 (the mark minus a day) are read again
    assert target(out) == [(1, "a"), (2, "B"), (3, "c")]


def test_a_duckdb_source_loads_incrementally_into_postgres(pg_schema: tuple[str, str], tmp_path: Path) -> None:
    url, schema = pg_schema
    source_db = tmp_path / "src.duckdb"
    with duckdb.connect(str(source_db)) as conn:
        conn.execute("CREATE TABLE events (id INTEGER, seen DATE, v VARCHAR)")
        conn.execute(
            "INSERT INTO events VALUES (1, DATE '2024-03-01', 'a'), (2, DATE '2024-03-02', 'b'), (3, NULL, 'no date')"
        )
    text = f"""
name: events_sync
sources:
  events: {{type: duckdb, path: "{source_db}", table: events, partition: {{column: id, parts: 2}}, incremental: {{cursor: seen}}}}
destination: {{type: postgres, url: "{url}", table: {schema}.events}}
"""
    first = run(text)
    assert first.ok and first.rows_written == 3  # the first run takes the NULL cursor too
    with duckdb.connect(str(source_db)) as conn:
        conn.execute("INSERT INTO events VALUES (4, DATE '2024-03-02', 'same day'), (5, DATE '2024-03-05', 'later')")
    second = run(text)
    assert second.ok and second.rows_written == 2
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        assert [r[0] for r in conn.exec_driver_sql(f"SELECT id FROM {schema}.events ORDER BY id")] == [1, 2, 3, 4, 5]
        state = conn.exec_driver_sql(f"SELECT state_json FROM {schema}._agent_etl_state").scalar()
    engine.dispose()
    assert '"value": {"date": "2024-03-05"}' in state


def test_too_many_rows_at_the_mark_switch_to_a_strict_bound(
    orders: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent_orchestrated_etl.connectors import incremental

    monkeypatch.setattr(incremental, "MAX_BOUNDARY_ROWS", 1)
    url, schema, engine = orders
    out = tmp_path / "w.duckdb"
    assert run(spec(url, schema, out)).rows_written == 3
    assert '"keys": null' in state(out)  # rows 2 and 3 share the mark: more than one
    insert(engine, schema, "(7, 'g', '2024-01-03 00:00+00')")
    second = run(spec(url, schema, out))
    assert second.rows_written == 1
    assert (
        next(d for d in second.decisions if d["subject"] == "source orders")["choice"]
        == "read incrementally from updated_at > 2024-01-02 10:00:00+00:00"
    )
