"""The engine's entry point: run a pipeline spec through the agents and return a typed result.

It starts a hub, an orchestrator, ETL agents and a monitor in this process
(the embedded default), hands the run to the orchestrator, and folds the
monitor's view into a ``RunResult``. Interfaces (CLI, API) only render it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path

from agent_orchestrated_etl.agents.etl_agent import ETLAgent, OpenRuns
from agent_orchestrated_etl.agents.hub import Hub, InProcessHub
from agent_orchestrated_etl.agents.monitor_agent import Listener, MonitorAgent
from agent_orchestrated_etl.agents.orchestrator_agent import OrchestratorAgent
from agent_orchestrated_etl.agents.tools import ToolRegistry, default_registry
from agent_orchestrated_etl.circuit_breaker import StateChange, breakers
from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.exceptions import ConfigurationError
from agent_orchestrated_etl.execution import RunContext
from agent_orchestrated_etl.model.messages import BreakerChanged, RunEvent
from agent_orchestrated_etl.model.vocabulary import Remedy, RunStatus
from agent_orchestrated_etl.monitoring.live import RunState
from agent_orchestrated_etl.run_result import RunResult
from agent_orchestrated_etl.settlement import SUPERSEDABLE, settle_dead_runs
from agent_orchestrated_etl.settlement import clean_workspace as _clean_workspace
from agent_orchestrated_etl.spec import LoadedSpec, check_variables, parse_spec, resolve_env
from agent_orchestrated_etl.store.records import RESUMABLE, RunStore
from agent_orchestrated_etl.workflow import child_run_id, run_workflow


def open_hub(settings: Settings) -> Hub:
    """The hub the settings choose: in this process (the default), or on Redis (AGENT_ETL_HUB_URL)."""
    if settings.hub_url is None:
        return InProcessHub()
    from agent_orchestrated_etl.agents.redis_hub import RedisHub

    return RedisHub(settings.hub_url, prefix=settings.hub_prefix)


def new_run_id() -> str:
    """Sortable by start time, unique without coordination."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


class Runtime:
    """A hub with its agents, started once and able to run many pipelines.

    The CLI starts one per command; ``agent-etl serve`` keeps one for its lifetime.
    """

    def __init__(self, settings: Settings, *, etl_agents: int = 2, tools: ToolRegistry | None = None) -> None:
        self.settings = settings
        self.store = RunStore(settings.store_url)
        self.hub = open_hub(settings)
        #: The runs this process has open; its own ETL agents stage through them.
        self.runs = OpenRuns()
        self.tools = tools or default_registry()
        slots = max(1, -(-settings.max_workers // max(1, etl_agents)))  # none: the agents live in other processes
        self.monitor = MonitorAgent("monitor", self.hub, sample_resources=settings.monitoring_enabled)
        self.orchestrator = OrchestratorAgent("orchestrator", self.hub, self.store, max_workers=settings.max_workers)
        self.workers = [
            ETLAgent(f"etl-{i + 1}", self.hub, self.tools, capacity=slots, settings=settings, shared=self.runs)
            for i in range(etl_agents)
        ]
        self.agents = [self.monitor, self.orchestrator, *self.workers]

    async def __aenter__(self) -> Runtime:
        for agent in self.agents:
            await agent.start()
        loop = asyncio.get_running_loop()

        def on_breaker(change: StateChange) -> None:
            # Breakers change state in worker threads; the hub lives on this loop.
            event = BreakerChanged(
                sender="breakers",
                system=change.system,
                state=change.new,
                previous=change.old,
                consecutive_failures=change.consecutive_failures,
                reason=change.reason,
            )
            loop.call_soon_threadsafe(self.hub.publish, event.topic, event)

        self._unlisten = breakers.add_listener(on_breaker)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._unlisten()
        for agent in self.agents:
            await agent.stop()
        await self.hub.close()
        self.store.close()

    async def run(
        self,
        loaded: LoadedSpec,
        *,
        listener: Listener | None = None,
        run_id: str | None = None,
        resume: bool = False,
        parent_run_id: str | None = None,
    ) -> RunResult:
        started = time.perf_counter()
        run_id = run_id or new_run_id()
        check_variables(loaded)
        if loaded.workflow is not None:
            return await run_workflow(self, loaded, run_id=run_id, resume=resume, listener=listener)
        # Resolved values live only in memory, for this run; the store keeps the raw spec's hash.
        spec = resolve_env(loaded.pipeline).rebased(Path(loaded.file).resolve().parent)
        run_dir = self.settings.home_dir / "runs" / run_id

        def this_run(state: RunState, event: RunEvent) -> None:
            if listener is not None and event.run_id == run_id:
                listener(state, event)

        ctx = RunContext(run_id, spec, self.settings, run_dir)
        self.runs.add(ctx)
        self.monitor.listeners.append(this_run)
        try:
            status = await self.orchestrator.execute(
                ctx,
                spec_file=str(Path(loaded.file).resolve()),
                spec_text=loaded.text,
                spec_sha256=loaded.sha256,
                resume=resume,
                parent_run_id=parent_run_id,
            )
            await self.monitor.drain()
        finally:
            self.monitor.listeners.remove(this_run)
            self.runs.remove(run_id)
            ctx.close()
        if status is RunStatus.SUCCEEDED:
            _clean_workspace(run_dir)  # a failed run keeps it: resume reuses what was staged there
        state = self.monitor.runs.get(run_id) or RunState(run_id, spec.name, RunStatus.FAILED)
        return RunResult(
            run_id,
            spec.name,
            state.status,
            state.error,
            time.perf_counter() - started,
            list(state.tasks.values()),
            state.decisions,
            state.commits,
            state.failure,
        )

    async def resume(self, run_id: str, *, listener: Listener | None = None) -> RunResult:
        """Go on with a failed, cancelled or crashed run from its checkpoints, with the spec it started with."""
        loaded, full_id = self._stored_spec(run_id)
        return await self.run(loaded, listener=listener, run_id=full_id, resume=True)

    def discard(self, run_id: str) -> str:
        """Drop what a run that will not be resumed left staged; its targets were never touched."""
        loaded, full_id = self._stored_spec(run_id)
        if loaded.workflow is not None:
            for pipeline in loaded.workflow.pipelines:
                child = self.store.get_run(child_run_id(full_id, pipeline.name))
                if (
                    child is not None
                    and child["run_id"] == child_run_id(full_id, pipeline.name)
                    and child["status"] not in ("succeeded", "discarded")
                ):
                    self.discard(child["run_id"])
            self.store.set_status(full_id, "discarded", was=RESUMABLE)
            return full_id
        spec = resolve_env(loaded.pipeline).rebased(Path(loaded.file).parent)
        durability = self.store.durability
        # A run that still names the lock is running, or crashed: its staging is dropped only by
        # the lock's holder, so never under a live process (acquire refuses then).
        locked = (durability.holder(spec.name) or {}).get("run_id") == full_id
        if locked:
            durability.acquire(spec.name, full_id)
        ctx = RunContext(full_id, spec, self.settings, self.settings.home_dir / "runs" / full_id)
        try:
            ctx.expand()  # a multi-table source staged into one destination per table
            for dest in ctx.destinations:
                dest.abort(full_id)
            _clean_workspace(ctx.run_dir)
            self.store.set_status(full_id, "discarded", was=RESUMABLE)
        finally:
            ctx.close()
            if locked:
                durability.release(spec.name, full_id)
        durability.audit("discard", run_id=full_id, pipeline=spec.name, spec_sha256=loaded.sha256)
        return full_id

    def discard_failed(self) -> list[str]:
        """Discard every failed or cancelled run, and every crashed one (settled from its lock's dead holder first)."""
        settle_dead_runs(self.store, self.settings, limit=None)
        done = []
        for record in self.store.runs_of(None, SUPERSEDABLE):
            # A workflow's discard takes its pipelines' runs with it.
            current = self.store.get_run(record["run_id"])
            if current is not None and current["status"] in SUPERSEDABLE:
                done.append(self.discard(record["run_id"]))
        return done

    def _stored_spec(self, run_id: str) -> tuple[LoadedSpec, str]:
        record = self.store.get_run(run_id)
        if record is None:
            raise ConfigurationError(f"no run {run_id!r} in the store", hint="`agent-etl runs` lists them")
        if record["status"] == "superseded":
            raise ConfigurationError(
                f"run {record['run_id']} was {record['error'] or 'superseded by a later run'}, which loaded its rows;"
                " resuming it would load them twice",
                hint=f"its staging is gone; start a new run for what came since: agent-etl run {record['spec_file']}",
            )
        if record["status"] in ("succeeded", "discarded"):
            raise ConfigurationError(
                f"run {record['run_id']} is {record['status']}; there is nothing to go on with",
                hint=f"start a new one: agent-etl run {record['spec_file']}",
            )
        failure = record.get("failure") or {}
        if failure.get("remedy") == Remedy.WAIT and not record["tasks"]:
            holder = failure.get("holder_run_id")
            raise ConfigurationError(
                f"run {record['run_id']} never started: it was refused because"
                f" {f'run {holder}' if holder else 'another run'} held pipeline {record['pipeline']}; there is nothing"
                " to resume",
                hint=f"start a new run once that one has finished: agent-etl run {record['spec_file']}",
            )
        if not record["spec_text"]:
            raise ConfigurationError(f"run {record['run_id']} has no stored spec", hint="start a new run")
        return parse_spec(record["spec_text"], file=record["spec_file"]), record["run_id"]

    def cancel(self, run_id: str) -> bool:
        """Ask a running run to stop; its tasks stop between batches and staging is aborted."""
        ctx = self.runs.get(run_id)
        if ctx is None:
            return False
        ctx.cancelled.set()  # seen by the scheduler, even before its first assignment
        self.orchestrator.cancel(run_id)  # and by the agents running its tasks, by message
        return True


async def run_pipeline_async(
    loaded: LoadedSpec, settings: Settings, *, listener: Listener | None = None, run_id: str | None = None
) -> RunResult:
    async with Runtime(settings) as runtime:
        return await runtime.run(loaded, listener=listener, run_id=run_id)


def run_pipeline(
    loaded: LoadedSpec, settings: Settings, *, listener: Listener | None = None, run_id: str | None = None
) -> RunResult:
    """``run_id``: one the caller chose (``new_run_id()``), to name the run before its first event."""
    return asyncio.run(run_pipeline_async(loaded, settings, listener=listener, run_id=run_id))


def resume_run(run_id: str, settings: Settings, *, listener: Listener | None = None) -> RunResult:
    async def resume() -> RunResult:
        async with Runtime(settings) as runtime:
            return await runtime.resume(run_id, listener=listener)

    return asyncio.run(resume())


def discard_run(run_id: str, settings: Settings) -> str:
    async def discard() -> str:
        async with Runtime(settings) as runtime:
            return await asyncio.to_thread(runtime.discard, run_id)

    return asyncio.run(discard())


def discard_failed_runs(settings: Settings) -> list[str]:
    async def discard() -> list[str]:
        async with Runtime(settings) as runtime:
            return await asyncio.to_thread(runtime.discard_failed)

    return asyncio.run(discard())
