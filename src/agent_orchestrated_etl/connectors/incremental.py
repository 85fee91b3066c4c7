"""Incremental loads: read only rows whose cursor moved past the committed high-water mark.

The state of a source is ``{"cursor": column, "value": the highest cursor
loaded, "keys": digests of the rows loaded at exactly that value}``. A run
reads ``cursor >= value`` and drops the rows whose digest is in ``keys``, so
rows that share the boundary value are neither lost (as with ``>``) nor
loaded twice (as with ``>=``). ``lag`` re-reads a window below the mark on
purpose (late-arriving rows) and therefore needs ``write: merge``.

When more than ``MAX_BOUNDARY_ROWS`` rows share the highest value (a bulk
update stamping one time on millions of rows), their digests are not kept:
the state says ``"keys": null`` and the next run reads ``cursor > value``.
A row that later arrives with exactly that value is then missed; ``lag``
with ``write: merge`` covers that case.

The planner (planning/windows.py) turns the committed state into a ``Window`` that travels inside
each Partition; the task applies it to the batches and reports what it saw;
the orchestrator merges those reports into the new state, which the
destination commits in the same transaction as the data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from agent_orchestrated_etl.exceptions import ConfigurationError

MAX_BOUNDARY_ROWS = 10_000
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class IncrementalSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cursor: str = Field(description="Column that grows when a row is added or changed (updated_at, id).")
    initial_value: int | float | dt.datetime | dt.date | str | None = Field(
        None, description="Where the first run starts; everything when omitted."
    )
    lag: float | str | None = Field(
        None,
        description="Re-read this far below the mark (seconds, or '2h', '1d'; days for date cursors). Needs write: merge.",
    )
    primary_key: list[str] = Field(
        default_factory=list, description="Columns that identify a row at the boundary; the whole row when empty."
    )


def encode(value: Any) -> Any:
    """A cursor value as JSON (tagged where JSON has no type for it)."""
    if isinstance(value, dt.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if isinstance(value, Decimal):
        return {"decimal": str(value)}
    return value


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        ((kind, text),) = value.items()
        parsers: dict[str, Callable[[str], Any]] = {
            "datetime": dt.datetime.fromisoformat,
            "date": dt.date.fromisoformat,
            "decimal": Decimal,
        }
        return parsers[kind](text)
    return value


@dataclass(frozen=True)
class Window:
    """What one run reads: ``cursor >= start`` (``>`` if ``strict``) minus the rows in ``exclude``, up to ``end`` if known."""

    cursor: str
    start: Any = None
    exclude: frozenset[str] = frozenset()
    end: Any = None
    key: tuple[str, ...] = ()
    previous: dict[str, Any] | None = None
    strict: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "cursor": self.cursor,
            "start": encode(self.start),
            "exclude": sorted(self.exclude),
            "end": encode(self.end),
            "key": list(self.key),
            "previous": self.previous,
            "strict": self.strict,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Window:
        return cls(
            data["cursor"],
            decode(data["start"]),
            frozenset(data["exclude"]),
            decode(data["end"]),
            tuple(data["key"]),
            data.get("previous"),
            data.get("strict", False),
        )


def window_predicates(window: Window, quote: Callable[[str], str], literal: Callable[[Any], str]) -> list[str]:
    """SQL predicates for the rows of one window: ``cursor >= start`` (``>`` when strict) and ``<= end``.

    The first run (no start) also takes the rows whose cursor is NULL; later runs cannot place them.
    """
    column = quote(window.cursor)
    found = []
    if window.start is not None:
        found.append(f"{column} {'>' if window.strict else '>='} {literal(window.start)}")
    if window.end is not None:
        bound = f"{column} <= {literal(window.end)}"
        found.append(bound if window.start is not None else f"({bound} OR {column} IS NULL)")
    return found


def window(spec: IncrementalSpec, state: dict[str, Any] | None, *, where: str) -> Window:
    """The window of the next run, from the committed state (or the initial value)."""
    if state is not None and state.get("cursor") != spec.cursor:
        raise ConfigurationError(
            f"the committed state tracks cursor {state.get('cursor')!r}, the spec now says {spec.cursor!r}",
            where=where,
            hint="run once with write: replace to start over, or restore the old cursor",
        )
    strict = False
    if state is None or state.get("value") is None:
        start, exclude = _initial(spec.initial_value), frozenset[Any]()
    else:
        keys = state.get("keys", ())
        start, exclude, strict = decode(state["value"]), frozenset(keys or ()), keys is None
    if spec.lag is not None and start is not None:
        start, exclude, strict = _minus_lag(start, spec.lag, where=where), frozenset(), False
    return Window(spec.cursor, start, exclude, None, tuple(spec.primary_key), state, strict)


def _initial(value: Any) -> Any:
    if isinstance(value, str):
        for parse in (dt.date.fromisoformat, dt.datetime.fromisoformat):
            try:
                return parse(value)
            except ValueError:
                continue
        raise ConfigurationError(
            f"incremental.initial_value {value!r} is not a number, a date or a timestamp",
            hint="write it as 2024-01-31 or 2024-01-31T08:00:00",
        )
    return value


def _minus_lag(start: Any, lag: float | str, *, where: str) -> Any:
    seconds: float
    if isinstance(lag, str):
        match = _DURATION.match(lag)
        if not match:
            raise ConfigurationError(
                f"incremental.lag {lag!r} is not a duration", where=where, hint="use seconds, or '30m', '2h', '1d'"
            )
        seconds = float(match.group(1)) * _SECONDS[match.group(2)]
    else:
        seconds = float(lag)
    if isinstance(start, dt.datetime):
        return start - dt.timedelta(seconds=seconds)
    if isinstance(start, dt.date):  # a bare number of lag means days for a date cursor
        return start - dt.timedelta(days=seconds if not isinstance(lag, str) else seconds / 86400)
    return start - (
        type(start)(seconds) if isinstance(start, Decimal | int) and float(seconds).is_integer() else seconds
    )


class Tracker:
    """Applies a window to one partition's batches and remembers the highest cursor it let through."""

    def __init__(self, window: Window, *, where: str) -> None:
        self.window = window
        self.where = where
        self.high: Any = None
        self.keys: set[str] | None = set()  # None: too many rows at ``high`` to remember

    def apply(self, batches: Iterable[tuple[pa.RecordBatch, Any]]) -> Iterator[tuple[pa.RecordBatch, Any]]:
        for batch, position in batches:
            batch = self._filter(batch)
            if batch.num_rows:
                self._observe(batch)
            yield batch, position

    def _column(self, batch: pa.RecordBatch) -> pa.Array:
        index = batch.schema.get_field_index(self.window.cursor)
        if index < 0:
            raise ConfigurationError(
                f"incremental cursor column {self.window.cursor!r} is not in the data",
                where=self.where,
                hint=f"columns are: {', '.join(batch.schema.names)}",
            )
        return batch.column(index)

    def _filter(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if self.window.start is None:
            return batch
        column = self._column(batch)
        start = _scalar(self.window.start, column.type)
        keep = pc.greater(column, start) if self.window.strict else pc.greater_equal(column, start)
        if self.window.exclude:
            at_start = pc.fill_null(pc.equal(column, start), False)
            if pc.any(at_start).as_py():
                digests = pa.array(self._digests(batch, at_start))
                seen = pc.is_in(digests, pa.array(sorted(self.window.exclude)))
                drop = pa.array([False] * batch.num_rows)
                drop = pc.replace_with_mask(drop, at_start, seen)
                keep = pc.and_(keep, pc.invert(drop))
        return batch.filter(pc.fill_null(keep, False))

    def _observe(self, batch: pa.RecordBatch) -> None:
        column = self._column(batch)
        high = pc.max(column)
        if not high.is_valid:
            return
        value = high.as_py()
        if self.high is None or value > self.high:
            self.high, self.keys = value, set()
        if value == self.high and self.keys is not None:
            at_high = pc.fill_null(pc.equal(column, high), False)
            if len(self.keys) + pc.sum(at_high).as_py() > MAX_BOUNDARY_ROWS:
                self.keys = None
            else:
                self.keys.update(self._digests(batch, at_high))

    def _digests(self, batch: pa.RecordBatch, mask: pa.Array) -> list[str]:
        # Only the rows at one cursor value pass through Python, usually a handful.
        rows = batch.filter(mask)
        if self.window.key:
            rows = rows.select(list(self.window.key))
        return [digest(row) for row in rows.to_pylist()]

    def report(self) -> dict[str, Any] | None:
        """What this partition saw, for ``merge``: None when no row passed."""
        if self.high is None:
            return None
        return {"value": encode(self.high), "keys": None if self.keys is None else sorted(self.keys)}


def digest(row: dict[str, Any]) -> str:
    text = json.dumps(row, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def merge(window: Window, reports: Iterable[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The new state from the partitions' reports; the previous state when nothing new arrived."""
    high: Any = None
    keys: set[str] | None = set()
    for report in reports:
        if report is None:
            continue
        value = decode(report["value"])
        if high is None or value > high:
            high, keys = value, None if report["keys"] is None else set(report["keys"])
        elif value == high:
            keys = None if keys is None or report["keys"] is None else keys | set(report["keys"])
    if high is None:
        return window.previous
    previous = window.previous or {}
    if keys is not None and previous.get("value") is not None and decode(previous["value"]) == high:
        old = previous.get("keys", ())
        keys = None if old is None else keys | set(old)  # rows at the old mark stay excluded
    if keys is not None and len(keys) > MAX_BOUNDARY_ROWS:
        keys = None
    return {"cursor": window.cursor, "value": encode(high), "keys": None if keys is None else sorted(keys)}


def _scalar(value: Any, dtype: pa.DataType) -> pa.Scalar:
    if pa.types.is_timestamp(dtype) and isinstance(value, dt.datetime):
        if dtype.tz and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        elif not dtype.tz and value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
    elif pa.types.is_timestamp(dtype) and isinstance(value, dt.date):
        value = dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC if dtype.tz else None)
    return pa.scalar(value).cast(dtype)


def state_key(pipeline: str, source: str) -> str:
    """Where a source's state lives in a destination: one key per pipeline and source."""
    return f"{pipeline}/{source}"


def committed_states(
    pipeline: str, reports: Iterable[tuple[str, dict[str, Any], dict[str, Any] | None]]
) -> dict[str, Any]:
    """The states to commit with a destination, from (source, window, report) of every task feeding it."""
    by_source: dict[str, tuple[Window, list[dict[str, Any] | None]]] = {}
    for source, window_dict, report in reports:
        entry = by_source.setdefault(source, (Window.from_dict(window_dict), []))
        entry[1].append(report)
    found = {}
    for source, (win, source_reports) in by_source.items():
        state = merge(win, source_reports)
        if state is not None:
            found[state_key(pipeline, source)] = state
    return found
