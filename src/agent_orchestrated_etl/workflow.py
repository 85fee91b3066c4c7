"""Workflows: several pipelines, each started once the pipelines it depends on have succeeded.

Each pipeline runs as a run of its own, with the id ``<workflow run>.<pipeline>``,
its own lock, checkpoints and commit, so resuming the workflow resumes exactly
the pipelines that did not succeed. Independent pipelines run at the same time.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Protocol

from agent_orchestrated_etl.model.failure import RunFailure, make_failure
from agent_orchestrated_etl.model.messages import RunFinished
from agent_orchestrated_etl.model.vocabulary import Remedy, RunStatus
from agent_orchestrated_etl.monitoring.live import TaskState
from agent_orchestrated_etl.run_result import RunResult

if TYPE_CHECKING:
    from agent_orchestrated_etl.agents.monitor_agent import Listener
    from agent_orchestrated_etl.agents.orchestrator_agent import OrchestratorAgent
    from agent_orchestrated_etl.spec import LoadedSpec
    from agent_orchestrated_etl.store.records import RunStore


class Runtime(Protocol):
    """What a workflow needs of the runtime that runs its pipelines (orchestrator.Runtime)."""

    orchestrator: OrchestratorAgent
    store: RunStore

    async def run(
        self,
        loaded: LoadedSpec,
        *,
        listener: Listener | None = None,
        run_id: str | None = None,
        resume: bool = False,
        parent_run_id: str | None = None,
    ) -> RunResult: ...


def child_run_id(run_id: str, pipeline: str) -> str:
    """The run id of one pipeline of a workflow run."""
    return f"{run_id}.{pipeline}"


async def run_workflow(
    runtime: Runtime, loaded: LoadedSpec, *, run_id: str, resume: bool, listener: Listener | None
) -> RunResult:
    assert loaded.workflow is not None
    started = time.perf_counter()
    workflow = loaded.workflow
    orchestrator, store = runtime.orchestrator, runtime.store
    recording = orchestrator.recording(run_id)
    if resume:
        store.reopen_run(run_id)
    else:
        store.start_run(run_id, workflow.workflow, str(loaded.file), loaded.sha256, loaded.text)
    store.durability.audit(
        "resume" if resume else "run",
        run_id=run_id,
        pipeline=workflow.workflow,
        spec_sha256=loaded.sha256,
        detail=loaded.file,
    )
    specs = {p.name: p for p in workflow.pipelines}
    orchestrator.decide(run_id, "workflow", f"{len(specs)} pipelines", f"order: {', '.join(workflow.order())}")
    status: dict[str, RunStatus] = {}
    results: dict[str, RunResult] = {}
    if resume:
        for name in specs:
            record = store.get_run(child_run_id(run_id, name))
            if record is not None and record["status"] == "succeeded":
                status[name] = RunStatus.SUCCEEDED
                orchestrator.decide(run_id, f"pipeline {name}", "keep", "it succeeded before the workflow stopped")
    try:
        while len(status) < len(specs):
            blocked = [
                n
                for n in specs
                if n not in status
                and any(
                    status.get(d) in (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.SKIPPED, RunStatus.PARTIAL)
                    for d in specs[n].depends_on
                )
            ]
            for name in blocked:
                status[name] = RunStatus.SKIPPED
                orchestrator.decide(
                    run_id,
                    f"pipeline {name}",
                    "skip",
                    f"it depends on {', '.join(specs[name].depends_on)}, which did not succeed",
                )
            ready = [
                n
                for n in specs
                if n not in status and all(status.get(d) is RunStatus.SUCCEEDED for d in specs[n].depends_on)
            ]
            if not ready:
                continue
            for name in ready:
                orchestrator.decide(
                    run_id,
                    f"pipeline {name}",
                    "start",
                    "everything it depends on has succeeded" if specs[name].depends_on else "it depends on nothing",
                )
            runs = [_run_child(runtime, loaded, run_id, name, resume=resume, listener=listener) for name in ready]
            for name, result in zip(ready, await asyncio.gather(*runs), strict=True):
                results[name] = result
                status[name] = result.status
    except asyncio.CancelledError:
        final = RunStatus.CANCELLED
        error: str | None = "cancelled"
        failure: RunFailure | None = make_failure(
            Remedy.RESUME, "Cancelled", "cancelled", run_id=run_id, spec_file=loaded.file
        )
        raise
    else:
        failed: dict[str, RunStatus] = {n: s for n, s in status.items() if s is not RunStatus.SUCCEEDED}
        final = RunStatus.FAILED if failed else RunStatus.SUCCEEDED
        error = "; ".join(f"{n}: {results[n].error if n in results else s}" for n, s in failed.items()) or None
        failure = _failure(results, failed, run_id=run_id, spec_file=loaded.file)
    finally:
        orchestrator.publish(
            RunFinished(sender=orchestrator.name, run_id=run_id, status=final, error=error, failure=failure)
        )
        await recording.finish()
    tasks = [
        TaskState(f"{n}/{t.id}", t.kind, **{k: v for k, v in vars(t).items() if k not in ("id", "kind")})
        for n, r in results.items()
        for t in r.tasks
    ]
    decisions = [d for r in results.values() for d in r.decisions]
    commits = [{**c, "destination": f"{n}/{c['destination']}"} for n, r in results.items() for c in r.commits]
    return RunResult(
        run_id, workflow.workflow, final, error, time.perf_counter() - started, tasks, decisions, commits, failure
    )


def _failure(
    results: dict[str, RunResult], failed: dict[str, RunStatus], *, run_id: str, spec_file: str
) -> RunFailure | None:
    """The workflow's failure: the first pipeline's that resuming cannot fix, else resume the workflow."""
    if not failed:
        return None
    own = [(n, child) for n in failed if n in results and (child := results[n].failure) is not None]
    for name, child in own:
        if child.remedy is not Remedy.RESUME:
            where = f"pipeline {name}: {child.where}" if child.where else f"pipeline {name}"
            return make_failure(
                child.remedy,
                child.error_type,
                child.message,
                run_id=run_id,
                spec_file=spec_file,
                where=where,
                holder_run_id=child.holder_run_id,
            )
    return make_failure(
        Remedy.RESUME,
        own[0][1].error_type if own else "Failed",
        own[0][1].message if own else "a pipeline did not succeed",
        run_id=run_id,
        spec_file=spec_file,
    )


async def _run_child(
    runtime: Runtime, loaded: LoadedSpec, run_id: str, name: str, *, resume: bool, listener: Listener | None
) -> RunResult:
    child_id = child_run_id(run_id, name)
    pipeline = next(p for p in loaded.pipelines if p.name == name)
    exists = resume and runtime.store.get_run(child_id) is not None
    return await runtime.run(
        loaded.child(pipeline), run_id=child_id, resume=exists, listener=listener, parent_run_id=run_id
    )
