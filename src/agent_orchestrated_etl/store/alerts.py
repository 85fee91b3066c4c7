"""Alerts the monitor raised, kept so the dashboard and the API can show what was sent and when."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from agent_orchestrated_etl.store.pipelines import utc
from agent_orchestrated_etl.store.schema import alerts


class AlertStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def add(self, alert: dict[str, Any]) -> None:
        columns = {c.name for c in alerts.columns}
        with self.engine.begin() as conn:
            conn.execute(alerts.insert().values({k: v for k, v in alert.items() if k in columns}))

    def recent(self, *, run_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        query = alerts.select().order_by(alerts.c.at.desc()).limit(limit)
        if run_id is not None:
            query = query.where(alerts.c.run_id == run_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [{**dict(r), "at": utc(r["at"])} for r in rows]
