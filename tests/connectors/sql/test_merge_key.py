"""write: merge matches rows by a unique key on primary_key, which it checks rather than assumes.

A target agent-etl loaded before (it is in the loads ledger) gets the key it
lacks; a hand-made target without it is refused with the SQL that adds it.
Before, a replace then a merge into MariaDB doubled every row: ON DUPLICATE KEY
had no key to hit. DuckDB's MERGE joins on the key columns and needs no key.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.conftest import run_sql
from tests.connectors.conftest import Harness, make_harness

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.orchestrator import run_pipeline
from agent_orchestrated_etl.spec import parse_spec
from agent_orchestrated_etl.store.records import RunStore

FIRST = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "v": ["a", "b", "c"]})
SECOND = pa.table({"id": pa.array([2, 3, 4], pa.int64()), "v": ["B", "C", "D"]})
KINDS = ["duckdb", "sqlite", "postgres", "mysql"]


def run(tmp_path: Path, h: Harness, data: pa.Table, **fields: Any) -> tuple[Any, list[str]]:
    pq.write_table(data, tmp_path / "in.parquet")
    spec = tmp_path / "p.yaml"
    destination = json.dumps({"type": h.kind, **h.destination_fields, **fields})
    spec.write_text(f"name: mk\nsources:\n  s: {{type: file, path: in.parquet}}\ndestination: {destination}\n")
    result = run_pipeline(parse_spec(spec.read_text(), file=str(spec)), Settings())
    events = RunStore(Settings().store_url).get_run(result.run_id)["events"]
    return result, [e["choice"] for e in events if e["kind"] == "decision" and e["choice"].startswith("merge key")]


def rows(h: Harness, tmp_path: Path) -> list[tuple]:
    if h.kind == "duckdb":
        with duckdb.connect(h.destination_fields["path"], read_only=True) as conn:
            return conn.execute(f"SELECT id, v FROM {h.table} ORDER BY id").fetchall()
    if h.kind == "sqlite":
        with sqlite3.connect(tmp_path / "db.sqlite") as conn:
            return conn.execute(f"SELECT id, v FROM {h.table} ORDER BY id").fetchall()
    return run_sql(h.destination_fields["url"], f"SELECT id, v FROM {h.table} ORDER BY id")


def make_table(h: Harness, tmp_path: Path, ddl: str) -> None:
    """A hand-made target (agent-etl never loaded it) holding one row."""
    statements = [f"CREATE TABLE {h.table} {ddl}", f"INSERT INTO {h.table} VALUES (1, 'a')"]
    if h.kind == "duckdb":
        with duckdb.connect(h.destination_fields["path"]) as conn:
            for s in statements:
                conn.execute(s)
    elif h.kind == "sqlite":
        with sqlite3.connect(tmp_path / "db.sqlite") as conn:
            for s in statements:
                conn.execute(s)
    else:
        run_sql(h.destination_fields["url"], *statements)


ADDED = {
    "sqlite": "merge key: CREATE UNIQUE INDEX t__merge_key ON t (id)",
    "postgres": "merge key: ALTER TABLE {table} ADD PRIMARY KEY (id)",
    "mysql": "merge key: ALTER TABLE t MODIFY COLUMN id BIGINT(20) NOT NULL, ADD PRIMARY KEY (id)",
}


@pytest.mark.parametrize("kind", KINDS)
def test_merge_after_replace_keeps_one_row_per_key(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    h = make_harness(kind, request, tmp_path)
    assert run(tmp_path, h, FIRST, write="replace")[0].status == "succeeded"
    result, decisions = run(tmp_path, h, SECOND, write="merge", primary_key=["id"])
    assert result.status == "succeeded", result.error
    assert rows(h, tmp_path) == [(1, "a"), (2, "B"), (3, "C"), (4, "D")]
    # The replace created the table without a key; it is ours, so the merge added one (DuckDB needs none).
    assert decisions == ([] if kind == "duckdb" else [ADDED[kind].format(table=h.table)])
    result, decisions = run(tmp_path, h, SECOND, write="merge", primary_key=["id"])
    assert (result.status, decisions) == ("succeeded", [])
    assert rows(h, tmp_path) == [(1, "a"), (2, "B"), (3, "C"), (4, "D")]


FIX = {
    "sqlite": "CREATE UNIQUE INDEX t__merge_key ON t (id)",
    "postgres": "ALTER TABLE {table} ADD PRIMARY KEY (id)",
    "mysql": "ALTER TABLE t MODIFY COLUMN id BIGINT(20) NOT NULL, ADD PRIMARY KEY (id)",
}


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_merge_into_a_hand_made_table_without_a_key_is_refused_with_the_fix(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    h = make_harness(kind, request, tmp_path)
    make_table(h, tmp_path, "(id BIGINT, v TEXT)")
    result, _ = run(tmp_path, h, SECOND, write="merge", primary_key=["id"])
    fix = FIX[kind].format(table=h.table)
    assert result.status == "failed"
    assert (
        f"table {h.table} has no primary key or unique index on (id), which write: merge needs to match rows, and agent-etl did not create it (add it: {fix})"
        in result.error
    )
    assert rows(h, tmp_path) == [(1, "a")]
    # The fix it names is the one that works.
    if kind == "sqlite":
        with sqlite3.connect(tmp_path / "db.sqlite") as conn:
            conn.execute(fix)
    else:
        run_sql(h.destination_fields["url"], fix)
    result, decisions = run(tmp_path, h, SECOND, write="merge", primary_key=["id"])
    assert (result.status, decisions) == ("succeeded", []), result.error
    assert rows(h, tmp_path) == [(1, "a"), (2, "B"), (3, "C"), (4, "D")]


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_a_key_that_cannot_be_added_fails_and_leaves_the_target(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    h = make_harness(kind, request, tmp_path)
    assert run(tmp_path, h, FIRST, write="append")[0].status == "succeeded"
    assert run(tmp_path, h, FIRST, write="append")[0].status == "succeeded"
    result, _ = run(tmp_path, h, SECOND, write="merge", primary_key=["id"])
    assert result.status == "failed"
    assert f"cannot add the merge key (id) to {h.table}, which agent-etl loaded before" in result.error
    assert "its rows hold duplicate or NULL keys (an earlier append?)" in result.error
    assert rows(h, tmp_path) == [(1, "a"), (1, "a"), (2, "b"), (2, "b"), (3, "c"), (3, "c")]


@pytest.mark.parametrize("kind", KINDS)
def test_discard_refuses_a_merge_key_the_hand_made_target_lacks(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    h = make_harness(kind, request, tmp_path)
    make_table(h, tmp_path, "(code BIGINT PRIMARY KEY, v TEXT)")
    result, _ = run(tmp_path, h, SECOND, write="merge", primary_key=["id"], schema="discard")
    assert result.status == "failed"
    assert (
        f"merge key id is not a column of {h.table}, and schema: discard would leave it out of the load" in result.error
    )
