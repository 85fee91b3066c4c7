"""Alerts the monitor raised, kept so the dashboard and the API can show what was sent and when."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from agent_orchestrated_etl.store.pipelines import utc
from agent_orchestrated_etl.store.records import metadata

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("rule", sa.String(40), nullable=False),
    sa.Column("severity", sa.String(20), nullable=False),
    sa.Column("pipeline", sa.String(200)),
    sa.Column("run_id", sa.String(64), index=True),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Column("suppressed", sa.Integer, nullable=False, default=0),
)


class AlertStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        metadata.create_all(engine, tables=[alerts])

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
