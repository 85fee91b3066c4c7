"""What ``agent-etl profile SOURCE`` reads: a data file (or glob), or a source of a spec.

``data/orders.parquet`` and ``data/*.csv`` read the files with their format
inferred from the extension; ``pipeline.yaml:orders`` reads the source named
``orders`` of that spec, with its connector and options (``${env:...}``
resolved, paths relative to the spec file).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from agent_orchestrated_etl.connectors.base import Source
from agent_orchestrated_etl.connectors.registry import source_class
from agent_orchestrated_etl.exceptions import ConfigurationError, SourceNotFoundError

BATCH_ROWS = 131_072


@dataclass
class Opened:
    label: str
    source: Source

    def batches(self) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        """The schema (from the first batch) and every batch of every partition."""

        def every() -> Iterator[pa.RecordBatch]:
            for partition in self.source.partitions():
                for batch, _ in self.source.read(partition):
                    yield batch

        stream = every()
        first = next(stream, None)
        if first is None:
            raise SourceNotFoundError(
                f"{self.label} has no rows to profile", hint="check the path or the source's query"
            )

        def again() -> Iterator[pa.RecordBatch]:
            yield first
            yield from stream

        return first.schema, again()

    def estimated_bytes(self) -> int | None:
        """The size on disk of a file source's partitions, to decide whether to sample."""
        sizes = [os.path.getsize(p.key) for p in self.source.partitions() if os.path.isfile(p.key)]
        return sum(sizes) if sizes else None


def source_name(reference: str) -> str:
    """The name a source goes by in a spec: the spec's name for it, or the file's stem."""
    spec_file, _, name = reference.rpartition(":")
    if spec_file.endswith((".yaml", ".yml")) and name:
        return name
    stem = re.sub(r"[^A-Za-z0-9_]", "_", Path(reference.replace("*", "")).stem) or "source"
    return stem if not stem[0].isdigit() else f"_{stem}"


def open_source(reference: str) -> Opened:
    spec_file, _, name = reference.rpartition(":")
    if spec_file.endswith((".yaml", ".yml")) and name:
        return _from_spec(Path(spec_file), name)
    if not glob.glob(os.path.expanduser(reference)):
        raise SourceNotFoundError(
            f"no file matches {reference}",
            hint="give a data file (csv, jsonl, parquet), a glob, or spec.yaml:source_name",
        )
    spec = source_class("file").spec_model.model_validate({"type": "file", "path": reference})
    return Opened(reference, source_class("file")(source_name(reference), spec, batch_rows=BATCH_ROWS))


def _from_spec(spec_file: Path, name: str) -> Opened:
    from agent_orchestrated_etl.planning.expansion import expand, several_tables
    from agent_orchestrated_etl.spec import load_spec, resolve_env

    pipeline = load_spec(spec_file).pipeline
    if pipeline is None:
        raise ConfigurationError(
            f"{spec_file} is a workflow", hint="profile a source of one of its pipelines' spec files, or a data file"
        )
    several = several_tables(pipeline)
    if name not in pipeline.sources and name.partition(".")[0] not in several:
        raise ConfigurationError(
            f"{spec_file} has no source {name!r}", hint=f"its sources are {sorted(pipeline.sources)}"
        )
    if name in several:
        raise ConfigurationError(
            f"source {name} of {spec_file} reads several tables",
            hint=f"profile one at a time: {spec_file}:{name}.<table>",
        )
    pipeline = resolve_env(pipeline).rebased(spec_file.resolve().parent)
    if name not in pipeline.sources:  # crm.orders: one table of a multi-table source
        pipeline = expand(pipeline)[0]
        if name not in pipeline.sources:
            raise ConfigurationError(
                f"{spec_file} has no table {name!r}", hint=f"its tables: {', '.join(sorted(pipeline.sources))}"
            )
    spec = pipeline.sources[name]
    return Opened(f"{spec_file}:{name}", source_class(spec.type)(name, spec, batch_rows=BATCH_ROWS))
