"""Whether a destination may commit a load that has no row to publish.

A read that produced nothing because everything it met was rejected (every
GraphQL page answered ``errors``, every CSV line malformed, every row failed
a check, a partition set aside as unreadable) is not an empty source. With
``write: replace`` publishing it would empty the target, so it is refused
unless the destination says ``allow_empty: true``. A source that returned no
row and had nothing quarantined is empty, and replace empties the target:
that is what replace from an empty source means. With append and merge an
empty load changes no row of the target, so it commits (the quarantine
entries are published with it).

The rule reads the counts the tasks feeding the destination reported; an
empty or header-only file has a quarantine entry of its own, so it counts
as rejected input, not as an empty source.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from agent_orchestrated_etl.model.outcome import TaskOutcome


@dataclass(frozen=True)
class LoadCounts:
    read: int = 0
    written: int = 0
    quarantined: int = 0

    @classmethod
    def of(cls, outcomes: Iterable[TaskOutcome]) -> LoadCounts:
        outcomes = list(outcomes)
        return cls(
            read=sum(o.rows_read for o in outcomes),
            written=sum(o.rows_written for o in outcomes),
            quarantined=sum(o.rows_quarantined for o in outcomes),
        )


@dataclass(frozen=True)
class EmptyLoadVerdict:
    commit: bool
    choice: str
    reason: str


def judge_empty_load(write: str, allow_empty: bool, counts: LoadCounts) -> EmptyLoadVerdict | None:
    """None when there are rows to publish (the ordinary commit); else whether and why an empty load commits."""
    if counts.written > 0:
        return None
    if counts.quarantined == 0:
        if write == "replace":
            return EmptyLoadVerdict(
                True,
                "commit an empty replace",
                "the source returned no rows and none was quarantined: it is empty, so replace empties the target",
            )
        return EmptyLoadVerdict(
            True,
            "commit: nothing to add",
            f"the source returned no rows; write: {write} leaves the target's rows as they were",
        )
    rejected = (
        f"every row it read was quarantined ({counts.quarantined:,} quarantined, {counts.read:,} read, 0 to load)"
    )
    if write != "replace":
        return EmptyLoadVerdict(
            True,
            "commit: nothing to add",
            f"{rejected}; write: {write} leaves the target's rows as they were and publishes the quarantine entries",
        )
    if allow_empty:
        return EmptyLoadVerdict(
            True, "commit an empty replace", f"{rejected}; allow_empty: true publishes it, which empties the target"
        )
    return EmptyLoadVerdict(
        False,
        "fail the commit: nothing to load, every row was quarantined",
        f"{rejected}; a failed read is not an empty source, and write: replace would empty the target, which stays as it was"
        " (fix the source and run again, or set allow_empty: true on the destination to publish an empty replace)",
    )
