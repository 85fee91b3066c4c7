"""PostgreSQL -> DuckDB: the planner pushes the copy down only when no Python step needs the rows."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from tests.conftest import run_sql

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.orchestrator import run_pipeline
from agent_orchestrated_etl.run_result import RunResult
from agent_orchestrated_etl.spec import parse_spec


@pytest.fixture
def items(pg_schema: tuple[str, str]) -> tuple[str, str]:
    url, schema = pg_schema
    run_sql(
        url,
        f"CREATE TYPE {schema}.size AS ENUM ('s', 'm', 'l')",
        f"CREATE TABLE {schema}.items (id int, price numeric(10, 2), size {schema}.size)",
        f"INSERT INTO {schema}.items SELECT i, i * 1.25, (ARRAY['s', 'm', 'l'])[1 + mod(i, 3)]::{schema}.size FROM"
        " generate_series(1, 999) i",
        f"INSERT INTO {schema}.items VALUES (NULL, NULL, NULL)",
    )
    return url, schema


def run(url: str, schema: str, out: Path, extra: str = "") -> RunResult:
    text = f"""
name: items_copy
sources:
  items: {{type: postgres, url: "{url}", table: {schema}.items, partition: {{column: id, parts: 3}}}}
destination: {{type: duckdb, path: "{out}", table: items, write: replace}}
{extra}
"""
    return run_pipeline(parse_spec(text, file="p.yaml"), Settings())


def test_a_plain_copy_is_pushed_down_one_task_per_partition(items: tuple[str, str], tmp_path: Path) -> None:
    out = tmp_path / "w.duckdb"
    result = run(*items, out)
    assert result.ok and result.rows_written == 1000
    assert sorted((t.id, t.kind) for t in result.tasks) == [
        ("items[0]>items", "pushdown"),
        ("items[1]>items", "pushdown"),
        ("items[2]>items", "pushdown"),
    ]
    decision = next(d for d in result.decisions if d["subject"] == "destination items")
    assert decision["choice"] == "push the copy down: the duckdb engine reads postgres itself, one task per partition"
    with duckdb.connect(str(out), read_only=True) as conn:
        assert conn.execute("SELECT count(*), count(id), sum(price), count(DISTINCT size) FROM items").fetchone() == (
            1000,
            999,
            Decimal("624375.00"),
            3,
        )
        assert conn.execute("SELECT typeof(price), typeof(size) FROM items LIMIT 1").fetchone() == (
            "DECIMAL(10,2)",
            "VARCHAR",
        )


def test_row_checks_run_in_duckdb_over_the_pushed_down_rows(items: tuple[str, str], tmp_path: Path) -> None:
    result = run(*items, tmp_path / "w.duckdb", extra="quality:\n  - {not_null: [id], input: items, threshold: 0.01}")
    assert result.ok and result.rows_written == 999 and result.rows_quarantined == 1
    assert {t.kind for t in result.tasks} == {"pushdown"}
    decision = next(d for d in result.decisions if d["subject"] == "destination items")
    assert decision["choice"].endswith("one task per partition, then evaluates the checks as SQL over the staged rows")
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as conn:
        assert conn.execute("SELECT check_name, reason FROM items__quarantine").fetchall() == [
            ("not_null(id)", "id is null")
        ]


def test_a_check_duckdb_does_not_evaluate_keeps_the_rows_in_python(items: tuple[str, str], tmp_path: Path) -> None:
    result = run(*items, tmp_path / "w.duckdb", extra="quality:\n  - {row_count: {min: 1}, input: items}")
    assert result.ok and result.rows_written == 1000
    decision = next(d for d in result.decisions if d["subject"] == "destination items")
    assert decision["choice"] == "stream source batches straight into staging"
    assert decision["reason"].endswith(
        "no pushdown: quality checks run on its batches: check row_count(1..) (row_count) is judged on the batches"
    )


def test_pushdown_can_be_turned_off(items: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_ETL_PUSHDOWN", "false")
    result = run(*items, tmp_path / "w.duckdb")
    assert result.ok and result.rows_written == 1000
    assert (
        "no pushdown: pushdown is off (AGENT_ETL_PUSHDOWN)"
        in next(d for d in result.decisions if d["subject"] == "destination items")["reason"]
    )


EVERY_TYPE = """(
    id int, i2 smallint, i8 bigint, num numeric(12, 3), r real, d double precision, t text, vc varchar(20), c char(10),
    b bool, day date, tm time, ts timestamp, tstz timestamptz, iv interval, u uuid, j json, jb jsonb, "by" bytea,
    ia int[], ta text[], ca char(5)[]
)"""
EVERY_ROW = (
    "(1, -3, 9000000000, 123.456, 1.5, 2.25, 'text ', 'varchar ', 'TRUCK', true, '2024-02-29', '13:14:15.123456',"
    " '2024-01-02 03:04:05.678901', '2024-01-02 03:04:05+02', '1 year 2 mons 3 days 04:05:06.5',"
    " 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"a\": [1, 2]}', '{\"b\": {\"c\": null}}', '\\x00ff10', '{1,NULL,3}',"
    ' \'{"x ","y"}\', \'{"ab","c  "}\')'
)
EVERY_EDGE = (
    "(3, 0, 0, -0.001, 'NaN', '-Infinity', '', '', '', false, '0001-01-01', '00:00:00', '1970-01-01', '1970-01-01"
    " 00:00:00+00', '-1 days', '00000000-0000-0000-0000-000000000000', '[]', '[]', '\\x', '{}', '{}', '{}')"
)


@pytest.mark.parametrize("read", ["table", "query"])
def test_the_pushdown_and_the_arrow_path_write_identical_values_for_every_postgres_type(
    pg_schema: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read: str
) -> None:
    url, schema = pg_schema
    nulls = "(2" + ", NULL" * 21 + ")"
    run_sql(
        url,
        f"CREATE TABLE {schema}.every {EVERY_TYPE}",
        f"INSERT INTO {schema}.every VALUES {EVERY_ROW}, {nulls}, {EVERY_EDGE}",
    )
    source = f"table: {schema}.every" if read == "table" else f'query: "SELECT * FROM {schema}.every"'
    written = {}
    for pushdown in ("true", "false"):
        monkeypatch.setenv("AGENT_ETL_PUSHDOWN", pushdown)
        out = tmp_path / f"{pushdown}.duckdb"
        text = f"""
name: every
sources:
  every: {{type: postgres, url: "{url}", {source}}}
destination: {{type: duckdb, path: "{out}", table: every, write: replace}}
"""
        result = run_pipeline(parse_spec(text, file="p.yaml"), Settings())
        assert result.ok and result.rows_written == 3, result.error
        assert [t.kind for t in result.tasks] == ["pushdown" if pushdown == "true" else "extract_load"]
        with duckdb.connect(str(out), read_only=True) as conn:
            written[pushdown] = (
                conn.execute("DESCRIBE every").fetchall(),
                conn.execute("SELECT * FROM every ORDER BY id").to_arrow_table(),
            )
    (pushed_types, pushed), (arrow_types, arrowed) = written["true"], written["false"]
    assert pushed_types == arrow_types
    assert [t for _, t, *_ in arrow_types if t in ("JSON", "VARCHAR[]", "UUID", "INTERVAL")] == [
        "INTERVAL",
        "UUID",
        "JSON",
        "JSON",
        "VARCHAR[]",
        "VARCHAR[]",
    ]
    rows = pushed.to_pylist()
    for a, b in zip(rows, arrowed.to_pylist(), strict=True):
        assert {k: v for k, v in a.items() if v == v} == {k: v for k, v in b.items() if v == v}  # NaN != NaN
    assert [(r["c"], r["ca"], r["t"], r["vc"]) for r in rows] == [
        ("TRUCK", ["ab", "c"], "text ", "varchar "),
        (None, None, None, None),
        ("", [], "", ""),
    ]
    assert [r["jb"] for r in rows] == ['{"b": {"c": null}}', None, "[]"]
