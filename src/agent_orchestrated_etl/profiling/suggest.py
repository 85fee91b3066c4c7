"""Expectations suggested from a profile, as YAML to paste under ``quality:``, each with its reason."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from typing import Any

from agent_orchestrated_etl.profiling.profile import ColumnProfile, Profile
from agent_orchestrated_etl.profiling.semantic import PATTERNS

#: A column is suggested as unique when its distinct estimate (0.8% standard error) is this close to its rows.
UNIQUE_TOLERANCE = 0.02
RECENT_DAYS = 7


def suggest(profile: Profile, input_name: str) -> list[tuple[dict[str, Any], str]]:
    """(check, reason) pairs; every check names ``input_name``."""
    rows = profile.rows_profiled
    found: list[tuple[dict[str, Any], str]] = []
    sampled = "" if profile.sampling == "whole source" else " in the sample"
    if rows:
        found.append(
            (
                {"row_count": {"min": max(1, rows // 2)}},
                f"half of the {rows:,} rows profiled{sampled}: catches an empty or truncated load",
            )
        )
        found.append(
            (
                {"schema": {"columns": {c.name: c.arrow_type for c in profile.columns}}},
                "today's columns and types; a change upstream fails loudly",
            )
        )
    for c in profile.columns:
        found += _for_column(c, rows, sampled)
    return [({**check, "input": input_name}, reason) for check, reason in found]


def _for_column(c: ColumnProfile, rows: int, sampled: str) -> list[tuple[dict[str, Any], str]]:
    out: list[tuple[dict[str, Any], str]] = []
    if rows and c.nulls == 0:
        out.append(({"not_null": [c.name]}, f"no nulls in {rows:,} rows{sampled}"))
    elif rows and c.null_percent < 5:
        share = round(c.null_percent / 100 * 2, 4)
        out.append(
            ({"not_null": [c.name], "threshold": share}, f"{c.null_percent:.2f}% nulls today; allow up to twice that")
        )
    nonnull = rows - c.nulls
    close = (
        c.distinct == nonnull if c.distinct_exact else abs((c.distinct or 0) - nonnull) <= UNIQUE_TOLERANCE * nonnull
    )
    if c.distinct is not None and nonnull > 1 and close:
        estimated = "" if c.distinct_exact else " (estimated)"
        out.append(({"unique": [c.name]}, f"{c.distinct:,} distinct values{estimated} in {nonnull:,} non-null rows"))
    if c.values is not None and 1 < len(c.values) <= 20 and c.length is not None:
        out.append(
            ({"accepted_values": {"column": c.name, "values": c.values}}, f"only these {len(c.values)} values occur")
        )
    elif c.mean is not None and c.min is not None:
        low, high = _plain(c.min), _plain(c.max)
        out.append(
            ({"in_range": {"column": c.name, "min": low, "max": high}}, f"every value is between {low} and {high}")
        )
    if c.semantic in ("email", "uuid", "url", "iso_date") and c.semantic_share is not None:
        out.append(
            (
                {"regex": {"column": c.name, "pattern": f"^{PATTERNS[c.semantic]}$"}},
                f"{c.semantic_share:.1%} of values look like: {c.semantic.replace('_', ' ')}",
            )
        )
    newest = _as_datetime(c.max)
    if newest is not None:
        age_days = (datetime.now(UTC) - newest).total_seconds() / 86400
        if 0 <= age_days <= RECENT_DAYS:
            window = max(1, round(age_days * 2 + 1))
            out.append(
                (
                    {"freshness": {"column": c.name, "max_age": f"{window}d"}},
                    f"the newest value is {age_days:.1f} days old",
                )
            )
    return out


def _plain(value: Any) -> Any:
    """A YAML-friendly scalar: decimals and dates as plain numbers and strings."""
    if isinstance(value, bool | int | float | str):
        return value
    try:
        return float(value) if not isinstance(value, date) else str(value)
    except (TypeError, ValueError):
        return str(value)


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return None


def as_yaml(profile: Profile, input_name: str, pii: bool = True) -> str:
    """``quality:`` entries with a comment line each; flow style keeps one check per line."""
    lines = [
        f"# Suggested from a profile of {profile.source} ({profile.rows_profiled:,} rows, {profile.sampling}).",
        "quality:",
    ]
    for check, reason in suggest(profile, input_name):
        lines.append(f"  # {reason}")
        lines.append(f"  - {_flow(check)}")
    if pii:
        for c in profile.columns:
            if c.pii:
                lines.append(
                    f"  # {c.name} looks like PII ({c.semantic}): consider `mask:` or `hash:` in a transform before loading"
                )
    return "\n".join(lines) + "\n"


def _key(key: str) -> str:
    return key if re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key) else json.dumps(key)


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid YAML double-quoted scalar
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)
