"""The closed sets of words the layers exchange, as enums: a typo is a type error, not a wrong branch.

They are StrEnums, so they compare equal to, and serialise as, the strings the store, the CLI and the API
have always printed.
"""

from __future__ import annotations

from enum import StrEnum


class Remedy(StrEnum):
    """What a user does about a run that did not succeed; only RESUME is helped by `agent-etl resume`."""

    RESUME = "resume"  # transient, cancelled or killed: go on from the checkpoints
    FIX_DATA = "fix_data"  # bad rows or a failed quality gate: fix the data or the check, run again
    FIX_CONFIG = "fix_config"  # the spec, a path, a table or the environment must change, run again
    FIX_AUTH = "fix_auth"  # credentials were refused
    WAIT = "wait"  # another run holds the pipeline; this one never started
    BUG = "bug"  # a bug in agent-etl: report it


class FailureKind(StrEnum):
    """The remedy branch of a failed task's error: what the orchestrator may do about it (exceptions.py)."""

    RETRY = "retry"  # transient: try again
    QUARANTINE = "quarantine"  # bad data: set it aside where the spec allows
    FIX_CONFIG = "fix_config"  # the spec or the environment must change
    FAIL = "fail"  # retrying cannot help
    CANCELLED = "cancelled"  # the run was cancelled while the task ran


class RecoveryAction(StrEnum):
    """What the orchestrator's recovery policy does with a failed task (agents/recovery.py)."""

    RETRY = "retry"
    SPLIT = "split"  # read the partition as two halves
    QUARANTINE = "quarantine"  # set the partition aside, with the error as its reason
    SKIP = "skip"  # the task is not critical: the run goes on and ends partial
    FAIL = "fail"


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"  # non-critical tasks were skipped
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"  # a resume took the run over under a new id
    SKIPPED = "skipped"  # a workflow's pipeline whose upstream did not succeed
    DISCARDED = "discarded"  # its staged output was dropped (`agent-etl runs discard`)


class TaskStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SPLIT = "split"  # replaced by its two halves


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"
