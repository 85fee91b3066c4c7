"""Row ordinals: a hidden column that lets a row found anywhere downstream name its source position.

A task numbers the rows it reads (partition ``p`` starts at ``p << 40``, so staged
partitions never collide) and notes where each batch came from. A quarantined
row, even after filters, joins or a dedupe, then maps back to its file and record.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from agent_orchestrated_etl.connectors.base import Position
from agent_orchestrated_etl.transform.sql import ROW

PARTITION_SHIFT = 40


class Origins:
    """Ordinal -> Position, from the first ordinal of each batch and where that batch came from."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._positions: list[Position] = []
        self._lock = threading.Lock()

    def add(self, first: int, position: Position) -> None:
        with self._lock:
            index = bisect.bisect_right(self._starts, first)
            self._starts.insert(index, first)
            self._positions.insert(index, position)

    def locate(self, ordinal: int | None) -> Position | None:
        if ordinal is None:
            return None
        with self._lock:
            index = bisect.bisect_right(self._starts, ordinal) - 1
            if index < 0:
                return None
            start, position = self._starts[index], self._positions[index]
        offset = ordinal - start
        if position.row is not None:
            return Position(position.origin, row=position.row + offset)
        return position if offset == 0 else Position(position.origin)


class Numbering:
    """Adds the ROW column to a stream of located batches and records their origins."""

    def __init__(self, origins: Origins, partition: int = 0) -> None:
        self.origins = origins
        self.next = partition << PARTITION_SHIFT
        self._base = pa.array([], pa.int64())

    def ordinals(self, count: int) -> pa.Array:
        # Slicing one 0..n-1 array and adding an offset is vectorised; building from range() is not.
        if len(self._base) < count:
            self._base = pa.array(range(max(count, 2 * len(self._base))), pa.int64())
        return pc.add(self._base.slice(0, count), pa.scalar(self.next, pa.int64()))

    def number(self, batches: Iterator[tuple[pa.RecordBatch, Position]]) -> Iterator[pa.RecordBatch]:
        for batch, position in batches:
            self.origins.add(self.next, position)
            numbered = batch.append_column(pa.field(ROW, pa.int64()), self.ordinals(batch.num_rows))
            self.next += batch.num_rows
            yield numbered
