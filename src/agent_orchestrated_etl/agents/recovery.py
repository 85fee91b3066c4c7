"""How the orchestrator recovers from a failed task: a small policy interface and its default.

The policy maps a failure (its remedy branch and attempt) to an action; the
orchestrator publishes the choice and its reason as a Decision. A later policy
can consult the agents' memory of past runs through the same interface.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

from agent_orchestrated_etl.model.messages import TaskFailed
from agent_orchestrated_etl.model.vocabulary import FailureKind, RecoveryAction
from agent_orchestrated_etl.spec import RetryPolicy

#: How many times a partition may be halved while narrowing a failure down (1/256 of it).
MAX_SPLIT_DEPTH = 8


@dataclass(frozen=True)
class Recovery:
    """``split``: read the partition as two halves; ``quarantine``: set the partition aside, with the error as its reason."""

    action: RecoveryAction
    reason: str
    delay: float = 0.0
    #: Retry reading this fraction of the batch size (out of memory).
    batch_factor: float | None = None


class RecoveryPolicy(Protocol):
    def decide(
        self, failure: TaskFailed, retry: RetryPolicy, *, critical: bool, split_depth: int | None = None
    ) -> Recovery:
        """``split_depth``: how often the task's partition was split already; None if it cannot be split."""
        ...


_WHY_NOT_RETRY = {
    FailureKind.FIX_CONFIG: "the spec or the environment must change; retrying cannot help",
    FailureKind.QUARANTINE: "the data cannot be read row by row, so it cannot be quarantined",
    FailureKind.CANCELLED: "the run was cancelled",
}


class BackoffRecoveryPolicy:
    """Retry transient errors with exponential backoff and full jitter; fail fast on the rest.

    A partition that timed out is split in two (where its source can split it)
    rather than read whole again. Where the spec allows quarantine, a
    partition holding unreadable data is halved until the failure is narrowed
    down to a small range, which is then set aside. A task that is not
    critical is skipped instead of failing the run, which then ends partial.
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()

    def decide(
        self, failure: TaskFailed, retry: RetryPolicy, *, critical: bool = True, split_depth: int | None = None
    ) -> Recovery:
        splittable = split_depth is not None and split_depth < MAX_SPLIT_DEPTH
        if failure.error_type == "TaskTimeout" and splittable:
            return Recovery(
                RecoveryAction.SPLIT,
                "it ran past its timeout; its two halves are read as separate tasks, in parallel where agents are free",
            )
        if failure.remedy is FailureKind.QUARANTINE and retry.on_bad_data == "quarantine":
            if splittable:
                return Recovery(
                    RecoveryAction.SPLIT,
                    f"{failure.error_type} in this partition; halving it to narrow the bad rows down (retry.on_bad_data: quarantine)",
                )
            return Recovery(
                RecoveryAction.QUARANTINE,
                f"{failure.error_type} persists in the smallest range it could be narrowed to; set aside with its reason (retry.on_bad_data: quarantine)",
            )
        if failure.error_type == "ResourceExhaustedError" and failure.attempt < retry.attempts:
            return Recovery(
                RecoveryAction.RETRY,
                f"out of memory; attempt {failure.attempt + 1} of {retry.attempts} with batches half the size",
                batch_factor=0.5,
            )
        if failure.remedy is FailureKind.RETRY and failure.attempt < retry.attempts:
            delay = self._backoff(failure.attempt, retry)
            return Recovery(
                RecoveryAction.RETRY,
                f"{failure.error_type} is transient; attempt {failure.attempt + 1} of {retry.attempts} in {delay:.1f}s",
                delay,
            )
        if failure.remedy is FailureKind.RETRY:
            why = f"{failure.error_type} persisted through {retry.attempts} attempts"
        else:
            why = f"{failure.error_type}: {_WHY_NOT_RETRY.get(failure.remedy, 'retrying cannot help')}"
        if not critical and failure.remedy is not FailureKind.CANCELLED:
            return Recovery(RecoveryAction.SKIP, f"{why}; the task is not critical, so the rest of the run goes on")
        return Recovery(RecoveryAction.FAIL, why)

    def _backoff(self, attempt: int, retry: RetryPolicy) -> float:
        # The same full-jitter formula as tenacity's wait_random_exponential. A task retry
        # is a placement decision across agents, not a wrapped call, so tenacity's loop
        # does not fit here; our own RNG lets tests fix the jitter.
        ceiling = min(retry.max_backoff_seconds, retry.backoff_seconds * 2 ** (attempt - 1))
        return self.rng.uniform(0, ceiling)
