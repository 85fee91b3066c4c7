"""The plan's values: tasks, the decisions that shaped them, and the plan that orders them.

They travel by value (a task definition is stored with the run and sent to the agent that runs it),
so they hold data only; plan.py makes them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from graphlib import CycleError, TopologicalSorter
from typing import Any, Literal

from agent_orchestrated_etl.connectors.base import Partition
from agent_orchestrated_etl.exceptions import ConfigurationError

TaskKind = Literal["extract_load", "stage", "transform_load", "pushdown"]


@dataclass(frozen=True)
class Task:
    id: str
    kind: TaskKind
    source: str | None = None
    partition: Partition | None = None
    transform: str | None = None
    destination: int | None = None
    depends_on: tuple[str, ...] = ()
    #: Every partition of ``source`` that a transform_load task reads itself (a blocking chain over one source).
    partitions: tuple[Partition, ...] = ()
    #: Set by a recovery that retries the task with smaller batches.
    batch_rows: int | None = None
    #: Set by a recovery that quarantines the partition instead of reading it: the reason.
    set_aside: str | None = None
    #: The planner chose to stage the raw rows in the DuckDB destination and evaluate the checks there as SQL.
    engine_checks: bool = False

    @property
    def capability(self) -> str:
        """The tool an agent needs to run this task."""
        return self.kind

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["depends_on"] = list(self.depends_on)
        data["partitions"] = list(data["partitions"])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        partition = Partition(**data["partition"]) if data.get("partition") else None
        partitions = tuple(Partition(**p) for p in data.get("partitions", ()))
        depends_on = tuple(data.get("depends_on", ()))
        return cls(**{**data, "partition": partition, "partitions": partitions, "depends_on": depends_on})


@dataclass(frozen=True)
class PlannedDecision:
    subject: str
    choice: str
    reason: str


@dataclass
class Plan:
    tasks: list[Task]
    decisions: list[PlannedDecision] = field(default_factory=list)

    def feeding(self, destination: int) -> list[str]:
        return [t.id for t in self.tasks if t.destination == destination]

    def order(self) -> list[str]:
        """Task ids in an order that respects dependencies; raises on a cycle."""
        graph = {t.id: set(t.depends_on) for t in self.tasks}
        try:
            return list(TopologicalSorter(graph).static_order())
        except CycleError as exc:
            raise ConfigurationError(f"the plan has a dependency cycle: {' -> '.join(exc.args[1])}") from exc
