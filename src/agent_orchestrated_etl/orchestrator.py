"""The engine's entry point: run a pipeline spec through the agents and return a typed result.

It starts a hub, an orchestrator, ETL agents and a monitor in this process
(the embedded default), hands the run to the orchestrator, and folds the
monitor's view into a ``RunResult``. Interfaces (CLI, API) only render it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent_orchestrated_etl.agents.etl_agent import ETLAgent
from agent_orchestrated_etl.agents.hub import InProcessHub
from agent_orchestrated_etl.agents.monitor_agent import Listener, MonitorAgent
from agent_orchestrated_etl.agents.orchestrator_agent import OrchestratorAgent
from agent_orchestrated_etl.agents.tools import ToolRegistry, default_registry
from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.execution import RunContext
from agent_orchestrated_etl.monitoring.live import RunState, TaskState
from agent_orchestrated_etl.spec import LoadedSpec, resolve_env
from agent_orchestrated_etl.store.records import RunStore


@dataclass
class RunResult:
    run_id: str
    pipeline: str
    status: str
    error: str | None
    seconds: float
    tasks: list[TaskState]
    decisions: list[dict[str, str]]
    commits: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    @property
    def rows_read(self) -> int:
        return sum(t.rows for t in self.tasks)

    @property
    def rows_written(self) -> int:
        return sum(c["rows"] for c in self.commits)

    @property
    def rows_quarantined(self) -> int:
        return sum(c["quarantined_rows"] for c in self.commits)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "status": self.status,
            "error": self.error,
            "seconds": round(self.seconds, 3),
            "rows_read": self.rows_read,
            "rows_written": self.rows_written,
            "rows_quarantined": self.rows_quarantined,
            "tasks": [{k: v for k, v in asdict(t).items() if k != "started"} for t in self.tasks],
            "decisions": self.decisions,
            "commits": self.commits,
        }


def new_run_id() -> str:
    """Sortable by start time, unique without coordination."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


async def run_pipeline_async(loaded: LoadedSpec, settings: Settings, *, listener: Listener | None = None, tools: ToolRegistry | None = None, etl_agents: int = 2) -> RunResult:
    started = time.perf_counter()
    run_id = new_run_id()
    # Resolved values live only in memory, for this run; the store keeps the raw spec's hash.
    spec = resolve_env(loaded.pipeline).rebased(Path(loaded.file).resolve().parent)
    run_dir = settings.home_dir / "runs" / run_id
    store = RunStore(settings.store_url)
    hub = InProcessHub()
    runs: dict[str, RunContext] = {}
    tools = tools or default_registry()
    slots = max(1, -(-settings.max_workers // etl_agents))
    monitor = MonitorAgent("monitor", hub)
    if listener:
        monitor.listeners.append(listener)
    workers = [ETLAgent(f"etl-{i + 1}", hub, tools, runs, capacity=slots) for i in range(etl_agents)]
    orchestrator = OrchestratorAgent("orchestrator", hub, store, max_workers=settings.max_workers)
    agents = [monitor, orchestrator, *workers]
    ctx = RunContext(run_id, spec, settings, run_dir)
    runs[run_id] = ctx
    for agent in agents:
        await agent.start()
    try:
        await orchestrator.execute(ctx, spec_file=loaded.file, spec_sha256=loaded.sha256)
    finally:
        for agent in agents:
            await agent.stop()
        ctx.close()
        store.close()
        _clean_workspace(run_dir)
    state = monitor.runs.get(run_id) or RunState(run_id, spec.name, "failed")
    return RunResult(run_id, spec.name, state.status, state.error, time.perf_counter() - started, list(state.tasks.values()), state.decisions, state.commits)


def run_pipeline(loaded: LoadedSpec, settings: Settings, *, listener: Listener | None = None) -> RunResult:
    return asyncio.run(run_pipeline_async(loaded, settings, listener=listener))


def _clean_workspace(run_dir: Path) -> None:
    """The workspace holds intermediate copies only; the store keeps the run's history."""
    for name in ("workspace.duckdb", "workspace.duckdb.wal"):
        (run_dir / name).unlink(missing_ok=True)
    for leftover in (run_dir / "spill",):
        if leftover.exists():
            for file in leftover.iterdir():
                file.unlink()
            leftover.rmdir()
    if run_dir.exists() and not any(run_dir.iterdir()):
        run_dir.rmdir()
