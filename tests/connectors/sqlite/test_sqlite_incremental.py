"""A SQLite TIMESTAMP column holds ISO text; as an incremental cursor its bounds are parsed by the declared type."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import duckdb

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.orchestrator import run_pipeline
from agent_orchestrated_etl.spec import parse_spec


def test_a_text_timestamp_column_is_an_incremental_cursor_over_two_runs(tmp_path: Path) -> None:
    db, out = tmp_path / "events.sqlite", tmp_path / "out.duckdb"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, ts TIMESTAMP, v TEXT)")
        conn.executemany(
            "INSERT INTO events VALUES (?, ?, ?)",
            [(1, "2024-01-01 00:00:00.000000", "a"), (2, "2024-01-02 03:46:40.000000", "b"), (3, None, "no time")],
        )
    text = f"""
name: events
sources:
  events: {{type: sqlite, path: "{db}", table: events, incremental: {{cursor: ts, primary_key: [id]}}}}
destination: {{type: duckdb, path: "{out}", table: events, write: append}}
"""
    first = run_pipeline(parse_spec(text, file="p.yaml"), Settings())
    assert first.ok and first.rows_written == 3, first.error
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO events VALUES (?, ?, ?)",
            [(4, "2024-01-02 03:46:40.500000", "c"), (5, "2024-01-03 00:00:00.000000", "d")],
        )
    second = run_pipeline(parse_spec(text, file="p.yaml"), Settings())
    assert second.ok and second.rows_written == 2, second.error
    third = run_pipeline(parse_spec(text, file="p.yaml"), Settings())
    assert third.ok and third.rows_written == 0, third.error
    with duckdb.connect(str(out), read_only=True) as conn:
        assert conn.execute("SELECT id, CAST(ts AS VARCHAR), v FROM events ORDER BY id").fetchall() == [
            (1, "2024-01-01 00:00:00", "a"),
            (2, "2024-01-02 03:46:40", "b"),
            (3, None, "no time"),
            (4, "2024-01-02 03:46:40.5", "c"),
            (5, "2024-01-03 00:00:00", "d"),
        ]
        (state,) = conn.execute("SELECT state_json FROM _agent_etl_state").fetchone()
    assert "2024-01-03T00:00:00" in state
