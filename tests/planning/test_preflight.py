"""`agent-etl validate` binds every step and check against the sources' schemas and names the line."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agent_orchestrated_etl.cli import app

SPEC = """\
name: v
sources:
  orders: {type: file, path: orders.parquet}
  missing: {type: file, path: nowhere.parquet}
transforms:
  - name: clean
    input: orders
    steps:
      - filter: "amount > 0"
      - derive:
          ok: amount + 1
          total: amout * 2
      - dedupe: {keys: [order_id], order_by: ts}
  - name: totals
    sql: SELECT order_id, sum(amount) AS amount FROM orders GROUP BY order_idd
  - name: other
    input: missing
    steps:
      - filter: "x >"
quality:
  - {in_range: {column: amont, min: 0}, input: orders}
  - {sql: "amount >", input: orders}
destination: {type: duckdb, path: out.duckdb, table: clean, input: clean}
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    pq.write_table(pa.table({"order_id": [1], "amount": [2.5], "ts": [3]}), tmp_path / "orders.parquet")
    (tmp_path / "p.yaml").write_text(SPEC)
    return tmp_path / "p.yaml"


def test_every_bad_expression_is_reported_with_its_line_step_and_column(
    spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert app(["validate", str(spec)], standalone_mode=False) == 2
    lines = capsys.readouterr().err.splitlines()
    problems = [line.removeprefix(f"{spec}:") for line in lines if line.startswith(str(spec))]
    assert (
        problems
        == [
            f"4: sources.missing.path: file not found: {spec.parent}/nowhere.parquet (check `path:` in the spec)",  # run fails on it too
            (
                '12: transforms[0].steps[1].derive.total: Binder Error: Referenced column "amout" not found in FROM clause!'
                ' Candidate bindings: "amount"'
            ),
            (
                '15: transforms[1].sql: Binder Error: Referenced column "order_idd" not found in FROM clause! Candidate'
                ' bindings: "order_id" (fix the transform\'s sql:)'
            ),
            "19: transforms[2].steps[0].filter: Parser Error: syntax error at end of input",
            (
                "21: quality[0]: no column 'amont'; the input has ['order_id', 'amount', 'ts'] (fix the check or the column"
                " name)"
            ),
            '22: quality[1]: Parser Error: syntax error at or near ")" (fix the check or the column name)',
        ]
    )
    assert "note: transform other reads missing, which could not be checked; it was checked for syntax only" in lines


def test_offline_checks_syntax_only_and_json_lists_problems(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert app(["validate", str(spec), "--offline", "--json"], standalone_mode=False) == 2
    printed = json.loads(capsys.readouterr().out)
    assert printed["valid"] is False
    assert [(p["line"], p["path"]) for p in printed["problems"]] == [(19, "transforms[2].steps[0].filter")]
    assert printed["notes"][0].startswith("--offline: sources were not read")


def test_a_good_spec_is_valid(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (
        SPEC.replace("amout", "amount")
        .replace("order_idd", "order_id")
        .replace('"x >"', '"x > 0"')
        .replace("amont", "amount")
        .replace('"amount >"', '"amount > 0"')
    )
    text = text.replace("  missing: {type: file, path: nowhere.parquet}\n", "")
    spec.write_text(text.replace('  - name: other\n    input: missing\n    steps:\n      - filter: "x > 0"\n', ""))
    assert app(["validate", str(spec)], standalone_mode=False) in (0, None)
    assert "pipeline v is valid" in " ".join(capsys.readouterr().out.split())
