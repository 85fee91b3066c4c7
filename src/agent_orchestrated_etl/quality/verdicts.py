"""Verdicts: task results merged per check, judged, and summed up as the run's quality report.

A check's results come from every task that evaluated it (each partition of a
source, say). They carry all a verdict needs, so a stored run can be judged
again for ``agent-etl runs show`` without its spec.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pyarrow as pa

_FAMILIES = {
    "integer": pa.types.is_integer,
    "number": lambda t: pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t),
    "string": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t),
    "temporal": pa.types.is_temporal,
    "boolean": pa.types.is_boolean,
}


def schema_problems(expected: dict[str, str], exact: bool, schema: pa.Schema) -> list[str]:
    problems = []
    for name, wanted in expected.items():
        if name not in schema.names:
            problems.append(f"missing column {name}")
            continue
        actual = schema.field(name).type
        family = _FAMILIES.get(wanted.lower())
        if not (family(actual) if family else str(actual) == wanted.replace(" ", "").replace(",", ", ")):
            problems.append(f"{name} is {actual}, expected {wanted}")
    if exact:
        problems.extend(f"unexpected column {n}" for n in schema.names if n not in expected)
    return problems


def merge(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One result per (check, input, scope), summing counts and combining observed state."""
    merged: dict[tuple[str, str, str], dict[str, Any]] = {}
    for result in results:
        key = (result["check"], result["input"], result["scope"])
        if key not in merged:
            merged[key] = {**result, "observed": dict(result["observed"])}
            continue
        into = merged[key]
        into["rows_checked"] += result["rows_checked"]
        into["rows_failed"] += result["rows_failed"]
        seen, new = into["observed"], result["observed"]
        if result["kind"] == "row_count":
            seen["rows"] += new["rows"]
        elif result["kind"] == "freshness":
            seen["newest"] = max(filter(None, [seen["newest"], new["newest"]]), default=None)
            seen["checked_at"] = max(seen["checked_at"], new["checked_at"])
        elif result["kind"] == "schema" and not seen.get("columns"):
            into["observed"] = dict(new)
    return [merged[key] for key in sorted(merged, key=lambda k: (k[1], k[0], k[2]))]


def verdict(result: dict[str, Any]) -> tuple[bool, str]:
    """Passed or not, and a one-line account of why."""
    observed, kind = result["observed"], result["kind"]
    if kind == "reconcile":
        from agent_orchestrated_etl.verify.reconcile import verdict as reconciled

        return reconciled(observed)
    if kind == "row_count":
        rows, low, high = observed["rows"], observed["min"], observed["max"]
        ok = (low is None or rows >= low) and (high is None or rows <= high)
        return ok, f"{rows:,} rows" + ("" if ok else f", expected {_between(low, high)}")
    if kind == "freshness":
        if observed["newest"] is None:
            return False, "no value to judge freshness by (no rows, or all null)"
        age = (
            datetime.fromisoformat(observed["checked_at"]) - datetime.fromisoformat(observed["newest"])
        ).total_seconds()
        ok = age <= observed["max_age_seconds"]
        return ok, f"newest value {observed['newest']} is {_duration(age)} old" + (
            "" if ok else f", more than {_duration(observed['max_age_seconds'])}"
        )
    if kind == "schema":
        if "problems" not in observed:
            return True, "not evaluated: the input had no batches"
        problems = observed["problems"]
        return not problems, "; ".join(problems) or "as expected"
    checked, failed, threshold = result["rows_checked"], result["rows_failed"], result["threshold"]
    ok = failed <= threshold * checked
    share = f" ({failed / checked:.2%})" if checked else ""
    allowed = f", threshold {threshold:.2%}" if threshold else ""
    return ok, f"{failed:,} of {checked:,} rows failed{share}{allowed}"


def judged(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One task's results, each with the verdict on that task's rows alone (the run's comes from ``report``)."""
    return [{**r, "passed": passed, "message": message} for r in results for passed, message in [verdict(r)]]


def report(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The quality report: every check with its counts, pass or fail, and why."""
    out = []
    for result in merge(results):
        passed, message = verdict(result)
        out.append({**result, "passed": passed, "message": message})
    return out


def blocking_failures(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Failed checks whose severity is error: they fail the run."""
    return [r for r in report(results) if not r["passed"] and r["severity"] == "error"]


def _between(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"between {low:,} and {high:,}"
    return f"at least {low:,}" if low is not None else f"at most {high:,}"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"
