"""Quality checks from the spec, applied batch by batch on the way to a destination.

Rows that fail a row-level check are split off the batch and quarantined with
the check's name, the reason and where they came from; they never reach the
target. A check *fails* when its failed rows exceed its threshold, and a
failing check with severity ``error`` fails the run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent_orchestrated_etl.connectors.base import QUARANTINE_SCHEMA, Position
from agent_orchestrated_etl.exceptions import ConfigurationError


class QualityCheck(BaseModel):
    """One expectation, written as ``- not_null: [order_id]`` or ``- unique: [order_id]``."""

    model_config = ConfigDict(extra="forbid")

    not_null: list[str] | None = Field(None, min_length=1, description="These columns are never null.")
    unique: list[str] | None = Field(None, min_length=1, description="These columns together identify a row.")
    input: str | None = Field(None, description="Apply to the rows of this source or transform only.")
    severity: Literal["error", "warn"] = "error"
    threshold: float = Field(0.0, ge=0, le=1, description="Fraction of rows allowed to fail, e.g. 0.01.")

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> QualityCheck:
        kinds = [k for k in ("not_null", "unique") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a check has exactly one kind: not_null or unique")
        return self

    @property
    def kind(self) -> str:
        return "not_null" if self.not_null is not None else "unique"

    @property
    def columns(self) -> list[str]:
        return self.not_null or self.unique or []

    @property
    def label(self) -> str:
        return f"{self.kind}({', '.join(self.columns)})"


@dataclass
class CheckResult:
    check: str
    severity: str
    threshold: float
    rows_checked: int = 0
    rows_failed: int = 0

    @property
    def passed(self) -> bool:
        return self.rows_failed <= self.threshold * self.rows_checked

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity,
            "threshold": self.threshold,
            "rows_checked": self.rows_checked,
            "rows_failed": self.rows_failed,
            "passed": self.passed,
        }


@dataclass
class BatchChecker:
    """Runs a destination's row-level checks over a stream of batches of one task."""

    checks: list[QualityCheck]
    run_id: str
    task_id: str
    results: list[CheckResult] = field(default_factory=list)
    # unique() remembers the keys it has seen in this task; memory grows with distinct keys.
    _seen: list[set[Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.results = [CheckResult(c.label, c.severity, c.threshold) for c in self.checks]
        self._seen = [set() for _ in self.checks]

    def apply(self, batch: pa.RecordBatch, position: Position) -> tuple[pa.RecordBatch, pa.RecordBatch | None]:
        """Split a batch into the rows that pass every check and the quarantined rest."""
        if not self.checks or batch.num_rows == 0:
            return batch, None
        keep = pa.array([True] * batch.num_rows)
        reasons: list[str | None] = [None] * batch.num_rows
        for index, check in enumerate(self.checks):
            missing = [c for c in check.columns if c not in batch.schema.names]
            if missing:
                raise ConfigurationError(
                    f"check {check.label} names columns the data lacks: {missing}",
                    where=f"task {self.task_id}",
                    hint=f"the columns are {batch.schema.names}",
                )
            failed = self._failed(index, check, batch)
            result = self.results[index]
            result.rows_checked += batch.num_rows
            result.rows_failed += int(pc.sum(failed).as_py() or 0)
            for row in pc.indices_nonzero(failed).to_pylist():
                reasons[row] = reasons[row] or check.label
            keep = pc.and_(keep, pc.invert(failed))
        bad = pc.invert(keep)
        if not pc.any(bad).as_py():
            return batch, None
        rejected = batch.filter(bad)
        bad_rows = pc.indices_nonzero(bad).to_pylist()
        quarantine = self.quarantine_rows(
            [(row, reasons[i] or "", Position(position.origin, row=(position.row or 1) + i)) for row, i in zip(rejected.to_pylist(), bad_rows, strict=True)],
            check_name=None,
        )
        return batch.filter(keep), quarantine

    def _failed(self, index: int, check: QualityCheck, batch: pa.RecordBatch) -> pa.Array:
        if check.kind == "not_null":
            failed = pa.array([False] * batch.num_rows)
            for column in check.columns:
                failed = pc.or_(failed, pc.is_null(batch.column(column)))
            return failed
        seen = self._seen[index]
        keys = zip(*(batch.column(c).to_pylist() for c in check.columns), strict=True)
        flags = []
        for key in keys:
            flags.append(key in seen)
            seen.add(key)
        return pa.array(flags, type=pa.bool_())

    def quarantine_rows(self, rows: list[tuple[dict[str, Any], str, Position]], *, check_name: str | None) -> pa.RecordBatch:
        """Rows in the fixed quarantine schema; ``check_name`` None takes the reason as the check."""
        return pa.RecordBatch.from_pylist(
            [
                {
                    "run_id": self.run_id,
                    "task_id": self.task_id,
                    "check_name": check_name or reason,
                    "reason": reason if check_name else f"failed {reason}",
                    "origin": str(position),
                    "row_json": json.dumps(row, default=str, ensure_ascii=False),
                }
                for row, reason, position in rows
            ],
            schema=QUARANTINE_SCHEMA,
        )
