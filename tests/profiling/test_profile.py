"""Profiles of data whose statistics are known: exact where exact is promised, estimates within 2%."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agent_orchestrated_etl.cli import app
from agent_orchestrated_etl.profiling.profile import profile_stream

N = 200_000


def known() -> pa.Table:
    ids = list(range(N))
    return pa.table(
        {
            "id": ids,
            "bucket": [i % 150_000 for i in ids],  # 150,000 distinct
            "word": [f"w{i % 50_000:05d}" for i in ids],  # 50,000 distinct, 6 characters
            "maybe": [None if i % 4 == 0 else i % 10 for i in ids],  # 25% nulls; odd values twice as common as even
            "status": ["paid" if i % 5 else "refunded" for i in ids],
            "email": [f"user{i}@example.org" for i in ids],
        }
    )


def profile(table: pa.Table, **options):
    return profile_stream("known", table.schema, iter(table.to_batches(max_chunksize=16_384)), **options)


def test_exact_statistics_on_known_data() -> None:
    result = profile(known())
    assert (result.rows, result.rows_profiled, result.sampling) == (N, N, "whole source")
    ident = result.column("id")
    assert (ident.arrow_type, ident.nulls, ident.distinct, ident.distinct_exact, ident.min, ident.max) == (
        "int64",
        0,
        N,
        True,
        0,
        N - 1,
    )
    assert ident.mean == (N - 1) / 2
    assert ident.quantiles == {
        "p5": 0.05 * (N - 1),
        "p25": 0.25 * (N - 1),
        "p50": 0.5 * (N - 1),
        "p75": 0.75 * (N - 1),
        "p95": 0.95 * (N - 1),
    }
    maybe = result.column("maybe")
    assert (maybe.nulls, maybe.null_percent, maybe.distinct) == (N // 4, 25.0, 10)
    assert maybe.top[0] == {"value": 1, "count": N // 10, "percent": 13.333}  # ties go by value
    status = result.column("status")
    assert status.top == [
        {"value": "paid", "count": N * 4 // 5, "percent": 80.0},
        {"value": "refunded", "count": N // 5, "percent": 20.0},
    ]
    assert status.values == ["paid", "refunded"] and status.top_exact
    assert result.column("word").length == {"min": 6, "mean": 6.0, "max": 6}


def test_distinct_estimates_are_within_two_percent_and_labelled() -> None:
    result = profile(known(), exact_limit=1_000)  # above this many rows, distinct counts are estimated...
    for name, truth in (("id", N), ("bucket", 150_000), ("word", 50_000)):
        column = result.column(name)
        assert not column.distinct_exact
        assert abs(column.distinct - truth) <= 0.02 * truth, (name, column.distinct, truth)
    for name, truth in (("maybe", 10), ("status", 2)):  # ...but those of columns with few values are counted
        assert (result.column(name).distinct, result.column(name).distinct_exact) == (truth, True)
    assert not result.column("id").quantiles_exact  # and quantiles come from the sample
    assert not result.column("id").top_exact  # too many values for exact top counts


def test_semantic_types_and_pii() -> None:
    result = profile(known())
    assert (result.column("email").semantic, result.column("email").pii) == ("email", True)
    assert result.column("word").semantic is None and not result.column("status").pii


@pytest.mark.parametrize(
    ("values", "kind", "pii"),
    [
        (["+31 6 1234 5678", "(020) 555-0199", "+1 415 555 2671"], "phone", True),
        (["https://example.com/a", "http://x.org/b?c=1"], "url", False),
        (["123e4567-e89b-12d3-a456-426614174000", "00000000-0000-0000-0000-000000000000"], "uuid", False),
        (["192.168.0.1", "10.0.0.255", "2001:db8::1"], "ip", True),
        (["2024-01-31", "2024-02-01T10:00:00Z", "2023-12-31 23:59:59.5+01:00"], "iso_date", False),
        (["12.5", "-3", "1e6", "0.001"], "number", False),
        (["4111 1111 1111 1111", "5500-0055-5555-5559", "4012888888881881"], "credit_card", True),
        (["Ann Smith", "Carla de Vries", "Jan van der Berg"], "person_name", True),
        (
            [
                "the parcel was left with the neighbour at number twelve",
                "call before delivery, the bell does not work at all",
            ],
            "free_text",
            False,
        ),
        (["A-1", "B-2"], None, False),
    ],
)
def test_each_semantic_type(values: list[str], kind: str | None, pii: bool) -> None:
    column = profile(pa.table({"v": values * 10})).column("v")
    assert (column.semantic, column.pii) == (kind, pii)


def test_a_card_number_failing_luhn_is_not_a_card() -> None:
    column = profile(pa.table({"v": ["4111111111111112", "1234567812345678"] * 10})).column("v")
    assert column.semantic == "number"


def test_empty_and_all_null_columns() -> None:
    result = profile(pa.table({"x": pa.array([None] * 5, pa.int64()), "s": pa.array([None] * 5, pa.string())}))
    x = result.column("x")
    assert (x.nulls, x.null_percent, x.distinct, x.min, x.mean, x.top) == (5, 100.0, 0, None, None, [])


def test_profile_cli_json_and_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pq.write_table(known().slice(0, 1000), tmp_path / "orders.parquet")
    html = tmp_path / "report.html"
    assert app(["profile", str(tmp_path / "orders.parquet"), "--json", "--html", str(html)], standalone_mode=False) in (
        0,
        None,
    )
    printed = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in printed["columns"]] == ["id", "bucket", "word", "maybe", "status", "email"]
    page = html.read_text()
    assert (
        page.startswith("<!doctype html>")
        and "<script" not in page
        and "email (PII)" in page
        and "http" not in page.split("<body>")[0]
    )


def test_profile_a_source_of_a_spec_with_a_stratified_sample(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pq.write_table(known(), tmp_path / "orders.parquet")
    (tmp_path / "p.yaml").write_text(
        "name: p\nsources:\n  orders: {type: file, path: orders.parquet}\ndestination: {type: duckdb, path: o.duckdb, table: t}\n"
    )
    code = app(
        [
            "profile",
            f"{tmp_path / 'p.yaml'}:orders",
            "--sample",
            "1000",
            "--method",
            "stratified",
            "--by",
            "status",
            "--json",
        ],
        standalone_mode=False,
    )
    assert code in (0, None)
    printed = json.loads(capsys.readouterr().out)
    assert (printed["rows"], printed["rows_profiled"], printed["sampling"]) == (
        N,
        1000,
        "stratified by status sample of 1,000 rows (seed 0)",
    )
    status = next(c for c in printed["columns"] if c["name"] == "status")
    assert [(t["value"], t["count"]) for t in status["top"]] == [("paid", 800), ("refunded", 200)]


async def test_the_profile_and_sample_tools(tmp_path: Path) -> None:
    from agent_orchestrated_etl.agents.tools import default_registry

    pq.write_table(known().slice(0, 5_000), tmp_path / "orders.parquet")
    registry = default_registry()
    profiled = await registry.get("profile")(
        {"source": str(tmp_path / "orders.parquet"), "sample": {"size": 500, "seed": 9}}, None
    )  # type: ignore[arg-type]
    assert (profiled.profile["rows"], profiled.profile["rows_profiled"]) == (5_000, 500)
    assert profiled.profile["sampling"] == "reservoir sample of 500 rows (seed 9)"
    sampled = await registry.get("sample")(
        {
            "source": str(tmp_path / "orders.parquet"),
            "sample": {"method": "systematic", "size": 50, "seed": 1},
            "show": 3,
        },
        None,
    )  # type: ignore[arg-type]
    assert sampled.rows_sampled == 50 and [r["id"] for r in sampled.rows] == [17, 117, 217]  # seed 1 starts at 17


def test_profiling_a_source_of_a_workflow_file_says_it_is_a_workflow(tmp_path: Path) -> None:
    from agent_orchestrated_etl.exceptions import ConfigurationError
    from agent_orchestrated_etl.profiling.sources import open_source

    (tmp_path / "a.csv").write_text("id\n1\n")
    spec = tmp_path / "wf.yaml"
    spec.write_text(
        "workflow: nightly\npipelines:\n  - name: one\n    sources: {a: {type: file, path: a.csv}}\n"
        "    destination: {type: file, path: out, format: parquet}\n"
    )
    with pytest.raises(ConfigurationError, match="is a workflow") as caught:
        open_source(f"{spec}:a")
    assert caught.value.hint and "pipelines" in caught.value.hint
