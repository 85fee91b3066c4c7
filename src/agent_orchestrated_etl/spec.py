"""The pipeline spec: Pydantic models, YAML loading with line numbers, secret references (secrets.py).

A spec names sources, transforms over them, quality checks and one or more
destinations. Source and destination models come from the connector registry,
so a new connector adds its own model without touching this module.
"""

from __future__ import annotations

import hashlib
import re
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from agent_orchestrated_etl import redaction, secrets
from agent_orchestrated_etl.config import load_settings
from agent_orchestrated_etl.connectors.registry import destination_spec_models, source_spec_models
from agent_orchestrated_etl.exceptions import ConfigurationError, SpecError, SpecProblem
from agent_orchestrated_etl.quality.checks import QualityCheck, ReferentialCheck
from agent_orchestrated_etl.transform.steps import TransformSpec
from agent_orchestrated_etl.yaml_locations import SpecLimits, check_size, compose_bounded, locate_problem, node_lines

_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RetryPolicy(_Model):
    attempts: int = Field(3, ge=1, le=100, description="Tries per task, the first included.")
    backoff_seconds: float = Field(1.0, ge=0, description="First wait; doubles each retry, with jitter.")
    max_backoff_seconds: float = Field(60.0, ge=0)
    task_timeout_seconds: float | None = Field(
        None,
        gt=0,
        description="A task running longer is stopped and retried (split in two, where its source can split it).",
    )
    on_bad_data: Literal["fail", "quarantine"] = Field(
        "fail",
        description=(
            "A partition that cannot be read (a value no Arrow type holds): fail the run, or narrow it down by"
            " splitting and quarantine the smallest range that still fails."
        ),
    )


class SLASpec(_Model):
    max_duration: str | None = Field(None, description="e.g. '15m'; evaluated by the monitor under `serve`.")
    freshness: str | None = None
    min_rows: int | None = Field(None, ge=0)
    max_error_rate: float | None = Field(None, ge=0, le=1)


class ScheduleSpec(_Model):
    cron: str = Field(description="Five-field cron expression, in UTC, e.g. '*/15 * * * *'.")
    overlap: Literal["skip", "queue"] = Field(
        "skip", description="A run still going when the next is due: skip that time, or queue one run for when it ends."
    )
    missed: Literal["skip", "run_once"] = Field(
        "run_once", description="Due times missed while serve was down: run once at start, or skip them."
    )


class AlertSpec(_Model):
    webhook: str | None = None
    slack: bool = False


class _Located(ValueError):
    """A problem of the whole pipeline that belongs to one key: ``parse_spec`` reports that key's line."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path


def _union(models: tuple[type[BaseModel], ...]) -> Any:
    return Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007 - built at runtime


if TYPE_CHECKING:
    # The unions are built at runtime from the connector registry, which mypy cannot evaluate:
    # to it a spec field is Any; each connector's own code sees its spec model through Source[S]/Destination[D].
    SourceSpec: TypeAlias = Any
    DestinationSpec: TypeAlias = Any
else:
    SourceSpec = _union(source_spec_models())
    DestinationSpec = _union(destination_spec_models())


class PipelineSpec(_Model):
    name: str = Field(pattern=_NAME)
    description: str | None = None
    sources: dict[str, SourceSpec] = Field(min_length=1)
    transforms: list[TransformSpec] = Field(default_factory=list)
    quality: list[QualityCheck] = Field(default_factory=list)
    destination: DestinationSpec | None = None
    destinations: list[DestinationSpec] = Field(default_factory=list)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    depends_on: list[str] = Field(
        default_factory=list, description="In a workflow: pipelines that must succeed before this one starts."
    )
    schedule: str | ScheduleSpec | None = Field(
        None, description="Cron expression, or {cron, overlap, missed}; used by `agent-etl serve`."
    )
    sla: SLASpec | None = None
    alerts: AlertSpec | None = None

    @field_validator("sources")
    @classmethod
    def _source_names(cls, sources: dict[str, Any]) -> dict[str, Any]:
        for name in sources:
            if not re.match(_NAME, name):
                raise ValueError(f"source name {name!r} must be a SQL identifier (letters, digits, _)")
        return sources

    @model_validator(mode="after")
    def _wire(self) -> PipelineSpec:
        if self.destination is not None and self.destinations:
            raise ValueError("give either `destination` or `destinations`, not both")
        if self.destination is None and not self.destinations:
            raise ValueError("a pipeline needs a `destination` (or a list of `destinations`)")
        known = set(self.sources)
        for transform in self.transforms:
            if transform.name in known:
                raise ValueError(f"transform {transform.name!r} reuses the name of a source or transform")
            if transform.inputs is None and transform.sql is not None:  # steps: transforms set their own inputs
                transform.inputs = sorted(n for n in known if re.search(rf"\b{n}\b", transform.sql))
            for name in transform.inputs or []:
                if name not in known:
                    raise ValueError(
                        f"transform {transform.name!r} reads {name!r}, which is not a source or an earlier transform"
                    )
            known.add(transform.name)
        for check in self.quality:
            names = [check.input] if check.input is not None else []
            if isinstance(check, ReferentialCheck):
                names.append(check.referential.target[0])
            for name in names:
                if name not in known:
                    raise ValueError(f"check {check.label} reads {name!r}, which is not a source or transform")
        last = (
            self.transforms[-1].name
            if self.transforms
            else (next(iter(self.sources)) if len(self.sources) == 1 else None)
        )
        for dest in self.all_destinations:
            if dest.input is None:
                if last is None:
                    raise ValueError("with several sources and no transform, each destination needs `input:`")
                dest.input = last
            elif dest.input not in known:
                raise ValueError(f"destination input {dest.input!r} is not a source or transform")
        self._check_tables()
        return self

    def _check_tables(self) -> None:
        """Where rows of a source with ``tables:`` or ``schema:`` may go: only straight into table destinations."""
        several = {name for name, source in self.sources.items() if getattr(source, "reads_tables", False)}
        for index, transform in enumerate(self.transforms):
            if read := sorted(several & set(transform.inputs or [])):
                raise _Located(
                    ("transforms", index),
                    f"transform {transform.name!r} reads {read[0]!r}, which reads several tables; transforms over"
                    " tables: or schema: are not supported yet: give the table a source of its own (table: ...)",
                )
        for index, check in enumerate(self.quality):
            if isinstance(check, ReferentialCheck) and check.referential.target[0] in several:
                raise _Located(
                    ("quality", index),
                    f"check {check.label} refers to {check.referential.target[0]!r}, which reads several tables; refer"
                    " to a source with table:",
                )
        keys: list[tuple[str | int, ...]] = (
            [("destination",)]
            if self.destination is not None
            else [("destinations", i) for i in range(len(self.destinations))]
        )
        for key, dest in zip(keys, self.all_destinations, strict=True):
            named = "table" in type(dest).model_fields
            if dest.input in several:
                if not named:
                    raise _Located(
                        key,
                        f"a {dest.type} destination takes one table, and input {dest.input!r} reads several; load them"
                        " into a database destination",
                    )
                if dest.table is not None:
                    raise _Located(
                        (*key, "table"),
                        f"input {dest.input!r} reads several tables, each into a table of its own name: drop table:"
                        " (table_prefix: puts a prefix before each name)",
                    )
                continue
            if named and dest.table is None:
                raise _Located(
                    (*key, "table"),
                    "field required (only an input with tables: or schema: lands in tables named after its own)",
                )
            if getattr(dest, "table_prefix", None) is not None:
                raise _Located(
                    (*key, "table_prefix"),
                    "table_prefix only applies when the input reads several tables (tables: or schema:); name the"
                    " target with table:",
                )
            if dest.write == "merge" and not dest.primary_key:
                raise _Located((*key, "primary_key"), "write: merge needs primary_key: [column, ...]")

    @property
    def all_destinations(self) -> list[Any]:
        return [self.destination] if self.destination is not None else list(self.destinations)

    def rebased(self, base: Path) -> PipelineSpec:
        """The spec with every relative connector path made relative to ``base``."""
        return self.model_copy(
            update={
                "sources": {name: s.rebased(base) for name, s in self.sources.items()},
                "destination": self.destination.rebased(base) if self.destination is not None else None,
                "destinations": [d.rebased(base) for d in self.destinations],
            }
        )


class WorkflowSpec(_Model):
    """Several pipelines run as one: each starts when the pipelines it depends on have succeeded."""

    workflow: str = Field(pattern=_NAME, description="The workflow's name.")
    description: str | None = None
    pipelines: list[PipelineSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _dependencies(self) -> WorkflowSpec:
        names = [p.name for p in self.pipelines]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"pipeline names must be unique in a workflow: {duplicates}")
        for pipeline in self.pipelines:
            unknown = [d for d in pipeline.depends_on if d not in names]
            if unknown:
                raise ValueError(f"pipeline {pipeline.name!r} depends on unknown pipeline(s) {unknown}")
        try:
            self.order()
        except CycleError as exc:
            raise ValueError(f"pipelines depend on each other in a cycle: {' -> '.join(exc.args[1])}") from None
        return self

    def order(self) -> list[str]:
        return list(TopologicalSorter({p.name: set(p.depends_on) for p in self.pipelines}).static_order())


class LoadedSpec(BaseModel):
    """A validated spec with where it came from; the text is kept raw (env refs unresolved).

    It holds either one pipeline or a workflow of several.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    pipeline: PipelineSpec | None = None
    workflow: WorkflowSpec | None = None
    file: str
    text: str

    @property
    def name(self) -> str:
        return self.workflow.workflow if self.workflow else self.pipelines[0].name

    @property
    def pipelines(self) -> list[PipelineSpec]:
        """The pipeline of a spec, or every pipeline of a workflow."""
        if self.workflow is not None:
            return self.workflow.pipelines
        return [self.pipeline] if self.pipeline is not None else []

    def child(self, pipeline: PipelineSpec) -> LoadedSpec:
        """One pipeline of a workflow as a spec of its own, so its run can be resumed alone."""
        text = yaml.safe_dump(pipeline.model_dump(mode="json", exclude_defaults=True), sort_keys=False)
        return LoadedSpec(pipeline=pipeline, file=self.file, text=text)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def load_spec(path: str | Path, *, limits: SpecLimits | None = None) -> LoadedSpec:
    """Read and validate a spec file; raises SpecError listing every problem with its line."""
    path = Path(path)
    limits = limits or _limits()
    try:
        with path.open(encoding="utf-8") as file:
            text = file.read(limits.max_bytes + 1)  # characters, so never more than the limit's bytes plus one char
    except FileNotFoundError:
        raise ConfigurationError(f"spec file not found: {path}", hint="check the path") from None
    check_size(text, limits, str(path))
    return parse_spec(text, file=str(path), limits=limits)


def _limits() -> SpecLimits:
    return load_settings().spec_limits


def parse_spec(text: str, *, file: str = "<spec>", limits: SpecLimits | None = None) -> LoadedSpec:
    """Validate a spec's text; its size, node count (aliases expanded) and depth are bounded before anything expands."""
    try:
        root, data = compose_bounded(text, _Loader, limits or _limits(), file)
        lines = node_lines(root)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        if isinstance(exc, yaml.reader.ReaderError):  # a character YAML refuses: it has a position, not a mark
            line = text.count("\n", 0, exc.position) + 1
        raise SpecError([SpecProblem(file, line, "", f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    if not isinstance(data, dict):
        raise SpecError([SpecProblem(file, 1, "", "a spec is a YAML mapping with name, sources and destination")])
    is_workflow = "workflow" in data or "pipelines" in data
    try:
        if is_workflow:
            return LoadedSpec(workflow=WorkflowSpec.model_validate(data), file=file, text=text)
        pipeline = PipelineSpec.model_validate(data)
        if pipeline.depends_on:
            raise SpecError(
                [
                    SpecProblem(
                        file,
                        lines.get(("depends_on",)),
                        "depends_on",
                        "only pipelines inside a workflow (`pipelines:`) can depend on others",
                    )
                ]
            )
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            located = err.get("ctx", {}).get("error")
            if isinstance(located, _Located):
                path, line = locate_problem((*err["loc"], *located.path), lines, missing_key=True)
            else:
                path, line = locate_problem(err["loc"], lines, missing_key=err["type"] == "missing")
            problems.append(SpecProblem(file, line, path, _message(err)))
        raise SpecError(problems) from None
    return LoadedSpec(pipeline=pipeline, file=file, text=text)


def _message(err: Any) -> str:
    message = str(err["msg"])
    if err["type"] == "missing":
        return "field required"
    if err["type"] == "extra_forbidden":
        return "unknown field (check the spelling; `agent-etl schema` lists the fields)"
    if err["type"] == "string_pattern_mismatch":
        return "must be a plain name: letters, digits and _, not starting with a digit"
    if err["type"] == "union_tag_invalid":
        return f"unknown type {err['ctx']['tag']}; expected one of {err['ctx']['expected_tags']}"
    return message.removeprefix("Value error, ")


def resolve_env(value: Any, *, where: str = "") -> Any:
    """Replace every secret reference (``${env:NAME}``, ``${file:path}``, ``${aws-sm:name#key}``) in a spec fragment.

    At run time only: the resolved values live in memory for the run; records keep the raw spec.
    Every secret among them is registered for redaction (redaction.py).
    """
    if isinstance(value, BaseModel):
        resolved = resolve_env(value.model_dump(mode="python", by_alias=True, exclude_unset=False), where=where)
        return type(value).model_validate(resolved)
    if isinstance(value, dict):
        return {k: resolve_env(v, where=f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env(v, where=f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, SecretStr):  # credentials are the usual place for a reference
        secret = resolve_env(value.get_secret_value(), where=where)
        redaction.register(secret)
        return SecretStr(secret)
    if isinstance(value, str):
        value = secrets.resolve(value, where=where, from_spec=True)
        redaction.register_resolved(where, value)
    return value


def unset_variables(loaded: LoadedSpec) -> list[SpecProblem]:
    """Every secret reference of the spec that cannot be resolved now, with its line (as run would fail on it)."""
    problems: list[SpecProblem] = []

    def walk(node: yaml.Node, path: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                walk(value, f"{path}.{key.value}" if path else str(key.value))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, f"{path}[{index}]")
        elif isinstance(node, yaml.ScalarNode) and isinstance(node.value, str):
            for problem in secrets.problems(node.value):
                problems.append(SpecProblem(loaded.file, node.start_mark.line + 1, path, problem))

    root = yaml.compose(loaded.text, Loader=_Loader)
    if root is not None:
        walk(root, "")
    return problems


def check_variables(loaded: LoadedSpec) -> None:
    """Fail before a run starts, with every unset variable's line, rather than mid-plan without one."""
    if problems := unset_variables(loaded):
        raise SpecError(problems)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a spec file: a pipeline, or a workflow of pipelines (as ``parse_spec`` takes them)."""
    from pydantic.json_schema import models_json_schema

    refs, schema = models_json_schema([(PipelineSpec, "validation"), (WorkflowSpec, "validation")])
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "agent-etl pipeline or workflow",
        "anyOf": [refs[(PipelineSpec, "validation")], refs[(WorkflowSpec, "validation")]],
        **schema,
    }
