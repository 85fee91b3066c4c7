"""What a streaming chain or a workspace graph needs of the task it runs in."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from agent_orchestrated_etl.connectors.base import Position
from agent_orchestrated_etl.quality.checks import Check
from agent_orchestrated_etl.quality.evaluate import CheckRun
from agent_orchestrated_etl.transform.query import run_query
from agent_orchestrated_etl.transform.workspace import Workspace


@dataclass(frozen=True)
class TaskContext:
    workspace: Workspace
    run_id: str
    task_id: str
    #: Where the task's check results belong: its destination, or the workspace.
    scope: str
    batch_rows: int
    #: The source position of a row ordinal, for quarantined rows.
    locate: Callable[[int | None], Position | None]
    quarantine: Callable[[pa.RecordBatch], None]

    def check_run(self, checks: list[tuple[int, Check]], *, input_name: str, origin: str) -> CheckRun:
        return CheckRun(
            checks,
            run_id=self.run_id,
            task_id=self.task_id,
            scope=self.scope,
            input_name=input_name,
            locate=self.locate,
            origin=origin,
            cursor=self.workspace.cursor,
        )

    def query(
        self, sql: str, *, variables: dict[str, Any], where: str, inputs: dict[str, Any] | None = None
    ) -> Iterator[pa.RecordBatch]:
        return run_query(
            self.workspace, sql, inputs=inputs or {}, variables=variables, batch_rows=self.batch_rows, where=where
        )
