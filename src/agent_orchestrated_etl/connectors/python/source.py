"""Python data as a source: what ``data.bind`` bound under the spec's ``ref``, streamed in batches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from agent_orchestrated_etl.connectors.base import Partition, Position, Source
from agent_orchestrated_etl.connectors.nested import RecordsToArrow
from agent_orchestrated_etl.connectors.python.data import bound, chunks, claim, one_shot
from agent_orchestrated_etl.connectors.python.spec import PythonSourceSpec

__all__ = ["PythonSource", "PythonSourceSpec"]


class PythonSource(Source[PythonSourceSpec]):
    spec_model = PythonSourceSpec

    def __init__(self, name: str, spec: PythonSourceSpec, *, batch_rows: int) -> None:
        super().__init__(name, spec, batch_rows=batch_rows)
        self._rejected: list[tuple[dict[str, Any], str, Position]] = []

    @property
    def where(self) -> str:
        return f"python source {self.spec.ref}"

    def describe(self) -> str:
        return f"python {self.spec.ref}"

    def read(self, partition: Partition) -> Iterator[tuple[pa.RecordBatch, Position]]:
        self._rejected = []
        records = RecordsToArrow(self.spec.nested)
        origin = self.describe()
        for chunk in chunks(claim(self.spec.ref), self.batch_rows, records, self.where):
            self._rejected += [
                (row, reason, Position(origin, row=chunk.start + index + 1)) for row, reason, index in chunk.rejected
            ]
            if chunk.batch is not None and chunk.batch.num_rows:
                yield chunk.batch, Position(origin, row=chunk.start + 1)

    def quarantined(self) -> Iterator[tuple[dict[str, Any], str, Position]]:
        return iter(self._rejected)

    def reread_cost(self) -> str | None:
        if one_shot(bound(self.spec.ref)):
            return f"{self.describe()} is an iterator that can be read once"
        return None
