"""PostgreSQL -> DuckDB: the planner pushes the copy down only when no Python step needs the rows."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.orchestrator import RunResult, run_pipeline
from agent_orchestrated_etl.spec import parse_spec
from tests.conftest import run_sql


@pytest.fixture
def items(pg_schema: tuple[str, str]) -> tuple[str, str]:
    url, schema = pg_schema
    run_sql(
        url,
        f"CREATE TYPE {schema}.size AS ENUM ('s', 'm', 'l')",
        f"CREATE TABLE {schema}.items (id int, price numeric(10, 2), size {schema}.size)",
        f"INSERT INTO {schema}.items SELECT i, i * 1.25, (ARRAY['s', 'm', 'l'])[1 + mod(i, 3)]::{schema}.size FROM generate_series(1, 999) i",
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
    assert sorted((t.id, t.kind) for t in result.tasks) == [("items[0]>items", "pushdown"), ("items[1]>items", "pushdown"), ("items[2]>items", "pushdown")]
    decision = next(d for d in result.decisions if d["subject"] == "destination items")
    assert decision["choice"] == "push the copy down: the duckdb engine reads postgres itself, one task per partition"
    with duckdb.connect(str(out), read_only=True) as conn:
        assert conn.execute("SELECT count(*), count(id), sum(price), count(DISTINCT size) FROM items").fetchone() == (1000, 999, Decimal("624375.00"), 3)
        assert conn.execute("SELECT typeof(price), typeof(size) FROM items LIMIT 1").fetchone() == ("DECIMAL(10,2)", "VARCHAR")


def test_quality_checks_keep_the_rows_in_python(items: tuple[str, str], tmp_path: Path) -> None:
    result = run(*items, tmp_path / "w.duckdb", extra="quality:\n  - {not_null: [id], input: items, threshold: 0.01}")
    assert result.ok and result.rows_written == 999 and result.rows_quarantined == 1
    decision = next(d for d in result.decisions if d["subject"] == "destination items")
    assert decision["choice"] == "stream source batches straight into staging"
    assert decision["reason"].endswith("no pushdown: quality checks run on its batches")


def test_pushdown_can_be_turned_off(items: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_ETL_PUSHDOWN", "false")
    result = run(*items, tmp_path / "w.duckdb")
    assert result.ok and result.rows_written == 1000
    assert "no pushdown: pushdown is off (AGENT_ETL_PUSHDOWN)" in next(d for d in result.decisions if d["subject"] == "destination items")["reason"]
