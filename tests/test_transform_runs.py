"""Transforms and checks in whole runs: how rows travel, joins and SQL, quarantine at the target, the quality gate."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from agent_orchestrated_etl.cli import app
from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.orchestrator import run_pipeline
from agent_orchestrated_etl.run_result import RunResult
from agent_orchestrated_etl.spec import load_spec


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    (tmp_path / "orders").mkdir()
    pq.write_table(
        pa.table(
            {
                "order_id": [1, 2, 3],
                "customer_id": [10, 11, 99],
                "amount": [5.0, -2.0, 7.5],
                "status": ["paid", "paid", "new"],
            }
        ),
        tmp_path / "orders" / "a.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "order_id": [4, 2, 5],
                "customer_id": [10, 12, None],
                "amount": [1.0, 3.0, 2.0],
                "status": ["paid", "refunded", "paid"],
            }
        ),
        tmp_path / "orders" / "b.parquet",
    )
    pacsv.write_csv(
        pa.table({"customer_id": [10, 11, 12], "country": ["NL", "FR", "DE"], "email": ["a@x.nl", "b@y.fr", "c@z.de"]}),
        tmp_path / "customers.csv",
    )
    return tmp_path


def run(directory: Path, spec: str) -> RunResult:
    (directory / "p.yaml").write_text(spec)
    return run_pipeline(load_spec(directory / "p.yaml"), Settings())


def table(directory: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(directory / "out.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def decision(result: RunResult, subject: str) -> dict[str, str]:
    return next(d for d in result.decisions if d["subject"] == subject)


HEAD = """\
name: shop
sources:
  orders: {type: file, path: "orders/*.parquet"}
  customers: {type: file, path: customers.csv}
"""


def test_streaming_steps_run_per_partition_and_quarantine_with_source_positions(shop: Path) -> None:
    result = run(
        shop,
        HEAD
        + """\
transforms:
  - name: paid
    input: orders
    steps:
      - filter: "status = 'paid'"
      - derive: {cents: "CAST(amount * 100 AS BIGINT)"}
quality:
  - {in_range: {column: cents, min: 0}, input: paid, threshold: 0.25}
destination: {type: duckdb, path: out.duckdb, table: paid, input: paid}
""",
    )
    assert result.ok, result.error
    assert sorted(t.id for t in result.tasks) == ["paid[0]>paid", "paid[1]>paid"]
    assert decision(result, "destination paid")["choice"] == "stream orders > paid batch by batch into staging"
    assert table(shop, "SELECT order_id, cents FROM paid ORDER BY order_id") == [(1, 500), (4, 100), (5, 200)]
    [(check, origin, row)] = table(shop, "SELECT check_name, origin, row_json FROM paid__quarantine")
    assert (check, origin) == ("in_range(cents)", f"{shop}/orders/a.parquet record 2")
    assert json.loads(row) == {"order_id": 2, "customer_id": 11, "amount": -2.0, "status": "paid", "cents": -200}
    assert [(q["check"], q["scope"], q["rows_checked"], q["rows_failed"], q["passed"]) for q in result.quality] == [
        ("in_range(cents)", "paid", 4, 1, True)
    ]


def test_blocking_steps_over_one_source_run_in_one_task_without_staging(shop: Path) -> None:
    result = run(
        shop,
        HEAD
        + """\
transforms:
  - name: latest
    input: orders
    steps:
      - dedupe: {keys: [order_id], keep: last}
      - aggregate: {group_by: [status], measures: {orders: "count(*)", total: "sum(amount)"}}
      - sort: [status]
destination: {type: duckdb, path: out.duckdb, table: latest, input: latest}
""",
    )
    assert result.ok, result.error
    assert [t.id for t in result.tasks] == ["latest>latest"]
    assert decision(result, "destination latest")["reason"].startswith(
        "dedupe in transform latest needs every row at once"
    )
    assert table(shop, "SELECT * FROM latest") == [("new", 1, 7.5), ("paid", 3, 8.0), ("refunded", 1, 3.0)]


JOINED = (
    HEAD
    + """\
transforms:
  - name: enriched
    input: orders
    steps:
      - join: {with: customers, on: customer_id, how: left, columns: [country]}
      - fill_null: {country: "??"}
  - name: by_country
    sql: SELECT country, count(*) AS orders, sum(amount) AS amount FROM enriched GROUP BY country ORDER BY country
quality:
  - {referential: {column: customer_id, to: customers.customer_id}, input: orders, severity: warn}
  - {not_null: [customer_id], input: orders, threshold: 0.2}
destinations:
  - {type: duckdb, path: out.duckdb, table: enriched, input: enriched}
  - {type: duckdb, path: out.duckdb, table: by_country, input: by_country}
"""
)


def test_joins_and_sql_transforms_run_in_the_workspace_after_staging(shop: Path) -> None:
    result = run(shop, JOINED)
    assert result.ok, result.error
    assert sorted(t.id for t in result.tasks) == [
        "by_country>by_country",
        "customers[0]>workspace",
        "enriched>enriched",
        "orders[0]>workspace",
        "orders[1]>workspace",
    ]
    assert decision(result, "destination enriched")["reason"].startswith(
        "transform enriched joins customers; the inputs are staged"
    )
    # The null customer fails not_null in its stage task; 99 fails referential (a warning) in the workspace.
    assert table(shop, "SELECT order_id, country FROM enriched ORDER BY order_id, country") == [
        (1, "NL"),
        (2, "DE"),
        (2, "FR"),
        (4, "NL"),
    ]
    assert table(shop, "SELECT * FROM by_country") == [("DE", 1, 3.0), ("FR", 1, -2.0), ("NL", 2, 6.0)]
    quarantine = table(shop, "SELECT check_name, origin, reason FROM enriched__quarantine ORDER BY check_name")
    assert quarantine == [
        ("not_null(customer_id)", f"{shop}/orders/b.parquet record 3", "customer_id is null"),
        (
            "referential(customer_id -> customers.customer_id)",
            f"{shop}/orders/a.parquet record 3",
            "customer_id=99 is not in customers.customer_id",
        ),
    ]
    verdicts = {(q["check"], q["scope"]): (q["passed"], q["rows_failed"]) for q in result.quality}
    assert verdicts == {
        ("not_null(customer_id)", "workspace"): (True, 1),
        ("referential(customer_id -> customers.customer_id)", "enriched"): (False, 1),
        ("referential(customer_id -> customers.customer_id)", "by_country"): (False, 1),
    }


def test_a_failed_error_check_fails_the_run_and_commits_nothing(shop: Path) -> None:
    result = run(
        shop,
        HEAD
        + """\
quality:
  - {accepted_values: {column: status, values: [paid, refunded]}, input: orders}
destination: {type: duckdb, path: out.duckdb, table: orders, input: orders}
""",
    )
    assert result.status == "failed"
    assert (
        result.error
        == "quality checks failed: accepted_values(status) on orders: 1 of 6 rows failed (16.67%) (fix the data, or"
        " give the check a threshold or severity: warn, and run again)"
    )
    assert result.commits == []
    assert decision(result, "quality")["choice"] == "fail the run, commit nothing"
    assert not (shop / "out.duckdb").exists() or table(
        shop, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'orders'"
    ) == [(0,)]


def test_runs_show_json_has_the_quality_report(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(shop, JOINED)
    capsys.readouterr()
    assert app(["runs", "show", result.run_id, "--json"], standalone_mode=False) in (0, None)
    shown = json.loads(capsys.readouterr().out)
    assert [(q["check"], q["scope"], q["passed"], q["message"]) for q in shown["quality"]] == [
        (q["check"], q["scope"], q["passed"], q["message"]) for q in result.quality
    ]


def test_run_json_has_the_quality_report(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (shop / "p.yaml").write_text(JOINED)
    app(["run", str(shop / "p.yaml"), "--json"], standalone_mode=False)
    printed = json.loads(capsys.readouterr().out)
    assert {q["check"] for q in printed["quality"]} == {
        "not_null(customer_id)",
        "referential(customer_id -> customers.customer_id)",
    }


def test_inner_and_anti_joins_and_a_column_clash(shop: Path) -> None:
    result = run(
        shop,
        HEAD
        + """\
transforms:
  - name: known
    input: orders
    steps:
      - join: {with: customers, on: {customer_id: customer_id}, columns: [country]}
      - select: [order_id, country]
  - name: orphans
    input: orders
    steps:
      - join: {with: customers, on: customer_id, how: anti}
      - select: [order_id, customer_id]
destinations:
  - {type: duckdb, path: out.duckdb, table: known, input: known}
  - {type: duckdb, path: out.duckdb, table: orphans, input: orphans}
""",
    )
    assert result.ok, result.error
    assert table(shop, "SELECT * FROM known ORDER BY order_id, country") == [(1, "NL"), (2, "DE"), (2, "FR"), (4, "NL")]
    assert table(shop, "SELECT * FROM orphans ORDER BY order_id") == [(3, 99), (5, None)]
    clash = run(
        shop,
        HEAD
        + """\
transforms:
  - name: both
    input: orders
    steps:
      - derive: {country: "'?'"}
      - join: {with: customers, on: customer_id}
destination: {type: duckdb, path: out.duckdb, table: both, input: both}
""",
    )
    assert clash.status == "failed"
    assert (
        clash.error
        == "transform both: step 2 (join columns): customers brings columns the input already has: ['country'] (list"
        " `columns:` to take, or rename them in an earlier step)"
    )
