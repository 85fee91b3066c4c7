"""Agent memory: episodes of what happened to runs and sources, kept in the store and found by semantic search.

An episode is a run's summary (counts, durations, throughput per source), a
failure with its normalised error signature and the recovery that was tried
(and whether it worked), or a source's profile. ``RunMemory`` writes a run's
episodes from the events the run record keeps, when the run finishes;
``Memory`` remembers, recalls, shows and forgets, and the ``remember`` and
``recall`` tools put it on the hub. Remembering never fails a run: an error is
logged and the run goes on. Nothing of the data goes in but profiles, and
everything is masked with the run's secrets (store/memory.py).
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from agent_orchestrated_etl.agents.memory_index import HashedEmbedder, NumpyIndex, key_of, query_keys
from agent_orchestrated_etl.config import Settings, load_settings
from agent_orchestrated_etl.model.messages import Decision, RunEvent, RunFinished, RunStarted, TaskFailed, TaskFinished
from agent_orchestrated_etl.model.vocabulary import RecoveryAction
from agent_orchestrated_etl.redaction import redact
from agent_orchestrated_etl.store.memory import Episode, EpisodeStore
from agent_orchestrated_etl.store.records import RunStore

log = logging.getLogger(__name__)

_SQLSTATE = re.compile(r"SQLSTATE[: =]+([0-9A-Z]{5})\b")
_HTTP = re.compile(r"\b(?:HTTP|server error|status)[ :]*([1-5]\d\d)\b|^([45]\d\d) [A-Z]")
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`")
_ID = re.compile(r"\b(?=[0-9a-f-]*\d)[0-9a-f]{8,}(?:-[0-9a-f]{4,})*\b|\b[0-9a-f]{8}-[0-9a-f-]{27}\b", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![A-Za-z_])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


@dataclass(frozen=True)
class Signature:
    """What makes two failures the same: the error's class, the system, its SQLSTATE or HTTP status, its masked message."""

    error_class: str
    system: str | None
    code: str | None
    message: str

    def __str__(self) -> str:
        where = f" on {self.system}" if self.system else ""
        code = f" [{self.code}]" if self.code else ""
        return f"{self.error_class}{where}{code}: {self.message}"


def mask_message(message: str) -> str:
    """The message with its values masked: quoted literals, ids and numbers, and any registered secret."""
    text = redact(message)
    text = _QUOTED.sub("?", text)
    text = _ID.sub("<id>", text)
    text = _NUMBER.sub("N", text)
    return " ".join(text.split())[:500]


def signature_of(error_class: str, message: str, system: str | None) -> Signature:
    code = None
    if found := _SQLSTATE.search(message):
        code = found.group(1)
    elif found := _HTTP.search(message):
        code = found.group(1) or found.group(2)
    return Signature(error_class, system, code, mask_message(message))


@dataclass(frozen=True)
class Recalled:
    episode: Episode
    score: float


class Memory:
    """The episodes of one store, searched with the embedded hashed embedding and exact cosine."""

    def __init__(self, store: EpisodeStore, *, retention: timedelta, max_episodes: int) -> None:
        self.store = store
        self.retention = retention
        self.max_episodes = max_episodes
        self.embedder = HashedEmbedder()
        self._index = NumpyIndex(self.embedder.dim)
        self._loaded = 0  # the highest id in the index
        self._lock = threading.Lock()

    @classmethod
    def of(cls, store: RunStore, settings: Settings) -> Memory:
        return cls(
            EpisodeStore(store.engine),
            retention=timedelta(days=settings.memory_retention_days),
            max_episodes=settings.memory_max_episodes,
        )

    def remember(self, episodes: list[Episode]) -> list[int]:
        """Store episodes, then forget what is past the retention or beyond the size limit."""
        if not episodes:
            return []
        vectors = self.embedder.embed([_searchable(e) for e in episodes])
        ids = self.store.add(episodes, [v.tobytes() for v in vectors], self.embedder.name)
        gone = self.store.forget(before=datetime.now(UTC) - self.retention, keep=self.max_episodes)
        if gone:
            self._reset()
        return ids

    def recall(self, query: str, k: int = 5, *, kind: str | None = None) -> list[Recalled]:
        """The ``k`` episodes nearest ``query``; one that shares a system or error class the query names ranks first."""
        with self._lock:
            self._refresh()
            vector = self.embedder.embed([query])[0]
            # A filter by kind, and episodes another process forgot, thin the hits: ask for more.
            hits = self._index.search(vector, query_keys(query), k * 4 if kind else k + 2)
        episodes = self.store.get([h.id for h in hits])
        found = [Recalled(episodes[h.id], h.score) for h in hits if h.id in episodes]
        return [r for r in found if kind is None or r.episode.kind == kind][:k]

    def show(self, episode_id: int) -> Episode | None:
        return self.store.get([episode_id]).get(episode_id)

    def forget(self, before: datetime) -> int:
        gone = self.store.forget(before=before)
        self._reset()
        return gone

    def _refresh(self) -> None:
        for chunk in self.store.vectors(self.embedder.name, after=self._loaded):
            matrix = np.frombuffer(b"".join(chunk.vectors), dtype=np.float32).reshape(len(chunk.ids), -1)
            signatures = [_signature_keys(s) for s in chunk.signatures]
            self._index.add(chunk.ids, matrix, [key_of(s) if s else 0 for s in chunk.systems], signatures)
            self._loaded = chunk.ids[-1]

    def _reset(self) -> None:
        with self._lock:
            self._index = NumpyIndex(self.embedder.dim)
            self._loaded = 0


def _searchable(episode: Episode) -> str:
    parts = [episode.kind, episode.text, episode.system or "", episode.signature or "", episode.pipeline or ""]
    return " ".join(p for p in parts if p)


def _signature_keys(signature: str | None) -> list[int]:
    """The keys of a stored signature's error class and code (its text is ``Class on system [code]: message``)."""
    if not signature:
        return []
    head = signature.partition(":")[0]
    keys = [key_of(head.split(" ", 1)[0])]
    if (code := re.search(r"\[([0-9A-Z]{3,5})\]", head)) is not None:
        keys.append(key_of(code.group(1)))
    return keys


@functools.cache
def memory_for(store_url: str) -> Memory:
    """One Memory per store in a process, so its index is loaded once (the tools and the CLI)."""
    return Memory.of(RunStore(store_url), load_settings())


def run_memory(store: RunStore) -> RunMemory | None:
    """What remembers a run stored in ``store``; None when memory is off (AGENT_ETL_MEMORY_ENABLED=false)."""
    try:
        settings = load_settings()
        return RunMemory(Memory.of(store, settings)) if settings.memory_enabled else None
    except Exception as exc:  # noqa: BLE001 - memory must not fail a run
        log.warning("agent memory is off for this run: %s: %s", type(exc).__name__, exc)
        return None


# --- what a run leaves in memory -------------------------------------------------------------------------------------

_RECOVERIES = {str(a) for a in RecoveryAction}


class RunMemory:
    """Collects one run's events and, at its RunFinished, remembers its summary and its failures."""

    def __init__(self, memory: Memory) -> None:
        self.memory = memory
        self.pipeline: str | None = None
        self.started: datetime | None = None
        self.sources: dict[str, str | None] = {}
        self.finished: dict[str, TaskFinished] = {}
        self.failures: list[tuple[TaskFailed, Decision | None]] = []

    def observe(self, event: RunEvent) -> None:
        """Never raises: memory must not fail a run."""
        try:
            self._observe(event)
        except Exception as exc:  # noqa: BLE001 - any error of memory is logged, and the run goes on
            log.warning("agent memory skipped an event of run %s: %s: %s", event.run_id, type(exc).__name__, exc)

    def _observe(self, event: RunEvent) -> None:
        if isinstance(event, RunStarted):
            self.pipeline, self.started = event.pipeline, event.at
            self.sources.update({t["id"]: t.get("source") for t in event.tasks})
        elif isinstance(event, TaskFinished):
            self.finished[event.task_id] = event
        elif isinstance(event, TaskFailed):
            self.failures.append((event, None))
        elif isinstance(event, Decision) and event.choice in _RECOVERIES:
            subject = event.subject.removeprefix("task ")
            for i in range(len(self.failures) - 1, -1, -1):
                failed, decided = self.failures[i]
                if failed.task_id == subject and decided is None:
                    self.failures[i] = (failed, event)
                    break
        elif isinstance(event, RunFinished):
            self.memory.remember(self.episodes(event))

    def episodes(self, finished: RunFinished) -> list[Episode]:
        return [self._summary(finished), *self._failures(finished)]

    def _summary(self, finished: RunFinished) -> Episode:
        per_source: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for task_id, outcome in self.finished.items():
            figures = per_source[self._source_of(task_id) or "(transforms)"]
            figures["tasks"] += 1
            for name in ("rows_read", "rows_written", "rows_quarantined", "bytes", "seconds"):
                figures[name] += getattr(outcome, name)
        sources = {}
        for name, figures in per_source.items():
            busy = figures["seconds"]
            sources[name] = {
                **{k: int(v) if k != "seconds" else round(v, 3) for k, v in figures.items()},
                "rows_per_second": round(figures["rows_read"] / busy, 1) if busy > 0 else None,
            }
        seconds = (finished.at - self.started).total_seconds() if self.started else None
        status = str(finished.status)
        rows = sum(int(s["rows_written"] or 0) for s in sources.values())
        text = f"run of pipeline {self.pipeline} {status}: {rows} rows written from {', '.join(sources) or 'no source'}"
        if seconds is not None:
            text += f" in {seconds:.1f}s"
        if finished.failure is not None:
            text += f"; {finished.failure.error_type}: {mask_message(finished.failure.message)}"
        detail = {"status": status, "seconds": seconds, "sources": sources, "failures": len(self.failures)}
        return Episode("run", text, detail, run_id=finished.run_id, pipeline=self.pipeline, at=finished.at)

    def _failures(self, finished: RunFinished) -> list[Episode]:
        """One episode per signature and recovery: how often it was tried in the run, and how often it worked."""
        grouped: dict[tuple[str, str], list[tuple[TaskFailed, Decision | None]]] = defaultdict(list)
        signatures: dict[str, Signature] = {}
        for failed, decided in self.failures:
            signature = signature_of(failed.error_type, failed.message, self._source_of(failed.task_id))
            signatures[str(signature)] = signature
            grouped[(str(signature), decided.choice if decided else "none")].append((failed, decided))
        episodes = []
        for (text, action), cases in grouped.items():
            signature = signatures[text]
            worked = sum(self._recovered(f.task_id) for f, _ in cases) if action in _WORKS else 0
            reason = next((d.reason for _, d in cases if d is not None), None)
            detail = {
                "error_class": signature.error_class,
                "code": signature.code,
                "remedy": str(cases[0][0].remedy),
                "recovery": {"action": action, "reason": reason, "tried": len(cases), "worked": worked},
                "tasks": sorted({f.task_id for f, _ in cases})[:20],
            }
            said = f"{action} tried {len(cases)} times, worked {worked}" if action != "none" else "no recovery"
            episodes.append(
                Episode(
                    "failure",
                    f"{text}; {said}",
                    detail,
                    run_id=finished.run_id,
                    pipeline=self.pipeline,
                    system=signature.system,
                    signature=text,
                    at=finished.at,
                )
            )
        return episodes

    def _source_of(self, task_id: str) -> str | None:
        return self.sources.get(task_id) or self.sources.get(_split_origin(task_id, self.sources))

    def _recovered(self, task_id: str) -> bool:
        """Whether the task, or a part a split made of it, finished in the end."""
        prefix, marker, suffix = task_id.partition("]>")
        parts = re.compile(re.escape(prefix) + r"(?:\.\d+)+" + re.escape(marker + suffix)) if marker else None
        return task_id in self.finished or (parts is not None and any(parts.fullmatch(t) for t in self.finished))


#: Recoveries after which the task can still finish; a skip or a failure never recovers it.
_WORKS = {str(RecoveryAction.RETRY), str(RecoveryAction.SPLIT), str(RecoveryAction.QUARANTINE)}


def _split_origin(task_id: str, known: dict[str, Any]) -> str:
    """The planned task a split part (``...[x.1.2]>...``) came from."""
    while task_id not in known and (shorter := re.sub(r"\.\d+(\]>)", r"\1", task_id, count=1)) != task_id:
        task_id = shorter
    return task_id


def profile_episode(profile: dict[str, Any], run_id: str | None = None) -> Episode:
    """A source's profile, without its values: per column the type, null share, distinct count and semantic type."""
    columns = [
        {
            "name": c["name"],
            "type": c["arrow_type"],
            "null_percent": c["null_percent"],
            "distinct": c["distinct"],
            "semantic": c.get("semantic"),
            "pii": c.get("pii", False),
        }
        for c in profile["columns"]
    ]
    source = str(profile["source"])
    described = ", ".join(
        f"{c['name']} {c['type']}" + (f" ({c['semantic']})" if c["semantic"] else "") for c in columns
    )
    text = f"profile of {source}: {profile['rows']} rows; columns {described}"
    detail = {"rows": profile["rows"], "sampling": profile["sampling"], "columns": columns}
    return Episode("profile", text[:4000], detail, run_id=run_id, system=source)


# --- the tools -------------------------------------------------------------------------------------------------------


class RememberInput(BaseModel):
    text: str = Field(description="What to remember, in words; masked with the run's secrets.")
    kind: str = Field("note", max_length=20)
    system: str | None = Field(None, description="The source or destination it is about.")
    detail: dict[str, Any] = Field(default_factory=dict)


class RememberOutput(BaseModel):
    id: int


class RecallInput(BaseModel):
    query: str = Field(description="What to look for: an error, a system, a symptom, in words.")
    k: int = Field(5, ge=1, le=100)
    kind: str | None = Field(None, description="Only episodes of this kind: run, failure, profile, note.")


class RecallOutput(BaseModel):
    episodes: list[dict[str, Any]]


def remember_profile(run: Any, profile: dict[str, Any]) -> None:
    """Keep a profile an agent made during a run (the ``profile`` tool); never raises."""
    try:
        if run.settings.memory_enabled:
            memory_for(run.settings.store_url).remember([profile_episode(profile, run.run_id)])
    except Exception as exc:  # noqa: BLE001 - memory must not fail a run
        log.warning(
            "agent memory did not keep the profile of %s: %s: %s", profile.get("source"), type(exc).__name__, exc
        )


def remember_tool(arguments: RememberInput, run: Any) -> dict[str, Any]:
    """``run``: the RunContext of the run the agent works for, or None outside a run."""
    memory = memory_for((run.settings if run is not None else load_settings()).store_url)
    episode = Episode(
        arguments.kind,
        arguments.text,
        arguments.detail,
        run_id=run.run_id if run is not None else None,
        pipeline=run.spec.name if run is not None else None,
        system=arguments.system,
    )
    return {"id": memory.remember([episode])[0]}


def recall_tool(arguments: RecallInput, run: Any) -> dict[str, Any]:
    memory = memory_for((run.settings if run is not None else load_settings()).store_url)
    found = memory.recall(arguments.query, arguments.k, kind=arguments.kind)
    return {"episodes": [{**r.episode.as_dict(), "score": round(r.score, 4)} for r in found]}
