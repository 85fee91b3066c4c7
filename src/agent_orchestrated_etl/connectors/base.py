"""The two plugin interfaces: a Source yields Arrow batches; a Destination stages, then commits.

Capabilities are plain data the orchestrator reads when it plans, so no
planner code asks ``isinstance``.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, Self

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import TypeVar  # default= (PEP 696) before Python 3.13

from agent_orchestrated_etl.verify.options import VerifySpec


class ConnectorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def rebased(self, base: Path) -> Self:
        """Relative paths in a spec are relative to the spec file, wherever the CLI runs."""
        path = getattr(self, "path", None)
        if isinstance(path, str) and "://" not in path and not os.path.isabs(os.path.expanduser(path)):
            return self.model_copy(update={"path": str(base / path)})
        return self


class DestinationSpecBase(ConnectorSpec):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    input: str | None = Field(
        None, description="Source or transform whose rows this destination receives (default: the last one)."
    )
    write: Literal["append", "replace", "merge"] = "append"
    primary_key: list[str] = Field(
        default_factory=list,
        description=(
            "Key columns for write: merge (from an input with tables: or schema:, each table's own primary key by"
            " default)."
        ),
    )
    critical: bool = Field(
        True, description="When false, a failure loading this destination leaves it as it was and the run ends partial."
    )
    allow_empty: bool = Field(
        False,
        description=(
            "write: replace only: publish a load whose every row was quarantined (it empties the target); without it"
            " such a load fails the commit."
        ),
    )
    hard_delete: str | None = Field(
        None, description="write: merge only: a boolean column; a row where it is true deletes its key from the target."
    )
    schema_: Literal["evolve", "freeze", "discard"] = Field(
        "evolve",
        alias="schema",
        description=(
            "When the data differs from an existing target table. evolve: add new columns and widen types safely;"
            " freeze: fail with a diff on any change; discard: drop the columns the target lacks, widen types safely."
        ),
    )

    verify: bool | VerifySpec = Field(
        False,
        description=(
            "After the commit, reconcile the target with the source (count, key set, hash; or counts where rows do not"
            " map one to one); costs a scan of both. true, or {severity, columns}."
        ),
    )

    @model_validator(mode="after")
    def _hard_delete_needs_merge(self) -> DestinationSpecBase:
        # write: merge without primary_key is checked with the pipeline: a multi-table input brings each table's own key.
        if self.hard_delete is not None and self.write != "merge":
            raise ValueError("hard_delete only applies to write: merge")
        return self


@dataclass(frozen=True)
class Partition:
    """A slice of a source that one task reads; the unit of checkpoint and retry."""

    key: str
    description: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Position:
    """Where a batch or row came from, so quarantined rows can name their origin.

    ``row`` is the 1-based number of the first record among the data records;
    ``line`` is a physical line in a text file, where the reader knows it.
    """

    origin: str
    row: int | None = None
    line: int | None = None

    def __str__(self) -> str:
        if self.line is not None:
            return f"{self.origin}:{self.line}"
        return f"{self.origin} record {self.row}" if self.row is not None else self.origin


@dataclass(frozen=True)
class Attachment:
    """A database an engine attaches to read a source by itself; ``dsn`` holds its secret and is never shown."""

    kind: str  #: the engine's name for the database's type (DuckDB: ``postgres``)
    dsn: str
    alias: str  #: the name the engine attaches it under, stable for one database


@dataclass(frozen=True)
class EngineScan:
    """How an engine reads one partition of a source by itself (pushdown), as the source offers it.

    ``select`` is a query in the engine's SQL whose rows and columns are those
    the Arrow path reads; ``rows_sql`` (same parameters) counts them up front
    where that is cheap, for progress. Errors of the scan are classified by
    the family of ``errors_url`` (the source's database), else as the engine's own.
    """

    select: str
    origin: str  #: where the rows come from, for messages
    params: tuple[Any, ...] = ()
    attach: Attachment | None = None
    rows_sql: str | None = None
    errors_url: str | None = None
    empty: bool = False  #: the partition reads nothing


@dataclass(frozen=True)
class SourceCapabilities:
    partitioned_reads: bool = False
    incremental: bool = False


@dataclass(frozen=True)
class DestinationCapabilities:
    transactional: bool
    write_modes: frozenset[str]
    #: Parallel tasks may stage into it at once (a DuckDB file allows one writer process).
    parallel_staging: bool = True
    #: Source types it can copy from by itself (``pull``), with no batch passing through Python.
    pulls_from: frozenset[str] = frozenset()


# Defaults (PEP 696) keep a bare ``Source``/``Destination`` (the registry's, the planner's) as today: any spec.
S = TypeVar("S", bound=ConnectorSpec, default=Any)
D = TypeVar("D", bound=DestinationSpecBase, default=Any)


class Source(ABC, Generic[S]):
    """Reads one configured source. ``read`` is the one essential method."""

    spec_model: ClassVar[type[ConnectorSpec]]
    capabilities: ClassVar[SourceCapabilities] = SourceCapabilities()

    def __init__(self, name: str, spec: S, *, batch_rows: int) -> None:
        self.name = name
        self.spec = spec
        self.batch_rows = batch_rows
        #: Set by the task: tells the live view what the read waits for (an HTTP retry), in a few words.
        self.notice: Callable[[str], None] | None = None

    def partitions(self) -> list[Partition]:
        """Independent slices to read in parallel; one by default.

        A source whose spec has ``incremental:`` is called as ``partitions(window)``
        with the run's ``incremental.Window``; it must put ``window.as_dict()`` in
        every partition's ``options["window"]`` (the task filters the batches
        through it) and may push the window down into its query.
        """
        return [Partition(key="all", description=self.describe())]

    @abstractmethod
    def read(self, partition: Partition) -> Iterator[tuple[pa.RecordBatch, Position]]:
        """Yield record batches of one partition, each with where it came from.

        Raises SourceNotFoundError when the source does not exist, DataError for
        unreadable content that cannot be quarantined row by row.
        """

    def subdivide(self, partition: Partition) -> list[Partition] | None:
        """Smaller partitions that together read exactly what ``partition`` reads; None if it cannot be split.

        The orchestrator splits a partition that timed out, or one that holds a
        value it cannot read (to narrow it down before quarantining it).
        """
        return None

    def pushdown_blocker(self) -> str | None:
        """Why a destination's engine may not read this source by itself (None: it may).

        Asked only when the destination declares the source's type in ``pulls_from``.
        """
        return None

    def engine_scan(self, engine: str, partition: Partition) -> EngineScan | None:
        """How a destination's engine of kind ``engine`` (``duckdb``) reads ``partition`` by itself; None: it cannot.

        Asked only when ``pushdown_blocker`` let the planner push the step down.
        """
        return None

    def reread_cost(self) -> str | None:
        """Why a second read of this source in one run costs more than staging it once (None: it is cheap and repeatable).

        When several destinations need the source (a parent table and its child
        tables), the planner then reads it once into the run workspace.
        """
        return None

    def quarantined(self) -> Iterator[tuple[dict[str, Any], str, Position]]:
        """Rows the reader itself had to reject (a malformed CSV line), as (row, reason, position)."""
        return iter(())

    def describe(self) -> str:
        return self.name


@dataclass
class CommitResult:
    rows: int
    quarantined_rows: int = 0
    already_committed: bool = False
    #: What the schema policy did to the target, one line a column ("added column note VARCHAR").
    schema_changes: list[str] = field(default_factory=list)
    #: The DDL that gave an existing merge target its key (a target agent-etl loaded before), if it lacked one.
    key_added: str | None = None


class Destination(ABC, Generic[D]):
    """Receives batches of one run into a staging area no reader sees, then publishes them at once.

    ``begin``/``write_batch`` may run in several tasks in parallel (if
    ``capabilities.parallel_staging``); ``commit`` runs once, after every task
    that feeds the destination has finished; ``abort`` drops the staging area.
    Committing a run that was already committed is a no-op.
    """

    spec_model: ClassVar[type[DestinationSpecBase]]
    capabilities: ClassVar[DestinationCapabilities]

    def __init__(self, spec: D, *, memory_limit_bytes: int) -> None:
        self.spec = spec
        self.memory_limit_bytes = memory_limit_bytes

    def value_limit(self) -> tuple[int, str]:
        """The largest text or binary value a row may bring, in bytes, and what sets it; a row over it is quarantined.

        A value is held whole a few times on its way (the batch, the driver's or the
        engine's copy), so a quarter of the memory budget is what fits in it.
        """
        return self.memory_limit_bytes // 4, "a quarter of AGENT_ETL_MEMORY_LIMIT"

    @abstractmethod
    def begin(self, run_id: str, task_id: str) -> None:
        """Drop the task's staging area left by an earlier attempt (or by a task that was split); writes create it anew."""

    @abstractmethod
    def write_batch(self, run_id: str, task_id: str, batch: pa.RecordBatch) -> None:
        """Append a batch to the task's staging area."""

    @abstractmethod
    def write_quarantine(self, run_id: str, task_id: str, rows: pa.RecordBatch) -> None:
        """Stage rejected rows (QUARANTINE_SCHEMA) next to the data, published by the same commit."""

    def unstorable(self, batch: pa.RecordBatch) -> list[str | None] | None:
        """Per row, why this destination cannot store it (None: it can); None when it can store every row.

        The task quarantines those rows with their source position instead of failing the batch.
        """
        return None

    def finish(self, run_id: str, task_id: str) -> None:  # noqa: B027 - only buffering destinations flush
        """The task wrote its last batch: flush buffers so its staging is complete and durable."""

    @abstractmethod
    def commit(self, run_id: str, task_ids: list[str], state: dict[str, Any] | None = None) -> CommitResult:
        """Publish the staged data of these tasks in one atomic step, recording ``run_id`` as loaded.

        ``state`` maps state keys (``pipeline/source``) to JSON values (the new
        incremental high-water marks). A transactional destination stores them
        in the same transaction as the data; a non-transactional one in the
        same atomic step that publishes (the files' manifest). ``read_state``
        returns them.
        """

    def pull(
        self, run_id: str, task_id: str, source: Source, partition: Partition, progress: Callable[[int, int], None]
    ) -> int:
        """Copy one partition of ``source`` into the task's staging area inside the database engine.

        Only called when ``source``'s type is in ``capabilities.pulls_from`` and
        the planner chose pushdown. Reports rows staged through ``progress``
        (increments, as the batch path does) and returns their total.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot pull from a source")

    def read_state(self, key: str) -> Any | None:
        """The state last committed under ``key``, or None (never committed, or no state kept)."""
        return None

    def committed(self, run_id: str) -> bool:
        """Whether the destination's loads ledger records ``run_id`` as committed (what a crashed run did)."""
        return False

    def staged_rows(self, run_id: str, task_id: str) -> int | None:
        """Data rows in the task's staging area, to check a checkpoint by before trusting it; None when it cannot tell."""
        return None

    @abstractmethod
    def abort(self, run_id: str) -> None:
        """Drop every staging area of the run; the target stays as it was."""

    def close(self) -> None:  # noqa: B027 - most destinations hold nothing open
        """Release connections."""

    def describe(self) -> str:
        return type(self).__name__


QUARANTINE_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("task_id", pa.string()),
        ("check_name", pa.string()),
        ("reason", pa.string()),
        ("origin", pa.string()),
        ("row_json", pa.string()),
    ]
)
