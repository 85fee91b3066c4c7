"""What a finished task reports: the one definition the agent, the hub, the checkpoint and the store share.

By value and JSON-serialisable, so it can cross a process boundary with the TaskFinished that carries it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class TaskOutcome(BaseModel):
    rows_read: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    bytes: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    #: Quality results of the checks that ran in the task (quality/verdicts.py).
    checks: list[dict[str, Any]] = Field(default_factory=list)
    #: What the incremental tracker saw (connectors/incremental.py), for the commit's new state.
    state: dict[str, Any] | None = None
