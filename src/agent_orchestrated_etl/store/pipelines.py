"""Pipelines registered with ``agent-etl serve``: their YAML, where relative paths resolve, schedule state.

The raw YAML is kept (``${env:...}`` unresolved), like the run records keep
the spec's hash, so a secret is resolved at run time and never stored.
The table is in store/schema.py with the others, made by the migrations.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import overload

import sqlalchemy as sa

from agent_orchestrated_etl.store.schema import pipelines


@dataclass(frozen=True)
class RegisteredPipeline:
    name: str
    yaml: str
    sha256: str
    base_dir: str
    registered_at: datetime
    updated_at: datetime
    last_fire_at: datetime | None


class PipelineStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def register(self, name: str, yaml_text: str, base_dir: str) -> bool:
        """Insert or replace a pipeline's YAML; True when the name is new."""
        now = datetime.now(UTC)
        sha = hashlib.sha256(yaml_text.encode()).hexdigest()
        with self.engine.begin() as conn:
            exists = conn.execute(sa.select(pipelines.c.name).where(pipelines.c.name == name)).first() is not None
            if exists:
                conn.execute(
                    pipelines.update()
                    .where(pipelines.c.name == name)
                    .values(yaml=yaml_text, sha256=sha, base_dir=base_dir, updated_at=now)
                )
            else:
                conn.execute(
                    pipelines.insert().values(
                        name=name, yaml=yaml_text, sha256=sha, base_dir=base_dir, registered_at=now, updated_at=now
                    )
                )
        return not exists

    def get(self, name: str) -> RegisteredPipeline | None:
        with self.engine.connect() as conn:
            row = conn.execute(pipelines.select().where(pipelines.c.name == name)).mappings().first()
        return _pipeline(row) if row else None

    def list(self) -> list[RegisteredPipeline]:
        with self.engine.connect() as conn:
            rows = conn.execute(pipelines.select().order_by(pipelines.c.name)).mappings().all()
        return [_pipeline(r) for r in rows]

    def delete(self, name: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(pipelines.delete().where(pipelines.c.name == name)).rowcount > 0

    def mark_fired(self, name: str, at: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(pipelines.update().where(pipelines.c.name == name).values(last_fire_at=at))


@overload
def utc(value: datetime) -> datetime: ...
@overload
def utc(value: None) -> None: ...
def utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes for timezone-aware columns; everything stored is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _pipeline(row: sa.RowMapping) -> RegisteredPipeline:
    return RegisteredPipeline(
        name=row["name"],
        yaml=row["yaml"],
        sha256=row["sha256"],
        base_dir=row["base_dir"],
        registered_at=utc(row["registered_at"]),
        updated_at=utc(row["updated_at"]),
        last_fire_at=utc(row["last_fire_at"]),
    )
