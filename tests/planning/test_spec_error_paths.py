"""Spec errors named where they are: a bad severity, SQL that ends in a comment, PRAGMA, a query posing as a filter."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agent_orchestrated_etl.cli import app

HEAD = """\
name: p
sources:
  orders: {type: file, path: orders.parquet}
"""
TAIL = "destination: {type: duckdb, path: out.duckdb, table: t}\n"


def validate(tmp_path: Path, body: str, capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, dict]:
    pq.write_table(pa.table({"id": [1, 2], "amount": [2.5, -1.0]}), tmp_path / "orders.parquet")
    (tmp_path / "p.yaml").write_text(HEAD + body + TAIL)
    code = app(["validate", str(tmp_path / "p.yaml"), "--json", *flags], standalone_mode=False)
    return code or 0, json.loads(capsys.readouterr().out)


def test_a_bad_severity_is_reported_under_severity_not_the_checks_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = "quality:\n  - not_null: [id]\n  - unique: [id]\n  - unique: [amount]\n    severity: fatal\n"
    code, printed = validate(tmp_path, body, capsys)
    assert code == 2
    [problem] = printed["problems"]
    assert (problem["path"], problem["line"]) == ("quality[2].severity", 8)
    assert "'error' or 'warn'" in problem["message"]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM orders -- every order",
        "SELECT * FROM orders; -- every order",
        "SELECT * FROM orders /* every order */ ;",
        "-- every order\nSELECT '--' AS dashes, * FROM orders",
    ],
)
def test_a_sql_transform_may_end_in_a_comment(tmp_path: Path, capsys: pytest.CaptureFixture[str], sql: str) -> None:
    indented = "\n".join("      " + line for line in sql.splitlines())
    code, printed = validate(tmp_path, f"transforms:\n  - name: t\n    sql: |\n{indented}\n", capsys)
    assert (code, printed["valid"]) == (0, True), printed


def test_pragma_is_refused_in_words(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, printed = validate(tmp_path, "transforms:\n  - name: t\n    sql: PRAGMA table_info('orders')\n", capsys)
    assert code == 2
    [problem] = printed["problems"]
    assert problem["path"] == "transforms[0].sql"
    assert "one SELECT query over its inputs, not a PRAGMA" in problem["message"]
    assert "syntax error" not in problem["message"]


@pytest.mark.parametrize("flags", [(), ("--offline",)])
@pytest.mark.parametrize(
    ("step", "path"),
    [
        ('filter: "true UNION ALL SELECT * FROM orders"', "transforms[0].steps[0].filter"),
        ('filter: "amount > 0) OR (true"', "transforms[0].steps[0].filter"),
        ('derive: {x: "1; DROP TABLE orders"}', "transforms[0].steps[0].derive.x"),
        ('aggregate: {measures: {n: "count(*) FROM orders UNION SELECT 1"}}', "transforms[0].steps[0].aggregate"),
    ],
)
def test_a_query_where_an_expression_belongs_is_a_spec_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], step: str, path: str, flags: tuple[str, ...]
) -> None:
    code, printed = validate(
        tmp_path, f"transforms:\n  - name: t\n    input: orders\n    steps:\n      - {step}\n", capsys, *flags
    )
    assert code == 2
    [problem] = printed["problems"]
    assert problem["path"] == path
    assert problem["line"] == 8


def test_a_filter_with_a_trailing_comment_is_one_expression(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    step = 'filter: "amount > 0 -- refunds are negative"'
    code, printed = validate(
        tmp_path, f"transforms:\n  - name: t\n    input: orders\n    steps:\n      - {step}\n", capsys
    )
    assert (code, printed["valid"]) == (0, True), printed
