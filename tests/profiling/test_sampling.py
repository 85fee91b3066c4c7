"""Sampling strategies: sizes, seeds, uniformity, proportions."""

from __future__ import annotations

import pyarrow as pa
import pytest

from agent_orchestrated_etl.profiling.sampling import MAX_STRATA, SampleSpec, sample

N = 100_000
TABLE = pa.table({"id": list(range(N)), "group": ["small" if i % 10 == 0 else "big" for i in range(N)]})


def draw(spec: SampleSpec, table: pa.Table = TABLE, chunk: int = 7_001) -> list[int]:
    out = sample(iter(table.to_batches(max_chunksize=chunk)), spec, schema=table.schema, total=table.num_rows)
    return out.column("id").to_pylist()


def deciles(ids: list[int]) -> list[int]:
    counts = [0] * 10
    for i in ids:
        counts[i * 10 // N] += 1
    return counts


def test_reservoir_has_exactly_its_size_is_uniform_and_repeatable() -> None:
    ids = draw(SampleSpec("reservoir", 10_000, seed=1))
    assert len(ids) == 10_000 and len(set(ids)) == 10_000
    assert all(850 <= c <= 1150 for c in deciles(ids)), deciles(ids)
    assert ids == draw(SampleSpec("reservoir", 10_000, seed=1), chunk=7_001)
    assert set(ids) != set(draw(SampleSpec("reservoir", 10_000, seed=2)))


def test_reservoir_of_a_short_stream_is_the_stream() -> None:
    assert sorted(draw(SampleSpec("reservoir", 500), TABLE.slice(0, 300))) == list(range(300))
    assert draw(SampleSpec("reservoir", 5), TABLE.slice(0, 0)) == []


def test_random_keeps_each_row_with_the_same_chance() -> None:
    ids = draw(SampleSpec("random", 5_000, seed=3))
    assert 4_700 <= len(ids) <= 5_300 and ids == sorted(set(ids))
    assert all(400 <= c <= 600 for c in deciles(ids))
    assert ids == draw(SampleSpec("random", 5_000, seed=3), chunk=1_000)


def test_systematic_takes_every_kth_row_from_a_seeded_start() -> None:
    ids = draw(SampleSpec("systematic", 1_000, seed=4))
    step = N // 1_000
    assert len(ids) == 1_000 and 0 <= ids[0] < step
    assert ids == list(range(ids[0], N, step))


def test_stratified_allocates_in_proportion_and_keeps_small_strata() -> None:
    out = sample(
        iter(TABLE.to_batches(max_chunksize=5_000)),
        SampleSpec("stratified", 1_000, seed=5, by="group"),
        schema=TABLE.schema,
    )
    groups = out.column("group").to_pylist()
    assert (groups.count("big"), groups.count("small")) == (900, 100)
    tiny = pa.table({"id": list(range(1_001)), "group": ["rare"] + ["common"] * 1_000})
    out = sample(iter(tiny.to_batches()), SampleSpec("stratified", 10, by="group"), schema=tiny.schema)
    assert out.column("group").to_pylist().count("rare") == 1


def test_stratifying_by_a_near_unique_column_is_refused() -> None:
    table = pa.table({"id": list(range(MAX_STRATA + 1))})
    with pytest.raises(ValueError, match="more than 10,000 values"):
        sample(iter(table.to_batches()), SampleSpec("stratified", 10, by="id"), schema=table.schema)


def test_random_and_systematic_need_the_total() -> None:
    with pytest.raises(ValueError, match="needs the total row count"):
        sample(iter(TABLE.to_batches()), SampleSpec("systematic", 10), schema=TABLE.schema)
