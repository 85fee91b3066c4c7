"""Read-only queries over the run records that the API and the SLA checks need.

Kept apart from records.py (which writes the records) so the reading side can
grow page by page without touching the writer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from agent_orchestrated_etl.store.pipelines import utc
from agent_orchestrated_etl.store.schema import events, runs


def page_events(
    engine: sa.Engine, *, run_id: str | None, after: int, limit: int, kind: str | None = None
) -> list[dict[str, Any]]:
    """Events in the order they were recorded, from the one after ``after`` (a cursor: the last id seen)."""
    query = events.select().where(events.c.id > after).order_by(events.c.id).limit(limit)
    if run_id is not None:
        query = query.where(events.c.run_id == run_id)
    if kind is not None:
        query = query.where(events.c.kind == kind)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [
        {"id": r["id"], "run_id": r["run_id"], "kind": r["kind"], "at": utc(r["at"]), "event": r["payload"]}
        for r in rows
    ]


def last_success(engine: sa.Engine, pipeline: str) -> datetime | None:
    """When the pipeline last finished a run that succeeded: what freshness is measured from."""
    query = sa.select(sa.func.max(runs.c.finished_at)).where(runs.c.pipeline == pipeline, runs.c.status == "succeeded")
    with engine.connect() as conn:
        return utc(conn.execute(query).scalar())


def runs_page(
    engine: sa.Engine, *, pipeline: str | None, status: str | None, limit: int, before: str | None
) -> list[dict[str, Any]]:
    """Runs newest first; ``before`` is the last run id of the previous page (run ids sort by start time)."""
    query = runs.select().order_by(runs.c.run_id.desc()).limit(limit)
    if pipeline is not None:
        query = query.where(runs.c.pipeline == pipeline)
    if status is not None:
        query = query.where(runs.c.status == status)
    if before is not None:
        query = query.where(runs.c.run_id < before)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [{**dict(r), "started_at": utc(r["started_at"]), "finished_at": utc(r["finished_at"])} for r in rows]
