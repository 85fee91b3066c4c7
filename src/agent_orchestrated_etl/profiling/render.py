"""A profile as a rich table for the terminal, as JSON, and as a self-contained HTML page."""

from __future__ import annotations

import html
import json
from typing import Any

from rich.console import JustifyMethod
from rich.table import Table

from agent_orchestrated_etl.profiling.profile import ColumnProfile, Profile


def as_json(profile: Profile) -> str:
    return json.dumps(profile.to_dict(), default=str, indent=2)


def _short(value: Any, width: int = 24) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _distinct(column: ColumnProfile) -> str:
    if column.distinct is None:
        return ""
    return f"{column.distinct:,}" if column.distinct_exact else f"~{column.distinct:,}"


def _semantic(column: ColumnProfile) -> str:
    if column.semantic is None:
        return ""
    return f"{column.semantic} (PII)" if column.pii else column.semantic


def _top(column: ColumnProfile, limit: int = 3) -> str:
    marker = "" if column.top_exact else "~"
    return ", ".join(f"{_short(t['value'], 14)} {marker}{t['percent']:.1f}%" for t in column.top[:limit])


def header(profile: Profile) -> str:
    scope = "every row" if profile.sampling == "whole source" else f"a {profile.sampling}"
    return f"{profile.source}: {profile.rows:,} rows read, {profile.rows_profiled:,} profiled ({scope}) in {profile.seconds:.2f}s"


def as_table(profile: Profile) -> Table:
    table = Table(title=header(profile), title_justify="left")
    widths = {"column": 24, "type": 16, "semantic": 18, "min": 16, "max": 16, "top values": 40}
    numbers = {"nulls %": 7, "distinct": 10, "mean": 9}
    for column in ("column", "type", "semantic", "nulls %", "distinct", "min", "max", "mean", "top values"):
        justify: JustifyMethod = "right" if column in numbers else "left"
        table.add_column(
            column,
            justify=justify,
            no_wrap=column != "column",  # a column's name wraps; the values may be cut, the names never
            overflow="fold" if column == "column" else "ellipsis",
            max_width=widths.get(column),
            min_width=numbers.get(column, 6),
        )
    for c in profile.columns:
        mean = f"{c.mean:,.4g}" if c.mean is not None else ""
        table.add_row(
            c.name,
            c.arrow_type,
            _semantic(c),
            f"{c.null_percent:.2f}",
            _distinct(c),
            _short(c.min, 16),
            _short(c.max, 16),
            mean,
            _top(c, 2),
        )
    return table


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}h1{font-size:1.3rem}
.meta{color:#555;margin-bottom:1.5rem}.col{border:1px solid #ddd;border-radius:6px;padding:.8rem 1rem;margin:.8rem 0}
.col h2{font-size:1.05rem;margin:.1rem 0 .5rem}.tag{font-size:.75rem;background:#eef;border-radius:4px;padding:.1rem .4rem;margin-left:.4rem}
.pii{background:#fdd}table{border-collapse:collapse;font-size:.85rem}td,th{padding:.15rem .6rem;text-align:left;vertical-align:top}
th{color:#666;font-weight:normal}.bar{background:#8ab4f8;height:.7rem;display:inline-block}.note{color:#777;font-size:.8rem}
"""


def _top_row(top: dict[str, Any]) -> str:
    count = "" if top["count"] is None else f" ({top['count']:,})"
    bar = f"<span class='bar' style='width:{max(1, round(top['percent'] * 2))}px'></span>"
    return f"<tr><td>{html.escape(_short(top['value'], 40))}</td><td>{bar} {top['percent']:.2f}%{count}</td></tr>"


def as_html(profile: Profile) -> str:
    """One page, no scripts or external files, so it can be mailed or attached to a ticket."""
    e = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Profile of {e(profile.source)}</title><style>{_STYLE}</style></head><body>"
    ]
    parts.append(f"<h1>Profile of {e(profile.source)}</h1><div class='meta'>{e(header(profile))}</div>")
    for c in profile.columns:
        tags = f"<span class='tag'>{e(c.arrow_type)}</span>"
        if c.semantic:
            tags += f"<span class='tag{' pii' if c.pii else ''}'>{e(_semantic(c))}</span>"
        rows = [
            ("nulls", f"{c.nulls:,} ({c.null_percent:.2f}%)"),
            ("distinct", _distinct(c) + ("" if c.distinct_exact else " (estimate)")),
        ]
        rows += [("min", _short(c.min, 60)), ("max", _short(c.max, 60))]
        if c.mean is not None:
            rows += [("mean", f"{c.mean:,.6g}"), ("stddev", f"{c.stddev:,.6g}" if c.stddev is not None else "")]
        if c.quantiles:
            label = "quantiles" + ("" if c.quantiles_exact else " (from a sample)")
            rows.append((label, ", ".join(f"{k}: {_short(v, 16)}" for k, v in c.quantiles.items())))
        if c.length:
            rows.append(("length", f"min {c.length['min']}, mean {c.length['mean']}, max {c.length['max']}"))
        stats = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in rows)
        top = "".join(_top_row(t) for t in c.top)
        note = "" if c.top_exact else "<div class='note'>top values from a sample</div>"
        parts.append(
            f"<div class='col'><h2>{e(c.name)}{tags}</h2><table><tr><td><table>{stats}</table></td><td><table>{top}</table>{note}</td></tr></table></div>"
        )
    parts.append("</body></html>")
    return "".join(parts)
