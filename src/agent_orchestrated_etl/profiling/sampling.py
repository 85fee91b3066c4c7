"""Sampling a stream of Arrow batches: random, reservoir, systematic and stratified.

Every sampler takes batches and returns one Arrow table, and every one is
seeded, so a sample can be drawn again. Selection works on whole batches with
Arrow index arrays; Python touches only the chosen rows' positions.

- ``random``: each row kept with probability size/total (the total must be known,
  say from a counting pass); the sample's size varies around ``size``.
- ``reservoir``: exactly ``size`` rows (or all, if fewer) from a stream of unknown
  length, uniformly, in one pass (Li's algorithm L: it draws a random number per
  replacement, not per row, so it is fast on long streams).
- ``systematic``: every k-th row from a random start in [0, k).
- ``stratified``: a reservoir per value of a column, then each stratum's share of
  ``size`` in proportion to its rows (at least one row each).
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

Method = Literal["random", "reservoir", "systematic", "stratified"]
MAX_STRATA = 10_000


@dataclass(frozen=True)
class SampleSpec:
    method: Method
    size: int
    seed: int = 0
    by: str | None = None  # the stratifying column

    def describe(self) -> str:
        by = f" by {self.by}" if self.by else ""
        return f"{self.method}{by} sample of {self.size:,} rows (seed {self.seed})"


def sample(
    batches: Iterable[pa.RecordBatch], spec: SampleSpec, *, schema: pa.Schema, total: int | None = None
) -> pa.Table:
    if spec.size < 1:
        raise ValueError("a sample has at least one row")
    if spec.method == "reservoir":
        return reservoir(batches, spec.size, seed=spec.seed, schema=schema)
    if spec.method == "stratified":
        if spec.by is None:
            raise ValueError("a stratified sample needs the column to stratify by")
        return stratified(batches, spec.by, spec.size, seed=spec.seed, schema=schema)
    if total is None:
        raise ValueError(f"a {spec.method} sample needs the total row count")
    if spec.method == "random":
        return bernoulli(batches, spec.size / total if total else 1.0, seed=spec.seed, schema=schema)
    return systematic(batches, max(1, total // spec.size), seed=spec.seed, schema=schema)


def bernoulli(batches: Iterable[pa.RecordBatch], rate: float, *, seed: int, schema: pa.Schema) -> pa.Table:
    rng = _random.Random(seed)
    # Gaps between kept rows are geometric, so the cost is per kept row, not per row.
    following, offset, kept = _gap(rng, rate), 0, []
    for batch in batches:
        picks = []
        while following < offset + batch.num_rows:
            picks.append(following - offset)
            following += 1 + _gap(rng, rate)
        offset += batch.num_rows
        kept.append(batch.take(pa.array(picks, pa.int64())))
    return _table(kept, schema)


def _gap(rng: _random.Random, rate: float) -> int:
    return int(math.log(1.0 - rng.random()) / math.log(1.0 - rate)) if rate < 1 else 0


def systematic(batches: Iterable[pa.RecordBatch], step: int, *, seed: int, schema: pa.Schema) -> pa.Table:
    following = _random.Random(seed).randrange(step)  # index of the next row to take, counted from the stream's start
    offset, kept = 0, []
    for batch in batches:
        if following < offset + batch.num_rows:
            picks = pa.array(range(following - offset, batch.num_rows, step), pa.int64())
            kept.append(batch.take(picks))
            following += step * len(picks)
        offset += batch.num_rows
    return _table(kept, schema)


class Reservoir:
    """Algorithm L over row positions; chosen rows are taken from each batch as it passes."""

    def __init__(self, size: int, rng: _random.Random) -> None:
        self.size, self.rng = size, rng
        self.seen = 0
        self.chunks: list[pa.RecordBatch] = []
        self.slots: list[tuple[int, int]] = []  # slot -> (chunk, row in chunk)
        self.weight = math.exp(math.log(rng.random()) / size)
        self.next = size + self._skip()  # position of the next row to take once the slots are full

    def _skip(self) -> int:
        return int(math.log(self.rng.random()) / math.log(1 - self.weight)) if self.weight < 1 else 0

    def offer(self, batch: pa.RecordBatch) -> None:
        start, end = self.seen, self.seen + batch.num_rows
        fill = min(self.size - len(self.slots), batch.num_rows)
        picks = list(range(fill))
        targets = list(range(len(self.slots), len(self.slots) + fill))
        while self.next < end:
            picks.append(self.next - start)
            targets.append(self.rng.randrange(self.size))
            self.weight *= math.exp(math.log(self.rng.random()) / self.size)
            self.next += 1 + self._skip()
        self.seen = end
        if not picks:
            return
        chunk = len(self.chunks)
        self.chunks.append(batch.take(pa.array(picks, pa.int64())))
        for row, slot in enumerate(targets):
            if slot == len(self.slots):
                self.slots.append((chunk, row))
            else:
                self.slots[slot] = (chunk, row)
        if len(self.chunks) > 64:
            self._compact()

    def _compact(self) -> None:
        """Keep only the rows some slot points at, so memory stays near ``size`` rows."""
        table = self.table().combine_chunks()
        self.chunks = table.to_batches()
        self.slots = [(0, i) for i in range(table.num_rows)]

    def table(self) -> pa.Table:
        combined = pa.Table.from_batches(self.chunks)
        offsets = [0]
        for chunk in self.chunks:
            offsets.append(offsets[-1] + chunk.num_rows)
        return combined.take(pa.array([offsets[c] + r for c, r in self.slots], pa.int64()))


def reservoir(batches: Iterable[pa.RecordBatch], size: int, *, seed: int, schema: pa.Schema) -> pa.Table:
    pool = Reservoir(size, _random.Random(seed))
    for batch in batches:
        pool.offer(batch)
    return pool.table() if pool.slots else schema.empty_table()


def stratified(batches: Iterable[pa.RecordBatch], by: str, size: int, *, seed: int, schema: pa.Schema) -> pa.Table:
    rng = _random.Random(seed)
    pools: dict[object, Reservoir] = {}
    for batch in batches:
        keys = batch.column(by)
        for key in pc.unique(keys).to_pylist():
            if key not in pools:
                if len(pools) >= MAX_STRATA:
                    raise ValueError(f"{by} has more than {MAX_STRATA:,} values; stratify by a coarser column")
                pools[key] = Reservoir(size, _random.Random(rng.random()))
            mask = pc.is_null(keys) if key is None else pc.fill_null(pc.equal(keys, pa.scalar(key, keys.type)), False)
            pools[key].offer(batch.filter(mask))
    total = sum(p.seen for p in pools.values())
    parts = []
    for key in sorted(pools, key=repr):
        pool = pools[key]
        share = max(1, round(size * pool.seen / total))
        table = pool.table()
        # Slots fill in arrival order, so cut a shuffled reservoir, not its first rows.
        order = list(range(table.num_rows))
        rng.shuffle(order)
        parts.append(table.take(pa.array(order[:share], pa.int64())))
    return pa.concat_tables(parts) if parts else schema.empty_table()


def _table(batches: list[pa.RecordBatch], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_batches([b for b in batches if b.num_rows], schema=schema)


def head(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """The first ``rows`` rows of a stream."""
    left = rows
    for batch in batches:
        if left <= 0:
            return
        yield batch.slice(0, left)
        left -= batch.num_rows
