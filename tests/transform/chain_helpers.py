"""Run transform steps and checks over an Arrow table through the engine a task uses, without agents."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import TypeAdapter

from agent_orchestrated_etl.connectors.base import Position
from agent_orchestrated_etl.quality.checks import QualityCheck
from agent_orchestrated_etl.quality.evaluate import visible
from agent_orchestrated_etl.quality.verdicts import report
from agent_orchestrated_etl.transform.chain import Point, StreamChain
from agent_orchestrated_etl.transform.context import TaskContext
from agent_orchestrated_etl.transform.rows import Numbering, Origins
from agent_orchestrated_etl.transform.steps import TransformSpec
from agent_orchestrated_etl.transform.workspace import Workspace

CHECKS = TypeAdapter(list[QualityCheck])


@dataclass
class Outcome:
    table: pa.Table
    quarantine: list[dict[str, Any]]
    results: list[dict[str, Any]]

    def rows(self) -> list[dict[str, Any]]:
        return self.table.to_pylist()

    def verdicts(self) -> dict[str, tuple[bool, str]]:
        return {r["check"]: (r["passed"], r["message"]) for r in report(self.results)}


def run_chain(
    tmp_path: Path,
    table: pa.Table,
    steps: list[dict[str, Any]] | None = None,
    checks: list[dict[str, Any]] | None = None,
    *,
    batch_rows: int = 2,
    memory_limit: int = 256 << 20,
) -> Outcome:
    """``table`` (as batches of ``batch_rows`` from a file 'in.csv') through the steps, then the checks."""
    transform = TransformSpec.model_validate({"name": "t", "input": "src", "steps": steps}) if steps else None
    parsed = list(enumerate(CHECKS.validate_python(checks or [])))
    points = [Point("src", None, -1, [(i, c) for i, c in parsed if c.input == "src"])]
    final = [(i, c) for i, c in parsed if c.input is None]
    if transform is not None:
        points.append(Point("t", transform, 0, final))
    else:
        points[0].checks += final
    workspace = Workspace(tmp_path / "run", memory_limit_bytes=memory_limit)
    quarantined: list[pa.RecordBatch] = []
    origins = Origins()
    chain = StreamChain(
        TaskContext(workspace, "r1", "t1", "dest", batch_rows, origins.locate, quarantined.append), points
    )
    try:
        located = []
        row = 1
        for batch in table.to_batches(max_chunksize=batch_rows):
            located.append((batch, Position("in.csv", row=row)))
            row += batch.num_rows
        batches = Numbering(origins).number(iter(located))
        schema = table.schema.append(pa.field("__agent_etl_row", pa.int64()))
        out = [visible(b) for b in chain.run(schema, batches)]
        results = chain.results()
    finally:
        chain.close()
        workspace.close()
    quarantine = [
        {**{k: v for k, v in r.items() if k != "row_json"}, "row": json.loads(r["row_json"])}
        for b in quarantined
        for r in b.to_pylist()
    ]
    out_table = pa.Table.from_batches(out) if out else pa.Table.from_pylist([])
    return Outcome(out_table, quarantine, results)
