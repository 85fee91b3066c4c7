"""What ``agent-etl serve`` keeps for its lifetime: one runtime, the registered pipelines,
the monitor's watchers (metrics, SLAs, memory), alerts and the scheduler.

Runs started here (by the API, the dashboard or a schedule) are asyncio tasks
on the server's loop; their run id is made up front so the caller gets it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent_orchestrated_etl import confinement
from agent_orchestrated_etl.api.fanout import Fanout
from agent_orchestrated_etl.api.limits import RateLimiter
from agent_orchestrated_etl.api.roots import check_base_dir, check_paths, operator_dirs
from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.exceptions import AgentETLError, ConfigurationError, SpecError, SpecProblem
from agent_orchestrated_etl.model.messages import RunFinished, RunStarted
from agent_orchestrated_etl.model.vocabulary import RunStatus
from agent_orchestrated_etl.monitoring.alerts import AlertChannel, AlertManager, LogChannel, WebhookChannel
from agent_orchestrated_etl.monitoring.metrics import Metrics
from agent_orchestrated_etl.monitoring.resources import MemoryWatcher
from agent_orchestrated_etl.monitoring.schedules import Scheduler, as_schedule, check_cron
from agent_orchestrated_etl.monitoring.sla import SlaWatcher, parse_duration
from agent_orchestrated_etl.orchestrator import Runtime, new_run_id
from agent_orchestrated_etl.spec import LoadedSpec, PipelineSpec, parse_spec, resolve_env
from agent_orchestrated_etl.store.alerts import AlertStore
from agent_orchestrated_etl.store.history import last_success
from agent_orchestrated_etl.store.pipelines import PipelineStore, RegisteredPipeline
from agent_orchestrated_etl.store.tokens import TokenStore
from agent_orchestrated_etl.workflow import child_run_id
from agent_orchestrated_etl.yaml_locations import locate_problem, node_lines

log = logging.getLogger(__name__)


@dataclass
class ServeOptions:
    settings: Settings
    token: str
    max_body_bytes: int = 1024 * 1024
    specs: list[Path] = field(default_factory=list)
    base_dir: Path = field(default_factory=Path.cwd)
    #: Every local path a spec from the API reads or writes must be under it (api/roots.py); base_dir by default.
    data_root: Path | None = None
    #: Serve reading routes without the token.
    public_read: bool = False
    #: Host names accepted (api/security.py); None accepts any, as an app embedded in tests does.
    allowed_hosts: frozenset[str] | None = None
    #: Requests a minute per token (per address without one), in a burst of a tenth of that; 0 turns the limit off.
    rate_per_minute: int = 1200
    #: How long the dashboard's session cookie lasts.
    session_hours: float = 12.0
    #: Origins whose pages may call the API (CORS); none by default.
    cors_origins: tuple[str, ...] = ()
    alert_webhook: str | None = None
    alert_slack: bool = False
    dedup_seconds: float = 600.0
    alerts_per_minute: int = 20


class UnknownPipeline(LookupError):
    pass


class Server:
    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.token = options.token
        self.runtime = Runtime(options.settings)
        engine = self.runtime.store.engine
        self.pipelines = PipelineStore(engine)
        self.tokens = TokenStore(engine)
        self.limiter = RateLimiter(options.rate_per_minute) if options.rate_per_minute > 0 else None
        self.metrics = Metrics(self.runtime.monitor, self.runtime.hub)
        channels: list[AlertChannel] = [LogChannel()]
        if options.alert_webhook:
            channels.append(WebhookChannel(options.alert_webhook, slack=options.alert_slack))
        self.alerts = AlertManager(
            self.runtime.hub,
            AlertStore(engine),
            channels,
            dedup_seconds=options.dedup_seconds,
            max_per_minute=options.alerts_per_minute,
            on_outcome=lambda alert, outcome: self.metrics.alerts.labels(alert.rule, outcome).inc(),
        )
        self.sla = SlaWatcher(self.alerts, lambda name: last_success(engine, name))
        self.runtime.monitor.watchers.append(self.sla)
        if options.settings.monitoring_enabled:
            # Off, the monitor samples no CPU or RSS (so no memory alert) and /metrics answers 404; run state and SLAs come from events and stay.
            self.runtime.monitor.watchers.extend(
                [
                    self.metrics,
                    MemoryWatcher(self.alerts, options.settings.memory_limit_bytes, options.settings.memory_limit),
                ]
            )
        self.scheduler = Scheduler(self.start_run, self.is_running, self.pipelines.mark_fired)
        self.fanout = Fanout(self.runtime.hub)
        self.active: dict[str, tuple[str, asyncio.Task[None]]] = {}
        self._scheduling: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Server:
        await self.runtime.__aenter__()
        files, secret_files = [self.data_root], [self.data_root, *self.options.settings.secrets_roots]
        for path in self.options.specs:
            text = path.read_text(encoding="utf-8")
            loaded, _ = self.register(text, base_dir=path.resolve().parent, file=str(path))
            # The operator's own specs are not confined: what they read stays readable at run time.
            mine = operator_dirs(loaded, path.resolve().parent)
            files += mine.files
            secret_files += mine.secrets
        # Checked again at each open, so a file swapped for a symlink after registration is refused.
        confinement.confine(files=files, secrets=secret_files)
        for registered in self.pipelines.list():
            try:
                self._watch(self.loaded(registered), registered)
            except AgentETLError as exc:  # a spec stored by an older version may no longer validate
                log.warning(
                    "pipeline %s is registered but does not load, so it is not scheduled: %s", registered.name, exc
                )
        self._scheduling = asyncio.create_task(self.scheduler.run(), name="scheduler")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        confinement.release()
        if self._scheduling is not None:
            self._scheduling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduling
        for run_id in list(self.active):
            self.runtime.cancel(run_id)
        tasks = [task for _, task in self.active.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        await self.alerts.flush()
        await self.fanout.aclose()
        await self.runtime.__aexit__(*exc_info)

    # Pipelines

    def register(
        self, yaml_text: str, *, base_dir: Path | None = None, file: str = "<request body>"
    ) -> tuple[LoadedSpec, bool]:
        """Validate and store a pipeline or workflow spec (replacing one of the same name); returns it and whether it is new."""
        parsed = check_spec(yaml_text, file=file)
        base = (base_dir or self.options.base_dir).resolve()
        created = self.pipelines.register(parsed.name, yaml_text, str(base))
        registered = self.pipelines.get(parsed.name)
        assert registered is not None
        loaded = self.loaded(registered)
        self._watch(loaded, registered)
        return loaded, created

    @property
    def data_root(self) -> Path:
        return (self.options.data_root or self.options.base_dir).resolve()

    def check_request(self, yaml_text: str, base_dir: str | None) -> tuple[LoadedSpec, Path]:
        """A spec from the API: valid, and reading and writing only inside the data root; raises SpecError."""
        base = check_base_dir(self.data_root, Path(base_dir)) if base_dir else self.options.base_dir.resolve()
        loaded = check_spec(yaml_text)
        check_paths(loaded, base, self.data_root, self.options.settings.secrets_roots)
        return loaded, base

    def unregister(self, name: str) -> bool:
        self.scheduler.remove(name)
        registered = self.pipelines.get(name)
        with contextlib.suppress(AgentETLError):  # a stored spec that no longer loads has nothing watched
            for pipeline in self.loaded(registered).pipelines if registered else []:
                self.sla.forget_pipeline(pipeline.name)
        return self.pipelines.delete(name)

    def get(self, name: str) -> RegisteredPipeline:
        registered = self.pipelines.get(name)
        if registered is None:
            raise UnknownPipeline(name)
        return registered

    @staticmethod
    def loaded(registered: RegisteredPipeline) -> LoadedSpec:
        # Relative paths in the spec resolve against base_dir, as they would beside a spec file there.
        return parse_spec(registered.yaml, file=str(Path(registered.base_dir) / f"{registered.name}.yaml"))

    def _watch(self, loaded: LoadedSpec, registered: RegisteredPipeline) -> None:
        spec = loaded.pipeline
        if spec is not None and spec.schedule is not None:
            self.scheduler.set(spec.name, spec.schedule, registered.last_fire_at)
        else:
            self.scheduler.remove(loaded.name)
        for pipeline in loaded.pipelines:
            self.sla.watch_pipeline(_with_alert_env(pipeline), registered.registered_at)

    # Runs

    def running_run(self, pipeline: str) -> str | None:
        return next((run_id for run_id, (name, _) in tuple(self.active.items()) if name == pipeline), None)

    def is_running(self, pipeline: str) -> bool:
        return self.running_run(pipeline) is not None

    async def start_run(self, name: str, trigger: str = "api") -> str:
        loaded = self.loaded(self.get(name))
        run_id = new_run_id()
        self._expect(run_id, loaded)
        self._launch(self.runtime.run(loaded, run_id=run_id), loaded, run_id)
        log.info("run %s of %s started by %s", run_id, name, trigger)
        return run_id

    def resume_run(self, record: dict[str, Any]) -> str:
        """Go on with a failed or cancelled run (checked by the caller) from its checkpoints, with its own spec."""
        run_id = record["run_id"]
        loaded = parse_spec(record["spec_text"], file=record["spec_file"])
        self._expect(run_id, loaded)
        self._launch(self.runtime.resume(run_id), loaded, run_id)
        log.info("run %s of %s resumed", run_id, loaded.name)
        return run_id

    def _expect(self, run_id: str, loaded: LoadedSpec) -> None:
        """Tell the SLA watcher what is about to run: the pipeline, or each pipeline of a workflow under its own run id."""
        if loaded.pipeline is not None:
            self.sla.expect(run_id, _with_alert_env(loaded.pipeline))
        for pipeline in loaded.workflow.pipelines if loaded.workflow else []:
            self.sla.expect(child_run_id(run_id, pipeline.name), _with_alert_env(pipeline))

    def _launch(self, work: Coroutine[Any, Any, object], loaded: LoadedSpec, run_id: str) -> None:
        task = asyncio.create_task(self._run(work, loaded, run_id), name=f"run:{run_id}")
        self.active[run_id] = (loaded.name, task)

    def cancel(self, run_id: str) -> bool:
        return self.runtime.cancel(run_id)

    async def _run(self, work: Coroutine[Any, Any, object], loaded: LoadedSpec, run_id: str) -> None:
        name = loaded.name
        try:
            await work
        except Exception as exc:  # the run failed before the orchestrator took it (e.g. an unset ${env:...})
            if not isinstance(exc, AgentETLError):
                log.exception("run %s of %s crashed before it started", run_id, name)
            await asyncio.to_thread(self._record_early_failure, loaded, run_id, str(exc))
        finally:
            self.active.pop(run_id, None)
            await self.scheduler.run_finished(name)

    def _record_early_failure(self, loaded: LoadedSpec, run_id: str, error: str) -> None:
        store = self.runtime.store
        if store.get_run(run_id) is not None:
            log.warning("run %s could not go on: %s", run_id, error)  # a resume; the record keeps its last status
            return
        store.start_run(run_id, loaded.name, loaded.file, loaded.sha256, loaded.text)
        for event in (
            RunStarted(sender="serve", run_id=run_id, pipeline=loaded.name, spec_sha256=loaded.sha256, tasks=[]),
            RunFinished(sender="serve", run_id=run_id, status=RunStatus.FAILED, error=error),
        ):
            store.record(event)
            self.runtime.hub.publish(event.topic, event)


def _with_alert_env(spec: PipelineSpec) -> PipelineSpec:
    """The spec with ``${env:...}`` in its alert settings resolved; alerts are the only part read outside a run."""
    if spec.alerts is None:
        return spec
    try:
        return spec.model_copy(update={"alerts": resolve_env(spec.alerts, where="alerts")})
    except ConfigurationError as exc:
        log.warning("pipeline %s: alerts go to the log only: %s", spec.name, exc)
        return spec.model_copy(update={"alerts": None})


def check_spec(yaml_text: str, *, file: str = "<request body>") -> LoadedSpec:
    """Parse and validate a spec, including what only serve reads; raises SpecError."""
    loaded = parse_spec(yaml_text, file=file)
    problems = _serve_problems(loaded)
    if problems:
        raise SpecError(problems)
    return loaded


def _serve_problems(loaded: LoadedSpec) -> list[SpecProblem]:
    """What only serve reads: the cron expression and the SLA durations, of the pipeline or of each in a workflow."""
    lines = node_lines(yaml.compose(loaded.text))
    problems = []
    for at, spec in _located_pipelines(loaded):

        def problem(key: tuple[str, ...], message: str, at: tuple[str | int, ...] = at) -> SpecProblem:
            path, line = locate_problem((*at, *key), lines)
            return SpecProblem(loaded.file, line, path, message)

        if spec.schedule is not None and loaded.workflow is not None:
            problems.append(
                problem(
                    ("schedule",),
                    "a pipeline inside a workflow runs when the workflow runs; schedule it as a pipeline spec of its"
                    " own, or start the workflow with POST /api/v1/runs",
                )
            )
        elif spec.schedule is not None:
            schedule = as_schedule(spec.schedule)
            if (message := check_cron(schedule.cron)) is not None:
                problems.append(
                    problem(("schedule", "cron") if (*at, "schedule", "cron") in lines else ("schedule",), message)
                )
        for field_name in ("max_duration", "freshness"):
            value = getattr(spec.sla, field_name) if spec.sla is not None else None
            if value is None:
                continue
            try:
                parse_duration(value)
            except ValueError as exc:
                problems.append(problem(("sla", field_name), str(exc)))
    return problems


def _located_pipelines(loaded: LoadedSpec) -> list[tuple[tuple[str | int, ...], PipelineSpec]]:
    if loaded.workflow is None:
        return [((), p) for p in loaded.pipelines]
    return [(("pipelines", i), p) for i, p in enumerate(loaded.workflow.pipelines)]
