"""A dedupe over more data than DuckDB's memory limit spills to disk and still gives the exact answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from agent_orchestrated_etl.connectors.base import Position
from agent_orchestrated_etl.transform.chain import Point, StreamChain
from agent_orchestrated_etl.transform.context import TaskContext
from agent_orchestrated_etl.transform.rows import Numbering, Origins
from agent_orchestrated_etl.transform.steps import TransformSpec
from agent_orchestrated_etl.transform.workspace import Workspace, duckdb_memory_limit

ROWS, KEYS, BATCH = 2_000_000, 500_000, 100_000


def batches() -> Iterator[tuple[pa.RecordBatch, Position]]:
    """~190 MB of Arrow data, made batch by batch so the test itself holds little of it."""
    padding = pa.array(["x" * 64] * BATCH)
    for start in range(0, ROWS, BATCH):
        ids = pa.array(range(start, start + BATCH), pa.int64())
        keys = pc.divide(ids, ROWS // KEYS)  # integer division: each key on ROWS // KEYS consecutive rows
        yield pa.record_batch({"id": ids, "key": keys, "pad": padding}), Position("big.parquet", row=start + 1)


def test_dedupe_bigger_than_memory_spills_and_is_exact(tmp_path: Path) -> None:
    memory = 256 << 20
    assert duckdb_memory_limit(memory) == "64MB"
    workspace = Workspace(tmp_path / "run", memory_limit_bytes=memory)
    transform = TransformSpec.model_validate(
        {"name": "t", "input": "src", "steps": [{"dedupe": {"keys": ["key"], "keep": "last"}}]}
    )
    origins = Origins()
    task = TaskContext(workspace, "r", "t", "d", BATCH, origins.locate, lambda rows: None)
    chain = StreamChain(task, [Point("src", None, -1, []), Point("t", transform, 0, [])])
    schema = pa.schema([("id", pa.int64()), ("key", pa.int64()), ("pad", pa.string()), ("__agent_etl_row", pa.int64())])
    rows, spilled, id_sum = 0, 0, 0
    try:
        for batch in chain.run(schema, Numbering(origins).number(batches())):
            if not spilled:
                spilled = sum(f.stat().st_size for f in (tmp_path / "run" / "spill").rglob("*") if f.is_file())
            rows += batch.num_rows
            id_sum += pc.sum(batch.column("id")).as_py()
    finally:
        chain.close()
        workspace.close()
    assert rows == KEYS
    step = ROWS // KEYS
    assert id_sum == sum(k * step + step - 1 for k in range(KEYS))  # keep: last is the highest id of each key
    assert spilled > 64 << 20  # more than the memory limit went to the spill directory
