"""Recoveries that change the plan, against real PostgreSQL: a partition split when it times out,
and one holding a value no Arrow type holds split until narrowed down, then set aside."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from tests.conftest import run_sql

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.orchestrator import run_pipeline
from agent_orchestrated_etl.spec import parse_spec
from agent_orchestrated_etl.store.records import RunStore


def make_table(url: str, schema: str) -> None:
    run_sql(
        url,
        f"CREATE TABLE {schema}.t AS SELECT i AS id, (i * 1.5)::numeric(14, 2) AS amount FROM generate_series(1, 10000) i",
        f"UPDATE {schema}.t SET amount = 'NaN' WHERE id = 7777",  # Arrow's decimal has no NaN
    )


def spec_text(url: str, schema: str, out: Path, on_bad_data: str) -> str:
    return (
        f'name: nan\nsources:\n  t: {{type: postgres, url: "{url}", table: {schema}.t, partition: {{column: id, parts: 2}}}}\n'
        f'destination: {{type: duckdb, path: "{out}", table: t}}\n'
        "quality:\n  - {not_null: [id], input: t}\n"
        f"retry: {{on_bad_data: {on_bad_data}, backoff_seconds: 0}}\n"
    )


def test_the_bad_row_is_narrowed_down_and_set_aside_and_every_other_row_loads(
    pg_schema: tuple[str, str], tmp_path: Path
) -> None:
    url, schema = pg_schema
    make_table(url, schema)
    out = tmp_path / "w.duckdb"
    result = run_pipeline(parse_spec(spec_text(url, schema, out, "quarantine"), file="p.yaml"), Settings())
    assert result.status == "succeeded", result.error

    con = duckdb.connect(str(out), read_only=True)
    [(origin, reason, row_json)] = con.execute(
        "SELECT origin, reason, row_json FROM t__quarantine WHERE check_name = 'unreadable'"
    ).fetchall()
    lo, hi = json.loads(row_json)["range"]
    assert lo <= 7777 < hi and hi - lo <= 5000 // 2**8 + 1  # halved 8 times from 5,000 rows
    assert "nan" in reason.lower() and f"[{lo}, {hi})" in origin
    loaded = con.execute(
        "SELECT count(*), count(DISTINCT id), sum(CASE WHEN id >= ? AND id < ? THEN 1 ELSE 0 END) FROM t", [lo, hi]
    ).fetchone()
    assert loaded == (10000 - (hi - lo), 10000 - (hi - lo), 0)  # everything but the set-aside range, once

    decisions = [e for e in RunStore(Settings().store_url).get_run(result.run_id)["events"] if e["kind"] == "decision"]
    splits = [e for e in decisions if e["choice"] == "split"]
    assert len(splits) == 8 and all("halving it" in e["reason"] for e in splits)
    assert [e["choice"] for e in decisions if e["choice"] == "quarantine"] == ["quarantine"]


def test_by_default_bad_data_fails_the_run_with_the_column_and_a_hint(
    pg_schema: tuple[str, str], tmp_path: Path
) -> None:
    url, schema = pg_schema
    make_table(url, schema)
    result = run_pipeline(parse_spec(spec_text(url, schema, tmp_path / "w.duckdb", "fail"), file="p.yaml"), Settings())
    assert result.status == "failed"
    assert "not a valid decimal128" in result.error and "on_bad_data: quarantine" in result.error


def test_the_store_keeps_the_halves_in_place_of_the_split_tasks(pg_schema: tuple[str, str], tmp_path: Path) -> None:
    """What a resume would run: ranges that cover the table once, none of the tasks that were split."""
    url, schema = pg_schema
    make_table(url, schema)
    first = run_pipeline(
        parse_spec(spec_text(url, schema, tmp_path / "w.duckdb", "quarantine"), file="p.yaml"), Settings()
    )
    planned = RunStore(Settings().store_url).planned_tasks(first.run_id)
    assert len(planned) == 1 + 9  # the good half; of the other, one half per halving and the last bad range
    ranges = sorted((t["partition"]["options"]["range"] for t in planned), key=lambda r: r[0])
    assert ranges[0][0] == 1 and ranges[-1][1] is None
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))  # no gap, no overlap


def test_a_partition_that_times_out_is_split_and_its_halves_finish(
    pg_schema: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Arrow path's read is what times out here; row checks alone no longer keep DuckDB from copying.
    monkeypatch.setenv("AGENT_ETL_PUSHDOWN", "false")
    url, schema = pg_schema
    run_sql(url, f"CREATE TABLE {schema}.t AS SELECT i AS id, 'v' || i AS v FROM generate_series(1, 800) i")
    out = tmp_path / "w.duckdb"
    # 5 ms a row, slept in the server: a 400-row partition takes 2 s, a half 1 s. The timeout
    # leaves a task 1.5 s, so halves (or quarters) finish even when a loaded machine adds most of a
    # second to each task (at 2 ms a row and 0.65 s, a loaded run split down to 3-row tasks and still
    # timed out). Finding a partition's bounds runs the slow query too, so slower rows cost minutes.
    query = f"SELECT id, v FROM {schema}.t WHERE pg_sleep(0.005)::text = ''"
    text = (
        f'name: slow\nsources:\n  t: {{type: postgres, url: "{url}", query: "{query}", partition: {{column: id, parts: 2}}}}\n'
        f'destination: {{type: duckdb, path: "{out}", table: t}}\n'
        "quality:\n  - {not_null: [id], input: t}\n"
        "retry: {task_timeout_seconds: 1.5, backoff_seconds: 0}\n"
    )
    result = run_pipeline(parse_spec(text, file="p.yaml"), Settings())
    assert result.status == "succeeded", result.error
    with duckdb.connect(str(out), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT id), min(id), max(id) FROM t").fetchone() == (
            800,
            800,
            1,
            800,
        )
    decisions = [e for e in RunStore(Settings().store_url).get_run(result.run_id)["events"] if e["kind"] == "decision"]
    assert {e["subject"] for e in decisions if e["choice"] == "stop it"} >= {"task t[0]>t", "task t[1]>t"}
    splits = [e["subject"] for e in decisions if e["choice"] == "split" and "timeout" in e["reason"]]
    assert {"task t[0]>t", "task t[1]>t"} <= set(splits)
    assert any(e["choice"] == "read it as t[0.1]>t and t[0.2]>t" for e in decisions)


def test_a_numeric_nan_is_never_copied_as_zero_by_duckdb(pg_schema: tuple[str, str], tmp_path: Path) -> None:
    """DuckDB's postgres scanner reads NUMERIC NaN as 0.00; a table holding one is read on the Arrow path."""
    url, schema = pg_schema
    make_table(url, schema)
    out = tmp_path / "w.duckdb"
    text = (
        f'name: nan\nsources:\n  t: {{type: postgres, url: "{url}", table: {schema}.t}}\n'
        f'destination: {{type: duckdb, path: "{out}", table: t}}\n'
        "retry: {backoff_seconds: 0}\n"
    )
    result = run_pipeline(parse_spec(text, file="p.yaml"), Settings())
    assert result.status == "failed", "the NaN row was loaded as something else"
    assert "not a valid decimal128" in result.error
    assert any("NaN or Infinity" in d["reason"] for d in result.decisions), result.decisions
