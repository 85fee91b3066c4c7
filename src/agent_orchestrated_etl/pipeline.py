"""The Python API: build a pipeline from typed objects, YAML or a file; validate, run, resume; read a target back.

An interface like the CLI: it builds the same spec (the pydantic models of
spec.py, written out as the YAML text the store keeps), runs it through the
same engine (orchestrator.Runtime) and returns the same typed ``RunResult``.
Python objects given as sources are bound for the run under their source's
name and read by ``type: python`` (connectors/python/); they never enter the
spec text, the store or a hub message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml
from pydantic import BaseModel, SecretStr

from agent_orchestrated_etl import secrets
from agent_orchestrated_etl.config import Settings, load_settings
from agent_orchestrated_etl.connectors.python.data import bind, one_shot
from agent_orchestrated_etl.connectors.registry import source_class
from agent_orchestrated_etl.exceptions import ConfigurationError, RunFailedError, SpecError
from agent_orchestrated_etl.model.failure import RunFailure
from agent_orchestrated_etl.model.messages import RunEvent
from agent_orchestrated_etl.monitoring.live import RunState
from agent_orchestrated_etl.orchestrator import Runtime
from agent_orchestrated_etl.planning.preflight import check_loaded, spec_problems
from agent_orchestrated_etl.run_result import RunResult
from agent_orchestrated_etl.spec import LoadedSpec, PipelineSpec, WorkflowSpec, load_spec, parse_spec, resolve_env
from agent_orchestrated_etl.spec import unset_variables as _unset_variables

log = logging.getLogger(__name__)

#: The spec's ``file`` for a pipeline built in Python: relative paths are relative to the working directory.
PYTHON_SPEC = "<python>"


@dataclass(frozen=True)
class Progress:
    """One event of a run and the run as it stands after it: the numbers the CLI and the dashboard show."""

    #: The hub event (RunStarted, TaskStarted, TaskProgress, TaskFinished, TaskFailed, Decision, ...).
    event: RunEvent
    #: A JSON-ready snapshot of the run (monitoring.live.RunState.to_dict): tasks, rows, decisions, commits.
    run: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.event.kind

    @property
    def run_id(self) -> str:
        return self.event.run_id

    @property
    def rows_read(self) -> int:
        return int(self.run["rows_read"])

    @property
    def rows_written(self) -> int:
        return int(self.run["rows_written"])

    @property
    def rows_quarantined(self) -> int:
        return int(self.run["rows_quarantined"])

    @property
    def tasks(self) -> list[dict[str, Any]]:
        return list(self.run["tasks"])

    def __str__(self) -> str:
        done = sum(1 for t in self.run["tasks"] if t["status"] in ("succeeded", "failed", "cancelled"))
        return (
            f"{self.run['pipeline']} {self.run_id}: {self.kind}, {done}/{len(self.run['tasks'])} tasks,"
            f" {self.rows_read} rows read, {self.rows_written} written, {self.rows_quarantined} quarantined"
        )


OnProgress = Callable[[Progress], None]


class Pipeline:
    """A pipeline (or a workflow of several) to validate, run, resume and read back from Python.

    ``sources`` maps each source's name to a connector spec (a model such as
    ``DuckDBSourceSpec`` or a dict with ``type``) or to the data itself: an
    iterable of dicts or Arrow record batches, an Arrow table, a pandas or
    Polars DataFrame, or a function returning one of those afresh. Transforms,
    checks and destinations are the spec's models or their dicts, as in YAML.
    """

    def __init__(
        self,
        name: str,
        *,
        sources: Mapping[str, Any],
        destination: BaseModel | Mapping[str, Any] | None = None,
        destinations: Sequence[BaseModel | Mapping[str, Any]] = (),
        transforms: Sequence[BaseModel | Mapping[str, Any]] = (),
        quality: Sequence[BaseModel | Mapping[str, Any]] = (),
        settings: Settings | None = None,
        **options: Any,
    ) -> None:
        data: dict[str, Any] = {}
        specs: dict[str, Any] = {}
        for source, value in sources.items():
            if isinstance(value, BaseModel | Mapping):  # a spec; a dict is never data (pass a list of dicts)
                specs[source] = _plain(value, f"sources.{source}")
            else:  # named after the pipeline too, so two pipelines with an `orders` source can run side by side
                ref = f"{name}.{source}"
                specs[source], data[ref] = {"type": "python", "ref": ref}, value
        document: dict[str, Any] = {"name": name, "sources": specs}
        for key, value in (("transforms", transforms), ("quality", quality), ("destinations", destinations)):
            if value:
                document[key] = [_plain(item, f"{key}[{i}]") for i, item in enumerate(value)]
        if destination is not None:
            document["destination"] = _plain(destination, "destination")
        document.update({key: _plain(value, key) for key, value in options.items()})
        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
        self._init(parse_spec(text, file=PYTHON_SPEC, limits=_settings(settings).spec_limits), data, settings)

    def _init(self, loaded: LoadedSpec, data: Mapping[str, Any], settings: Settings | None) -> None:
        self.loaded = loaded
        self.data = dict(data)
        self.settings = settings
        unknown = sorted(set(self.data) - _python_refs(loaded))
        if unknown:
            raise ConfigurationError(
                f"data given for {unknown}, which no `type: python` source names by its ref",
                where=loaded.file,
                hint="name it in a source: {type: python, ref: <name>}",
            )

    @classmethod
    def from_yaml(
        cls,
        text: str,
        *,
        data: Mapping[str, Any] | None = None,
        file: str | None = None,
        settings: Settings | None = None,
    ) -> Pipeline:
        """A pipeline or workflow from YAML text; ``data`` gives the objects its ``type: python`` sources name.

        ``file`` is where relative paths are relative to (the working directory by default) and how errors name it.
        """
        pipeline = cls.__new__(cls)
        pipeline._init(
            parse_spec(text, file=file or PYTHON_SPEC, limits=_settings(settings).spec_limits), data or {}, settings
        )
        return pipeline

    @classmethod
    def from_file(
        cls, path: str | Path, *, data: Mapping[str, Any] | None = None, settings: Settings | None = None
    ) -> Pipeline:
        """A pipeline or workflow from a spec file, as `agent-etl run FILE` reads it."""
        pipeline = cls.__new__(cls)
        pipeline._init(load_spec(path, limits=_settings(settings).spec_limits), data or {}, settings)
        return pipeline

    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def spec(self) -> PipelineSpec | WorkflowSpec:
        """The validated spec (env references unresolved), as `agent-etl validate` sees it."""
        spec = self.loaded.workflow or self.loaded.pipeline
        assert spec is not None
        return spec

    @property
    def yaml(self) -> str:
        """The spec's YAML text: what the run record keeps and `agent-etl run` accepts."""
        return self.loaded.text

    def validate(self, *, offline: bool = False) -> list[str]:
        """Check the spec as `agent-etl validate` does; raises SpecError listing every problem, returns the notes.

        Each source's first batch is read to bind transforms and checks to its
        schema, except with ``offline`` or when a source is a one-shot iterator
        (reading it here would use up its first rows).
        """
        once = sorted(ref for ref, value in self.data.items() if one_shot(value))
        with self._bound():
            findings = check_loaded(self.loaded, offline=offline or bool(once))
        problems = _unset_variables(self.loaded) + spec_problems(self.loaded, findings)
        if problems:
            raise SpecError(sorted(problems, key=lambda p: p.line or 0))
        notes = list(findings.notes)
        if once and not offline:
            notes.append(f"sources were not read: {', '.join(once)} can be read only once; the run checks them")
        return notes

    def run(self, *, on_progress: OnProgress | None = None, check: bool = False) -> RunResult:
        """Run to the end and return its result; with ``check``, a run that did not succeed raises RunFailedError."""
        return _run_sync(lambda: self.run_async(on_progress=on_progress, check=check))

    async def run_async(self, *, on_progress: OnProgress | None = None, check: bool = False) -> RunResult:
        """``run`` in the caller's event loop."""
        return await self._execute(
            lambda runtime, listener: runtime.run(self.loaded, listener=listener), on_progress, check
        )

    def resume(self, run_id: str, *, on_progress: OnProgress | None = None, check: bool = False) -> RunResult:
        """Go on with a failed, cancelled or crashed run of this pipeline from its checkpoints, as `agent-etl resume`."""
        return _run_sync(lambda: self.resume_async(run_id, on_progress=on_progress, check=check))

    async def resume_async(
        self, run_id: str, *, on_progress: OnProgress | None = None, check: bool = False
    ) -> RunResult:
        return await self._execute(
            lambda runtime, listener: runtime.resume(run_id, listener=listener), on_progress, check
        )

    def events(self, *, check: bool = False) -> RunEvents:
        """Start the run when iterated: ``async for progress in pipeline.events()``; then ``.result`` holds its result."""
        return RunEvents(self, check=check)

    def read_table(self, destination: int | str = 0, *, quarantine: bool = False) -> pa.Table:
        """A destination's committed target as an Arrow table (by index, or by its table name or path)."""
        return read_table(self._destination(destination), base=_base(self.loaded), quarantine=quarantine)

    def read_batches(self, destination: int | str = 0, *, quarantine: bool = False) -> Iterator[pa.RecordBatch]:
        """``read_table`` batch by batch, in bounded memory."""
        return read_batches(self._destination(destination), base=_base(self.loaded), quarantine=quarantine)

    def _destination(self, which: int | str) -> Any:
        if self.loaded.pipeline is None:
            raise ConfigurationError(
                "a workflow has one pipeline per destination", hint="read through Pipeline(...) of that pipeline"
            )
        destinations = self.loaded.pipeline.all_destinations
        if isinstance(which, int):
            if not -len(destinations) <= which < len(destinations):
                raise ConfigurationError(
                    f"pipeline {self.name} has {len(destinations)} destination(s); there is no destination {which}",
                    hint="give an index below that, or the table's name",
                )
            return destinations[which]
        for dest in destinations:
            if which in (getattr(dest, "table", None), getattr(dest, "path", None)):
                return dest
        names = [getattr(d, "table", None) or getattr(d, "path", None) for d in destinations]
        raise ConfigurationError(f"pipeline {self.name} has no destination {which!r}", hint=f"one of {names}")

    def _bound(self) -> AbstractContextManager[None]:
        return bind(self.data)

    async def _execute(
        self,
        start: Callable[[Runtime, Any], Awaitable[RunResult]],
        on_progress: OnProgress | None,
        check: bool,
        runtime_ready: Callable[[Runtime], None] | None = None,
    ) -> RunResult:
        listener = _listener(on_progress) if on_progress is not None else None
        with self._bound():
            async with Runtime(_settings(self.settings)) as runtime:
                if runtime_ready is not None:
                    runtime_ready(runtime)
                result = await start(runtime, listener)
        if result.failure is not None and self.loaded.file == PYTHON_SPEC:
            result.failure = _from_python(result.failure)
        if check and not result.ok:
            raise _failed(result)
        return result

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r})"


class RunEvents:
    """An async iterator of a run's Progress, for orchestrators; the run starts with the iteration.

    ``async with pipeline.events() as events: async for progress in events: ...``:
    leaving the block before the run ends cancels the run (destinations not yet
    committed stay as they were; ``resume`` goes on with it). Then ``result`` is the RunResult.
    """

    def __init__(self, pipeline: Pipeline, *, check: bool = False) -> None:
        self.pipeline = pipeline
        self.check = check
        self.result: RunResult | None = None
        self._queue: asyncio.Queue[Progress | None] = asyncio.Queue()
        self._task: asyncio.Task[RunResult] | None = None
        self._runtime: Runtime | None = None
        self._run_id: str | None = None

    def _start(self) -> asyncio.Task[RunResult]:
        if self._task is None:

            def put(progress: Progress) -> None:
                self._run_id = progress.run_id
                self._queue.put_nowait(progress)

            def ready(runtime: Runtime) -> None:
                self._runtime = runtime

            self._task = asyncio.create_task(
                self.pipeline._execute(
                    lambda runtime, listener: runtime.run(self.pipeline.loaded, listener=listener),
                    put,
                    self.check,
                    ready,
                )
            )
            self._task.add_done_callback(lambda _: self._queue.put_nowait(None))
        return self._task

    def __aiter__(self) -> RunEvents:
        return self

    async def __anext__(self) -> Progress:
        task = self._start()
        progress = await self._queue.get()
        if progress is None:
            self.result = await task
            raise StopAsyncIteration
        return progress

    async def __aenter__(self) -> RunEvents:
        self._start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel the run if it is still going, and wait for its result."""
        task = self._start()
        if not task.done():
            if self._runtime is not None and self._run_id is not None:
                self._runtime.cancel(self._run_id)
            else:  # not started yet: nothing to cancel but the task
                task.cancel()
        try:
            self.result = await task
        except asyncio.CancelledError:
            self.result = None


def read_table(
    destination: BaseModel | Mapping[str, Any], *, base: str | Path = ".", quarantine: bool = False
) -> pa.Table:
    """What a destination (its spec model or dict) holds now, committed rows only, as one Arrow table.

    DuckDB, SQLite, PostgreSQL, MariaDB/MySQL and file destinations; ``quarantine``
    reads the ``<table>__quarantine`` table of a database destination instead.
    """
    batches = list(read_batches(destination, base=base, quarantine=quarantine))
    return pa.Table.from_batches(batches) if batches else pa.table({})


def read_batches(
    destination: BaseModel | Mapping[str, Any], *, base: str | Path = ".", quarantine: bool = False
) -> Iterator[pa.RecordBatch]:
    """``read_table`` batch by batch: the target is read by the source connector of its kind, streamed."""
    spec = _as_source(destination, quarantine)
    cls = source_class(spec["type"])
    source_spec = resolve_env(cls.spec_model.model_validate(spec)).rebased(Path(base).resolve())
    source = cls("target", source_spec, batch_rows=load_settings().batch_rows)
    for partition in source.partitions():
        for batch, _ in source.read(partition):
            yield batch


def _as_source(destination: BaseModel | Mapping[str, Any], quarantine: bool) -> dict[str, Any]:
    """The source spec that reads what a destination committed."""
    # Nothing read here is stored, so a secret may stay a SecretStr: the source model takes it as it is.
    dest = destination.model_dump(by_alias=True) if isinstance(destination, BaseModel) else dict(destination)
    kind = dest.get("type")
    if kind == "file":
        if quarantine:
            raise ConfigurationError(
                "a file destination's quarantine is not read back by the API yet",
                where=str(dest.get("path")),
                hint="read its quarantine files with pyarrow",
            )
        return {"type": "file", "path": dest["path"], "format": dest.get("format", "parquet")}
    if kind not in ("duckdb", "sqlite", "postgres", "mysql"):
        raise ConfigurationError(
            f"reading a {kind} destination back is not supported",
            hint="read DuckDB, SQLite, PostgreSQL, MariaDB/MySQL or file destinations",
        )
    table = dest.get("table")
    if not table:
        raise ConfigurationError(
            "this destination names its tables after its input's (table_prefix)", hint="read each table by its own name"
        )
    where = {"path": dest["path"]} if kind == "duckdb" else {"url": dest["url"]}
    return {"type": kind, **where, "table": f"{table}__quarantine" if quarantine else table}


def resume(
    run_id: str,
    *,
    data: Mapping[str, Any] | None = None,
    settings: Settings | None = None,
    on_progress: OnProgress | None = None,
    check: bool = False,
) -> RunResult:
    """Go on with a run from its checkpoints with the spec it started with; ``data`` rebinds its Python sources."""

    async def go() -> RunResult:
        with bind(data or {}):
            async with Runtime(_settings(settings)) as runtime:
                listener = _listener(on_progress) if on_progress is not None else None
                return await runtime.resume(run_id, listener=listener)

    result = _run_sync(go)
    if check and not result.ok:
        raise _failed(result)
    return result


def _failed(result: RunResult) -> RunFailedError:
    """The error of a run that did not succeed, in the words the CLI prints after its summary."""
    failure = result.failure
    step = failure.next_step if failure is not None else f"go on from the checkpoints: agent-etl resume {result.run_id}"
    return RunFailedError(
        str(result.error or result.status),
        run_id=result.run_id,
        remedy=failure.remedy if failure is not None else None,
        hint=f"see the decisions: agent-etl runs show {result.run_id}; {step}",
        result=result,
    )


def _from_python(failure: RunFailure) -> RunFailure:
    """A pipeline built in Python has no spec file to give `agent-etl run`: the next step says to run it again."""
    command = f"agent-etl run {Path(PYTHON_SPEC).resolve()}"
    return failure.model_copy(update={"next_step": failure.next_step.replace(command, "pipeline.run() again")})


def _listener(on_progress: OnProgress) -> Callable[[RunState, RunEvent], None]:
    def listener(state: RunState, event: RunEvent) -> None:
        try:
            on_progress(Progress(event, state.to_dict(datetime.now(UTC))))
        except Exception:  # the monitor folds every event: one broken callback must not stop it
            log.exception("progress callback %r failed on %s; the run goes on", on_progress, event.kind)

    return listener


def _plain(value: Any, where: str) -> Any:
    """A spec fragment (a model, a dict, a list) as YAML-ready data; secrets only as references, never as values."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="python", by_alias=True, exclude_unset=True)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        if not secrets.is_reference(secret):
            raise ConfigurationError(
                "a secret given as its value would be stored with the run's spec",
                where=where,
                hint="give a reference instead: '${env:NAME}' or '${file:/run/secrets/name}'",
            )
        return secret
    if isinstance(value, Path):
        return str(value)
    return value


def _python_refs(loaded: LoadedSpec) -> set[str]:
    return {s.ref for p in loaded.pipelines for s in p.sources.values() if s.type == "python"}


def _base(loaded: LoadedSpec) -> Path:
    return Path(loaded.file).resolve().parent


def _run_sync(start: Callable[[], Coroutine[Any, Any, RunResult]]) -> RunResult:
    """Run to the end from synchronous code, also where an event loop already runs (Jupyter, some task runners)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(start())
    with ThreadPoolExecutor(1, thread_name_prefix="agent-etl-run") as pool:  # a loop of its own, in its own thread
        return pool.submit(asyncio.run, start()).result()


def _settings(settings: Settings | None) -> Settings:
    return settings if settings is not None else load_settings()
