"""Each expectation, its verdict, its threshold and severity, and its quarantined rows one by one."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from pydantic import ValidationError

from agent_orchestrated_etl.exceptions import StepError
from agent_orchestrated_etl.quality.verdicts import blocking_failures, merge, report

sys.path.insert(0, str(Path(__file__).parents[1] / "transform"))
from chain_helpers import CHECKS, run_chain  # noqa: E402

PEOPLE = pa.table(
    {
        "id": [1, 2, 3, 3, 4, None],
        "email": ["ann@example.com", "not-an-email", None, "cy@x.org", "dee@x.io", "eve@y.net"],
        "age": [34, -1, 150, 40, None, 18],
        "country": ["NL", "FR", "NL", "XX", "DE", None],
    }
)


def quarantined(outcome) -> list[tuple[str, str, str]]:
    return [(q["check_name"], q["origin"], q["reason"]) for q in outcome.quarantine]


def test_not_null_quarantines_each_null_row_with_its_position(tmp_path: Path) -> None:
    out = run_chain(tmp_path, PEOPLE, checks=[{"not_null": ["id", "email"]}])
    assert quarantined(out) == [
        ("not_null(id, email)", "in.csv record 3", "email is null"),
        ("not_null(id, email)", "in.csv record 6", "id is null"),
    ]
    assert out.quarantine[0]["row"] == {"id": 3, "email": None, "age": 150, "country": "NL"}
    assert out.quarantine[0]["run_id"] == "r1"
    assert out.table.column("id").to_pylist() == [1, 2, 3, 4]
    assert out.verdicts() == {"not_null(id, email)": (False, "2 of 6 rows failed (33.33%)")}


def test_not_null_on_an_all_null_column_fails_every_row(tmp_path: Path) -> None:
    table = pa.table({"x": pa.array([None, None, None], pa.string())})
    out = run_chain(tmp_path, table, checks=[{"not_null": ["x"]}])
    assert out.table.num_rows == 0 and len(out.quarantine) == 3
    assert out.verdicts()["not_null(x)"] == (False, "3 of 3 rows failed (100.00%)")


def test_a_threshold_exactly_met_passes_and_one_row_more_fails(tmp_path: Path) -> None:
    table = pa.table({"x": [1, None, 3, 4]})
    exactly = run_chain(tmp_path, table, checks=[{"not_null": ["x"], "threshold": 0.25}])
    assert exactly.verdicts()["not_null(x)"] == (True, "1 of 4 rows failed (25.00%), threshold 25.00%")
    over = run_chain(tmp_path / "2", table, checks=[{"not_null": ["x"], "threshold": 0.24}])
    assert over.verdicts()["not_null(x)"][0] is False


def test_unique_keeps_the_first_occurrence_and_ignores_null_keys(tmp_path: Path) -> None:
    out = run_chain(tmp_path, PEOPLE, checks=[{"unique": ["id"]}])
    assert quarantined(out) == [("unique(id)", "in.csv record 4", "duplicate of an earlier row with id=3")]
    # Checks that compare rows do not keep row order (see the README); compare as sets.
    assert sorted(out.table.column("email").to_pylist(), key=str) == sorted(
        ["ann@example.com", "not-an-email", None, "dee@x.io", "eve@y.net"], key=str
    )


def test_unique_over_several_columns(tmp_path: Path) -> None:
    table = pa.table({"a": [1, 1, 1, 2], "b": ["x", "y", "x", "x"]})
    out = run_chain(tmp_path, table, checks=[{"unique": ["a", "b"]}], batch_rows=1)
    assert quarantined(out) == [("unique(a, b)", "in.csv record 3", "duplicate of an earlier row with a=1, b='x'")]


def test_in_range_bounds_are_inclusive_and_nulls_pass(tmp_path: Path) -> None:
    out = run_chain(tmp_path, PEOPLE, checks=[{"in_range": {"column": "age", "min": 0, "max": 150}}])
    assert quarantined(out) == [("in_range(age)", "in.csv record 2", "age=-1 is outside [0, 150]")]


def test_regex(tmp_path: Path) -> None:
    out = run_chain(tmp_path, PEOPLE, checks=[{"regex": {"column": "email", "pattern": "^[^@]+@[^@]+\\.[a-z]+$"}}])
    assert [q["origin"] for q in out.quarantine] == ["in.csv record 2"]
    assert out.quarantine[0]["reason"] == "email='not-an-email' does not match ^[^@]+@[^@]+\\.[a-z]+$"


def test_an_invalid_regex_is_a_spec_error() -> None:
    with pytest.raises(ValidationError, match="invalid regular expression"):
        CHECKS.validate_python([{"regex": {"column": "email", "pattern": "([a-z"}}])


def test_accepted_values(tmp_path: Path) -> None:
    out = run_chain(tmp_path, PEOPLE, checks=[{"accepted_values": {"column": "country", "values": ["NL", "FR", "DE"]}}])
    assert quarantined(out) == [
        ("accepted_values(country)", "in.csv record 4", "country='XX' is not one of ['NL', 'FR', 'DE']")
    ]


def test_custom_sql_predicate(tmp_path: Path) -> None:
    out = run_chain(tmp_path, PEOPLE, checks=[{"sql": "age < 100 OR country = 'NL'", "name": "plausible_age"}])
    assert out.quarantine == []
    out = run_chain(tmp_path / "2", PEOPLE, checks=[{"sql": "age >= 0", "name": "plausible_age"}])
    assert quarantined(out) == [("plausible_age", "in.csv record 2", "not true: age >= 0")]


def test_a_row_failing_several_checks_is_quarantined_once_with_every_reason(tmp_path: Path) -> None:
    checks = [{"in_range": {"column": "age", "min": 0}}, {"regex": {"column": "email", "pattern": "@"}}]
    out = run_chain(tmp_path, PEOPLE, checks=checks)
    assert quarantined(out) == [
        ("in_range(age)", "in.csv record 2", "age=-1 is outside [0, inf]; email='not-an-email' does not match @")
    ]
    assert {k: v[1] for k, v in out.verdicts().items()} == {
        "in_range(age)": "1 of 6 rows failed (16.67%)",
        "regex(email)": "1 of 6 rows failed (16.67%)",
    }


def test_keep_in_target_loads_failing_rows_and_still_quarantines_them(tmp_path: Path) -> None:
    out = run_chain(tmp_path, PEOPLE, checks=[{"not_null": ["email"], "keep_in_target": True}])
    assert out.table.num_rows == 6 and len(out.quarantine) == 1


def test_row_count_bounds_are_inclusive(tmp_path: Path) -> None:
    out = run_chain(
        tmp_path, PEOPLE, checks=[{"row_count": {"min": 6, "max": 6}}, {"row_count": {"min": 7}, "name": "at_least_7"}]
    )
    assert out.verdicts() == {"row_count(6..6)": (True, "6 rows"), "at_least_7": (False, "6 rows, expected at least 7")}


def test_row_count_counts_rows_that_pass_the_row_checks(tmp_path: Path) -> None:
    out = run_chain(tmp_path, PEOPLE, checks=[{"not_null": ["id"]}, {"row_count": {"max": 5}}])
    assert out.verdicts()["row_count(..5)"] == (True, "5 rows")


def test_row_count_of_empty_input(tmp_path: Path) -> None:
    out = run_chain(tmp_path, PEOPLE.slice(0, 0), checks=[{"row_count": {"min": 1}}])
    assert out.verdicts()["row_count(1..)"] == (False, "0 rows, expected at least 1")


def test_freshness(tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    table = pa.table(
        {"updated_at": pa.array([now - timedelta(hours=30), now - timedelta(hours=2), None], pa.timestamp("us"))}
    )
    fresh = run_chain(tmp_path, table, checks=[{"freshness": {"column": "updated_at", "max_age": "3h"}}])
    passed, message = fresh.verdicts()["freshness(updated_at)"]
    assert passed and message.startswith("newest value") and "2.0h old" in message
    stale = run_chain(tmp_path / "2", table, checks=[{"freshness": {"column": "updated_at", "max_age": "1h"}}])
    assert stale.verdicts()["freshness(updated_at)"][0] is False


def test_freshness_of_dates_and_of_all_nulls(tmp_path: Path) -> None:
    table = pa.table({"day": pa.array([date(2020, 1, 1)], pa.date32())})
    old = run_chain(tmp_path, table, checks=[{"freshness": {"column": "day", "max_age": "1d"}}])
    assert old.verdicts()["freshness(day)"][0] is False
    nulls = pa.table({"day": pa.array([None], pa.date32())})
    none = run_chain(tmp_path / "2", nulls, checks=[{"freshness": {"column": "day", "max_age": "1d"}}])
    assert none.verdicts()["freshness(day)"] == (False, "no value to judge freshness by (no rows, or all null)")


def test_freshness_needs_a_temporal_column(tmp_path: Path) -> None:
    with pytest.raises(StepError, match="email is string; freshness needs a timestamp or a date"):
        run_chain(tmp_path, PEOPLE, checks=[{"freshness": {"column": "email", "max_age": "1d"}}])


def test_schema_exact_types_and_families(tmp_path: Path) -> None:
    good = {
        "schema": {"columns": {"id": "int64", "email": "string", "age": "number", "country": "string"}, "exact": True}
    }
    assert run_chain(tmp_path, PEOPLE, checks=[good]).verdicts()["schema(4 columns)"] == (True, "as expected")
    bad = {"schema": {"columns": {"id": "string", "phone": "string"}, "exact": True}}
    verdict = run_chain(tmp_path / "2", PEOPLE, checks=[bad]).verdicts()["schema(2 columns)"]
    assert verdict == (
        False,
        "id is int64, expected string; missing column phone; unexpected column email; unexpected column age; unexpected column country",
    )


def test_schema_is_judged_on_empty_input_too(tmp_path: Path) -> None:
    out = run_chain(tmp_path, PEOPLE.slice(0, 0), checks=[{"schema": {"columns": {"id": "integer"}}}])
    assert out.verdicts()["schema(1 columns)"] == (True, "as expected")


def test_a_check_on_a_missing_column_is_a_step_error(tmp_path: Path) -> None:
    with pytest.raises(StepError, match="no column 'mail'") as caught:
        run_chain(tmp_path, PEOPLE, checks=[{"not_null": ["mail"]}])
    assert caught.value.path == ("quality", 0)


def test_dataset_checks_take_no_threshold() -> None:
    with pytest.raises(ValidationError, match="threshold and keep_in_target are for row checks"):
        CHECKS.validate_python([{"row_count": {"min": 1}, "threshold": 0.1}])


def test_severity_warn_never_fails_the_run_and_error_does() -> None:
    results = [
        {
            "check": "a",
            "kind": "not_null",
            "level": "row",
            "input": "x",
            "scope": "d",
            "severity": "warn",
            "threshold": 0.0,
            "rows_checked": 10,
            "rows_failed": 1,
            "observed": {},
        },
        {
            "check": "b",
            "kind": "not_null",
            "level": "row",
            "input": "x",
            "scope": "d",
            "severity": "error",
            "threshold": 0.0,
            "rows_checked": 10,
            "rows_failed": 1,
            "observed": {},
        },
    ]
    assert [r["check"] for r in blocking_failures(results)] == ["b"]
    assert [r["passed"] for r in report(results)] == [False, False]


def test_results_of_several_tasks_merge_before_the_verdict() -> None:
    def part(rows: int, failed: int, newest: str | None) -> list[dict]:
        return [
            {
                "check": "nn",
                "kind": "not_null",
                "level": "row",
                "input": "x",
                "scope": "d",
                "severity": "error",
                "threshold": 0.1,
                "rows_checked": rows,
                "rows_failed": failed,
                "observed": {},
            },
            {
                "check": "rc",
                "kind": "row_count",
                "level": "dataset",
                "input": "x",
                "scope": "d",
                "severity": "error",
                "threshold": 0.0,
                "rows_checked": 0,
                "rows_failed": 0,
                "observed": {"rows": rows - failed, "min": 15, "max": None},
            },
            {
                "check": "fr",
                "kind": "freshness",
                "level": "dataset",
                "input": "x",
                "scope": "d",
                "severity": "error",
                "threshold": 0.0,
                "rows_checked": 0,
                "rows_failed": 0,
                "observed": {"newest": newest, "max_age_seconds": 3600.0, "checked_at": "2026-01-01T12:00:00+00:00"},
            },
        ]

    merged = {r["check"]: r for r in merge(part(10, 2, "2026-01-01T11:30:00+00:00") + part(10, 0, None))}
    assert (merged["nn"]["rows_checked"], merged["nn"]["rows_failed"]) == (20, 2)
    assert merged["rc"]["observed"]["rows"] == 18
    assert merged["fr"]["observed"]["newest"] == "2026-01-01T11:30:00+00:00"
    assert {r["check"]: r["passed"] for r in report(part(10, 2, "2026-01-01T11:30:00+00:00") + part(10, 0, None))} == {
        "nn": True,
        "rc": True,
        "fr": True,
    }
