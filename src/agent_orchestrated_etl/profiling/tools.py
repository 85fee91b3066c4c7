"""The ``profile`` and ``sample`` tools: what an agent calls to look at a source before moving it.

A tool names its source as the CLI does (a file, a glob, or spec.yaml:source), or
by name when it runs inside a run whose spec has that source.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from agent_orchestrated_etl.profiling.run import profile_opened
from agent_orchestrated_etl.profiling.sampling import SampleSpec, sample
from agent_orchestrated_etl.profiling.sources import Opened, open_source


class SampleOptions(BaseModel):
    method: Literal["reservoir", "random", "systematic", "stratified"] = "reservoir"
    size: int = Field(10_000, ge=1, description="Rows in the sample.")
    seed: int = 0
    by: str | None = Field(None, description="Column to stratify by (method stratified).")


class ProfileInput(BaseModel):
    source: str = Field(description="A data file or glob, spec.yaml:source_name, or a source of the current run.")
    sample: SampleOptions | None = Field(None, description="Profile a sample instead of every row.")


class ProfileOutput(BaseModel):
    profile: dict[str, Any]


class SampleInput(BaseModel):
    source: str = Field(description="A data file or glob, spec.yaml:source_name, or a source of the current run.")
    sample: SampleOptions = Field(default_factory=SampleOptions)
    show: int = Field(20, ge=0, le=1000, description="How many of the sampled rows to return.")


class SampleOutput(BaseModel):
    rows_sampled: int
    sampling: str
    columns: list[str]
    rows: list[dict[str, Any]]


def _open(reference: str, run: Any) -> Opened:
    if run is not None and reference in run.spec.sources:
        return Opened(reference, run.reader(None, reference))
    return open_source(reference)


def profile_tool(arguments: ProfileInput, run: Any) -> dict[str, Any]:
    options = arguments.sample
    spec = SampleSpec(options.method, options.size, options.seed, options.by) if options else None
    result = profile_opened(_open(arguments.source, run), spec)
    return {"profile": json.loads(json.dumps(result.to_dict(), default=str))}


def sample_tool(arguments: SampleInput, run: Any) -> dict[str, Any]:
    opened = _open(arguments.source, run)
    options = arguments.sample
    spec = SampleSpec(options.method, options.size, options.seed, options.by)
    total = None
    if spec.method in ("random", "systematic"):
        _, counting = opened.batches()
        total = sum(b.num_rows for b in counting)
    schema, batches = opened.batches()
    table = sample(batches, spec, schema=schema, total=total)
    rows = json.loads(json.dumps(table.slice(0, arguments.show).to_pylist(), default=str))
    return {"rows_sampled": table.num_rows, "sampling": spec.describe(), "columns": table.column_names, "rows": rows}
