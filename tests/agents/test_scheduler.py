"""The scheduler reads the destinations' capabilities: one that stages one task at a time gets one at a time."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.orchestrator import run_pipeline
from agent_orchestrated_etl.spec import load_spec

SPEC = """\
name: orders
sources:
  orders: {{type: file, path: "data/*.csv"}}
destination: {{type: sqlite, url: "sqlite:///{target}", table: orders, write: replace}}
"""


def test_partitions_of_a_sqlite_destination_are_staged_one_at_a_time(tmp_path: Path) -> None:
    # SQLite locks its file for a write: parallel staging failed with "database is locked".
    data = tmp_path / "data"
    data.mkdir()
    for f in range(4):
        rows = "\n".join(f"{f * 5000 + i},{i % 7}" for i in range(5000))
        (data / f"part-{f}.csv").write_text(f"id,amount\n{rows}\n")
    spec = tmp_path / "orders.yaml"
    spec.write_text(SPEC.format(target=tmp_path / "out.db"))
    result = run_pipeline(load_spec(spec), Settings())
    assert result.status == "succeeded", result.error
    assert [t.status for t in result.tasks] == ["succeeded"] * 4
    with sqlite3.connect(tmp_path / "out.db") as con:
        assert con.execute("SELECT count(*), count(DISTINCT id) FROM orders").fetchone() == (20_000, 20_000)
