"""Why a run did not succeed and what to do next, as a typed part of its result and record.

The remedy comes from the error's branch (``next_remedy`` in exceptions.py), never
from its text, so the CLI, the API and `agent-etl runs show` give the same next
step, and say `agent-etl resume` only where resuming can succeed.
"""

from __future__ import annotations

from pydantic import BaseModel

from agent_orchestrated_etl.exceptions import AgentETLError
from agent_orchestrated_etl.model.vocabulary import Remedy


class RunFailure(BaseModel):
    """Why a run did not succeed and the next step; its JSON is what `--json`, the API and the store show."""

    remedy: Remedy
    #: The error's class (SourceNotFoundError, Cancelled, ...).
    error_type: str
    #: What failed, as the user sees it.
    message: str
    #: Where: a task, a source, a destination, file:line; None for the run as a whole.
    where: str | None = None
    #: For WAIT: the run holding the pipeline.
    holder_run_id: str | None = None
    next_step: str


def failure_of(
    error: BaseException, *, run_id: str, spec_file: str | None, resumed: bool = False, where: str | None = None
) -> RunFailure:
    """The failure of a run that stopped on ``error`` (raised, or a task's failure re-raised here)."""
    if isinstance(error, AgentETLError):
        remedy = error.next_remedy
        holder = getattr(error, "holder_run_id", None)
        return make_failure(
            remedy,
            type(error).__name__,
            str(error),
            run_id=run_id,
            spec_file=spec_file,
            where=where or error.where,
            holder_run_id=holder,
            resumed=resumed,
        )
    return make_failure(
        Remedy.BUG,
        type(error).__name__,
        f"{type(error).__name__}: {error}",
        run_id=run_id,
        spec_file=spec_file,
        where=where,
    )


def make_failure(
    remedy: Remedy,
    error_type: str,
    message: str,
    *,
    run_id: str,
    spec_file: str | None,
    where: str | None = None,
    holder_run_id: str | None = None,
    resumed: bool = False,
) -> RunFailure:
    again = f"agent-etl run {spec_file}" if spec_file else "agent-etl run SPEC"
    discard = f"agent-etl runs discard {run_id} drops its staged output"
    steps = {
        Remedy.RESUME: f"go on from the checkpoints: agent-etl resume {run_id}",
        Remedy.FIX_DATA: f"fix the data, the check or the target and run again; {discard}; then: {again}",
        Remedy.FIX_CONFIG: f"fix what the error names (the spec, a path, a table, the environment) and run again; {discard}; then: {again}",
        Remedy.FIX_AUTH: f"fix the credentials (the variables or secret the spec names) and run again; {discard}; then: {again}",
        Remedy.BUG: f"this is a bug in agent-etl; please report it with run {run_id}",
    }
    if remedy is Remedy.WAIT:
        holder = f"run {holder_run_id}" if holder_run_id else "another run"
        see = f"agent-etl runs show {holder_run_id}" if holder_run_id else "agent-etl runs"
        then = (
            f"agent-etl resume {run_id}"
            if resumed
            else f"run again ({again}); run {run_id} never started, so there is nothing to resume"
        )
        next_step = f"wait for {holder} to finish ({see}), then {then}"
    else:
        next_step = steps[remedy]
    return RunFailure(
        remedy=remedy,
        error_type=error_type,
        message=message,
        where=where,
        holder_run_id=holder_run_id,
        next_step=next_step,
    )
