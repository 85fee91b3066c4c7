"""The typed result of a run (a pipeline's or a workflow's), which interfaces render."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from agent_orchestrated_etl.model.failure import RunFailure
from agent_orchestrated_etl.model.vocabulary import RunStatus
from agent_orchestrated_etl.monitoring.live import TaskState
from agent_orchestrated_etl.quality.verdicts import report


@dataclass
class RunResult:
    run_id: str
    pipeline: str
    status: RunStatus
    error: str | None
    seconds: float
    tasks: list[TaskState]
    decisions: list[dict[str, str]]
    commits: list[dict[str, Any]]
    #: Why it did not succeed and the next step; None when it succeeded.
    failure: RunFailure | None = None

    @property
    def ok(self) -> bool:
        return self.status is RunStatus.SUCCEEDED

    @property
    def quality(self) -> list[dict[str, Any]]:
        """Every check with its counts, pass or fail, and why (see quality/verdicts.py)."""
        verified = (c["verify"] for c in self.commits if "verify" in c)
        return report([*(c for t in self.tasks for c in t.checks), *verified])

    @property
    def rows_read(self) -> int:
        """Rows read from sources (as RunState.source_rows); a transform reads the workspace."""
        return sum(t.rows for t in self.tasks if t.reads_source)

    @property
    def rows_written(self) -> int:
        return sum(c["rows"] for c in self.commits)

    @property
    def rows_quarantined(self) -> int:
        return sum(c["quarantined_rows"] for c in self.commits)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "status": self.status,
            "ok": self.ok,
            "error": self.error,
            "failure": self.failure.model_dump(mode="json") if self.failure else None,
            "seconds": round(self.seconds, 3),
            "rows_read": self.rows_read,
            "rows_written": self.rows_written,
            "rows_quarantined": self.rows_quarantined,
            "tasks": [{k: v for k, v in asdict(t).items() if k not in ("started", "samples")} for t in self.tasks],
            "decisions": self.decisions,
            "commits": self.commits,
            "quality": self.quality,
        }
