"""The agents' episodes in the metadata store: what agents/memory.py remembers, and the vectors it searches.

Everything written is redacted with the run's registered secrets first, as
the run record is (redaction.py), so no secret reaches the table whatever
an agent puts in an episode.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from agent_orchestrated_etl.redaction import redact, redact_data
from agent_orchestrated_etl.store.pipelines import utc
from agent_orchestrated_etl.store.schema import memory_episodes

#: Rows fetched per round trip when the vectors are loaded for search.
_CHUNK = 10_000


@dataclass(frozen=True)
class Episode:
    """One thing an agent remembers. ``text`` is what search matches; ``detail`` holds the figures."""

    kind: str
    text: str
    detail: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    pipeline: str | None = None
    system: str | None = None
    signature: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "at": self.at.isoformat(),
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "system": self.system,
            "signature": self.signature,
            "text": self.text,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class StoredVectors:
    """A chunk of stored episodes as search needs them: ids, vectors (bytes), systems and signatures."""

    ids: list[int]
    vectors: list[bytes]
    systems: list[str | None]
    signatures: list[str | None]


class EpisodeStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def add(self, episodes: list[Episode], vectors: list[bytes], embedder: str) -> list[int]:
        """Store the episodes (redacted) with their vectors; returns their ids, in order."""
        rows = [
            {
                "kind": episode.kind,
                "at": episode.at,
                "run_id": episode.run_id,
                "pipeline": redact(episode.pipeline) if episode.pipeline else None,
                "system": redact(episode.system) if episode.system else None,
                "signature": redact(episode.signature) if episode.signature else None,
                "text": redact(episode.text),
                "detail": redact_data(episode.detail),
                "embedder": embedder,
                "vector": vector,
            }
            for episode, vector in zip(episodes, vectors, strict=True)
        ]
        insert = memory_episodes.insert().returning(memory_episodes.c.id, sort_by_parameter_order=True)
        with self.engine.begin() as conn:
            return [int(i) for i in conn.execute(insert, rows).scalars()]

    def get(self, ids: list[int]) -> dict[int, Episode]:
        if not ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(memory_episodes).where(memory_episodes.c.id.in_(ids))
            ).mappings()  # fmt: skip
            return {row["id"]: _episode(row) for row in rows}

    def vectors(self, embedder: str, *, after: int = 0) -> Iterator[StoredVectors]:
        """The vectors of ``embedder`` with ids above ``after``, in id order, a chunk at a time."""
        c = memory_episodes.c
        while True:
            query = (
                sa.select(c.id, c.vector, c.system, c.signature)
                .where(c.embedder == embedder, c.id > after)
                .order_by(c.id)
                .limit(_CHUNK)
            )
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
            if not rows:
                return
            yield StoredVectors(
                [r.id for r in rows], [r.vector for r in rows], [r.system for r in rows], [r.signature for r in rows]
            )
            after = rows[-1].id

    def forget(self, *, before: datetime | None = None, keep: int | None = None) -> int:
        """Delete episodes older than ``before``, and all but the newest ``keep``; returns how many went."""
        c = memory_episodes.c
        gone = 0
        with self.engine.begin() as conn:
            if before is not None:
                gone += conn.execute(memory_episodes.delete().where(c.at < before)).rowcount
            if keep is not None:
                newest_dropped = conn.execute(
                    sa.select(c.id).order_by(c.id.desc()).offset(keep).limit(1)
                ).scalar()  # fmt: skip
                if newest_dropped is not None:
                    gone += conn.execute(memory_episodes.delete().where(c.id <= newest_dropped)).rowcount
        return gone

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(memory_episodes)).scalar_one())


def _episode(row: Any) -> Episode:
    return Episode(
        kind=row["kind"],
        text=row["text"],
        detail=row["detail"] or {},
        run_id=row["run_id"],
        pipeline=row["pipeline"],
        system=row["system"],
        signature=row["signature"],
        at=utc(row["at"]),
        id=row["id"],
    )
