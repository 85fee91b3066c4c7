"""Schema drift policies end to end: a second run brings a new column and a wider one.

Each policy runs against real DuckDB, SQLite, PostgreSQL and MariaDB targets; the
target's columns, types and rows are read back, and what the policy did is
read from the run record, where it is a decision of the destination.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.conftest import run_sql

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.exceptions import SpecError
from agent_orchestrated_etl.orchestrator import run_pipeline
from agent_orchestrated_etl.spec import parse_spec
from agent_orchestrated_etl.store.records import RunStore

FIRST = pa.table({"id": pa.array([1], pa.int64()), "qty": pa.array([10], pa.int32()), "v": ["a"]})
# qty no longer fits INTEGER, and note is new.
SECOND = pa.table(
    {"id": pa.array([2], pa.int64()), "qty": pa.array([3_000_000_000], pa.int64()), "v": ["b"], "note": ["hi"]}
)

# What the policy decision names: qty's widening (none in SQLite, whose INTEGER holds both), note's type.
WIDENED = {
    "duckdb": "; widened qty INTEGER -> BIGINT",
    "postgres": "; widened qty INTEGER -> BIGINT",
    "mysql": "; widened qty INTEGER -> BIGINT",
    "sqlite": "",
}
NOTE = {"duckdb": "VARCHAR", "postgres": "TEXT", "mysql": "LONGTEXT", "sqlite": "TEXT"}
# What each database's catalog calls the columns when read back.
CATALOG = {
    "sqlite": {"id": "INTEGER", "qty": "INTEGER", "v": "TEXT", "note": "TEXT", "qty_before": "INTEGER"},
    "duckdb": {"id": "BIGINT", "qty": "BIGINT", "v": "VARCHAR", "note": "VARCHAR", "qty_before": "INTEGER"},
    "postgres": {"id": "bigint", "qty": "bigint", "v": "text", "note": "text", "qty_before": "integer"},
    "mysql": {"id": "bigint", "qty": "bigint", "v": "longtext", "note": "longtext", "qty_before": "int"},
}


def target(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str, Any]:
    """The destination's YAML fields, its table, and how to read the target back: (columns with types, rows)."""
    if kind == "duckdb":
        path = tmp_path / "w.duckdb"

        def read_duckdb() -> tuple[list[tuple[str, str]], list[tuple]]:
            with duckdb.connect(str(path), read_only=True) as conn:
                columns = [(r[0], r[1]) for r in conn.execute("DESCRIBE t").fetchall()]
                return columns, conn.execute("SELECT * FROM t ORDER BY id").fetchall()

        return f'type: duckdb, path: "{path}", table: t', "t", read_duckdb
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'w.sqlite'}"

        def read_sqlite() -> tuple[list[tuple[str, str]], list[tuple]]:
            with sqlite3.connect(tmp_path / "w.sqlite") as conn:
                columns = [(r[1], r[2]) for r in conn.execute("PRAGMA table_info(t)")]
                return columns, conn.execute("SELECT * FROM t ORDER BY id").fetchall()

        return f'type: sqlite, url: "{url}", table: t', "t", read_sqlite
    if kind == "postgres":
        url, schema = request.getfixturevalue("pg_schema")

        def read_postgres() -> tuple[list[tuple[str, str]], list[tuple]]:
            columns = run_sql(
                url,
                f"SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = '{schema}' AND table_name = 't' ORDER BY ordinal_position",
            )
            return columns, run_sql(url, f"SELECT * FROM {schema}.t ORDER BY id")

        return f'type: postgres, url: "{url}", table: {schema}.t', f"{schema}.t", read_postgres
    url = request.getfixturevalue("mysql_database")
    database = url.rsplit("/", 1)[1]

    def read_mysql() -> tuple[list[tuple[str, str]], list[tuple]]:
        columns = run_sql(
            url,
            f"SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = '{database}' AND table_name = 't' ORDER BY ordinal_position",
        )
        return columns, run_sql(url, "SELECT * FROM t ORDER BY id")

    return f'type: mysql, url: "{url}", table: t', "t", read_mysql


def run(tmp_path: Path, data: pa.Table, destination: str) -> tuple[Any, list[dict[str, Any]]]:
    pq.write_table(data, tmp_path / "in.parquet")
    spec = tmp_path / "p.yaml"
    spec.write_text(f"name: drift\nsources:\n  s: {{type: file, path: in.parquet}}\ndestination: {{{destination}}}\n")
    result = run_pipeline(parse_spec(spec.read_text(), file=str(spec)), Settings())
    return result, RunStore(Settings().store_url).get_run(result.run_id)["events"]


def schema_decisions(events: list[dict[str, Any]], table: str) -> list[str]:
    return [
        e["choice"]
        for e in events
        if e["kind"] == "decision" and e["subject"] == f"destination {table}" and e["choice"].startswith("schema")
    ]


@pytest.mark.parametrize("write", ["append", "merge"])
@pytest.mark.parametrize("kind", ["duckdb", "sqlite", "postgres", "mysql"])
def test_evolve_adds_the_new_column_and_widens_the_grown_one(
    kind: str, write: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    destination, table, read = target(kind, request, tmp_path)
    destination += f", write: {write}, primary_key: [id], schema: evolve"
    assert run(tmp_path, FIRST, destination)[0].status == "succeeded"
    result, events = run(tmp_path, SECOND, destination)
    assert result.status == "succeeded", result.error
    names = CATALOG[kind]
    columns, rows = read()
    assert columns == [("id", names["id"]), ("qty", names["qty"]), ("v", names["v"]), ("note", names["note"])]
    assert rows == [(1, 10, "a", None), (2, 3_000_000_000, "b", "hi")]
    assert schema_decisions(events, table) == [f"schema evolve: added column note {NOTE[kind]}{WIDENED[kind]}"]


@pytest.mark.parametrize("write", ["append", "merge", "replace"])
@pytest.mark.parametrize("kind", ["duckdb", "sqlite", "postgres", "mysql"])
def test_discard_drops_the_unknown_column_and_widens_the_grown_one(
    kind: str, write: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    destination, table, read = target(kind, request, tmp_path)
    destination += f", write: {write}, primary_key: [id], schema: discard"
    assert run(tmp_path, FIRST, destination)[0].status == "succeeded"
    result, events = run(tmp_path, SECOND, destination)
    assert result.status == "succeeded", result.error
    names = CATALOG[kind]
    columns, rows = read()
    assert columns == [("id", names["id"]), ("qty", names["qty"]), ("v", names["v"])]
    assert rows == ([] if write == "replace" else [(1, 10, "a")]) + [(2, 3_000_000_000, "b")]
    assert schema_decisions(events, table) == [
        f"schema discard: dropped column note (not in the target){WIDENED[kind]}"
    ]


@pytest.mark.parametrize("kind", ["duckdb", "sqlite", "postgres", "mysql"])
def test_freeze_fails_with_the_diff_and_leaves_the_target_as_it_was(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    destination, table, read = target(kind, request, tmp_path)
    destination += ", schema: freeze"
    assert run(tmp_path, FIRST, destination)[0].status == "succeeded"
    before = read()
    result, events = run(tmp_path, SECOND, destination)
    assert result.status == "failed"
    diff = "  + note: string" + ("" if kind == "sqlite" else "\n  ~ qty: int32 -> int64")
    assert f"`schema: freeze` forbids changes:\n{diff} (set" in result.error
    assert read() == before
    names = CATALOG[kind]
    assert before == ([("id", names["id"]), ("qty", names["qty_before"]), ("v", names["v"])], [(1, 10, "a")])
    assert schema_decisions(events, table) == []
    if kind == "duckdb":  # DuckDB compares at commit: the destination's commit fails
        [failure] = [
            e
            for e in events
            if e["kind"] == "decision" and e["subject"] == f"destination {table}" and e["choice"].startswith("fail")
        ]
        assert failure["choice"] == "fail the commit; the target stays as it was"
        assert diff in failure["reason"]
    else:  # the SQL destinations compare at the first batch: the task loading it fails, before any data moves
        [failure] = [e for e in events if e["kind"] == "task_failed"]
        assert (failure["task_id"], failure["error_type"]) == (f"s[0]>{table}", "ConfigurationError")
        assert (
            failure["message"].startswith(f"destination {table}: the incoming schema differs")
            and diff in failure["message"]
        )


@pytest.mark.parametrize("policy", ["freeze", "discard"])
def test_a_file_destination_refuses_a_policy_it_cannot_apply(policy: str) -> None:
    text = f"name: x\nsources:\n  s: {{type: file, path: in.parquet}}\ndestination: {{type: file, path: out, schema: {policy}}}\n"
    with pytest.raises(
        SpecError, match=f"p.yaml:4: destination: schema: {policy} does not apply to a file destination"
    ):
        parse_spec(text, file="p.yaml")
