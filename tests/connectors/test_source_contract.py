"""The contract every registered source keeps, destination or not (conftest.SOURCE_HARNESSES).

A source's schema is the same on every read, an empty source is no rows and
no error, partitioned reads together read every row exactly once (where the
source declares partitioned reads), and a source that does not exist fails
with an error of our tree that says where. The destination contract
(test_contract.py) covers writing; these tests only read.
"""

from __future__ import annotations

import pyarrow as pa
import pytest
from tests.connectors.conftest import HARNESSES, ROWS, SOURCE_HARNESSES, SourceHarness

from agent_orchestrated_etl.connectors.base import Source
from agent_orchestrated_etl.connectors.registry import DESTINATIONS, SOURCES
from agent_orchestrated_etl.exceptions import AgentETLError, InternalError


def read(source: Source) -> tuple[pa.Schema | None, list[pa.Table]]:
    """The schema of the batches (None without batches), and one table per partition."""
    schema, parts = None, []
    for partition in source.partitions():
        batches = [batch for batch, _ in source.read(partition)]
        for batch in batches:
            assert schema is None or batch.schema.remove_metadata() == schema, (
                f"partition {partition.key} changed the schema"
            )
            schema = batch.schema.remove_metadata()
        parts.append(pa.Table.from_batches(batches) if batches else pa.table({}))
    return schema, parts


def test_every_registered_connector_has_a_harness() -> None:
    assert sorted(set(DESTINATIONS) - set(HARNESSES)) == [], (
        "add a factory to HARNESSES in tests/connectors/conftest.py"
    )
    assert sorted(set(SOURCES) - set(SOURCE_HARNESSES)) == [], (
        "add a factory to SOURCE_HARNESSES in tests/connectors/conftest.py"
    )


def test_the_schema_is_the_same_on_every_read(source_harness: SourceHarness) -> None:
    first, parts = read(source_harness.source(source_harness.fields))
    second, again = read(source_harness.source(source_harness.fields))
    assert first is not None and first == second
    assert sum(p.num_rows for p in parts) == sum(p.num_rows for p in again) > 0


def test_an_empty_source_yields_no_rows_and_no_error(source_harness: SourceHarness) -> None:
    _, parts = read(source_harness.source(source_harness.empty))
    assert sum(p.num_rows for p in parts) == 0


def test_partitioned_reads_cover_every_row_exactly_once(source_harness: SourceHarness) -> None:
    source = source_harness.source(source_harness.partitioned or source_harness.fields)
    if not source.capabilities.partitioned_reads:
        pytest.skip(f"{source_harness.kind} sources declare no partitioned reads (capabilities.partitioned_reads)")
    assert source_harness.partitioned is not None, (
        "the source declares partitioned reads: give its harness `partitioned`"
    )
    _, parts = read(source)
    assert len(parts) > 1, "the partitioned fields gave one partition"
    ids = sorted(i for part in parts for i in part.column("id").to_pylist())
    assert ids == list(range(1, ROWS + 1))


def test_a_missing_source_fails_with_a_typed_error_that_says_where(source_harness: SourceHarness) -> None:
    with pytest.raises(AgentETLError) as caught:
        read(source_harness.source(source_harness.missing))
    assert not isinstance(caught.value, InternalError)
    assert caught.value.where, f"{type(caught.value).__name__} without where: {caught.value}"
