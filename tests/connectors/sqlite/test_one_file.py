"""Several SQLite destinations of one run writing into one database file."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.orchestrator import run_pipeline
from agent_orchestrated_etl.spec import parse_spec

ROWS = 60_000  # several batches each, so that the two destinations' writes overlap in time


def test_two_destinations_in_one_file_both_commit_every_row(tmp_path: Path) -> None:
    for name in ("a", "b"):
        with (tmp_path / f"{name}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "v"])
            writer.writerows((i, f"{name}{i}") for i in range(ROWS))
    for round_ in range(3):
        _run_into(tmp_path, tmp_path / f"out{round_}.db")


def _run_into(tmp_path: Path, out: Path) -> None:
    text = f"""
name: one_file
sources:
  a: {{type: file, path: "{tmp_path / "a.csv"}"}}
  b: {{type: file, path: "{tmp_path / "b.csv"}"}}
destinations:
  - {{type: sqlite, url: "sqlite:///{out}", table: ta, input: a}}
  - {{type: sqlite, url: "sqlite:///{out}", table: tb, input: b}}
"""
    # Before the per-file turns, one of the two failed with "database is locked" on most runs.
    result = run_pipeline(parse_spec(text, file="p.yaml"), Settings(batch_rows=5_000))
    assert result.ok, result.error
    with sqlite3.connect(out) as conn:
        for table, prefix in (("ta", "a"), ("tb", "b")):
            count, distinct, first = conn.execute(
                f"SELECT count(*), count(DISTINCT id), min(v) FROM {table}"
            ).fetchone()
            assert (count, distinct) == (ROWS, ROWS)
            assert first.startswith(prefix)
