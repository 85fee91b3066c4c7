"""Reading a source to the end the way a task does, for the connector tests."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from agent_orchestrated_etl.connectors.base import Source
from agent_orchestrated_etl.connectors.registry import source_class
from agent_orchestrated_etl.spec import parse_spec


def make_source(spec: dict[str, Any], *, name: str = "src", batch_rows: int = 131_072) -> Source:
    """A source built from a spec fragment, validated through the real pipeline spec."""
    import json

    text = json.dumps({"name": "t", "sources": {name: spec}, "destination": {"type": "file", "path": "unused"}})
    model = parse_spec(text).pipeline.sources[name]
    return source_class(model.type)(name, model, batch_rows=batch_rows)


def read_all(source: Source) -> tuple[pa.Table, list[tuple[dict[str, Any], str, str]]]:
    """Every partition's rows as one table, and the rejected rows as (row, reason, position)."""
    batches = [batch for partition in source.partitions() for batch, _ in source.read(partition)]
    rejected = [(row, reason, str(position)) for row, reason, position in source.quarantined()]
    # batches may widen along the stream; the permissive concat puts them in the last schema
    table = (
        pa.concat_tables([pa.Table.from_batches([b]) for b in batches], promote_options="permissive")
        if batches
        else pa.table({})
    )
    return table, rejected
