"""`type: python`: data of this process read in batches, never materialised whole, read once where it can be read once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from agent_orchestrated_etl.connectors.python import PythonSource, PythonSourceSpec, bind
from agent_orchestrated_etl.exceptions import ConfigurationError, FatalError


def source(ref: str = "rows", batch_rows: int = 100) -> PythonSource:
    return PythonSource("rows", PythonSourceSpec(type="python", ref=ref), batch_rows=batch_rows)


def read(src: PythonSource) -> list[pa.RecordBatch]:
    return [batch for partition in src.partitions() for batch, _ in src.read(partition)]


def test_an_iterable_is_read_a_batch_at_a_time() -> None:
    pulled: list[int] = []

    def rows() -> Iterator[dict[str, Any]]:
        for i in range(1_000):
            pulled.append(i)
            yield {"id": i}

    with bind({"rows": rows()}):
        batches = source().read(source().partitions()[0])
        first, position = next(batches)
        assert first.num_rows == 100 and len(pulled) == 100  # no more than one batch was drawn from the iterator
        assert str(position) == "python rows record 1"
        rest = list(batches)
    assert [b.num_rows for b, _ in rest] == [100] * 9 and str(rest[-1][1]) == "python rows record 901"


def test_a_one_shot_iterator_is_not_read_twice() -> None:
    with bind({"rows": iter([{"id": 1}])}):
        assert source().reread_cost() == "python rows is an iterator that can be read once"
        assert sum(b.num_rows for b in read(source())) == 1
        with pytest.raises(FatalError) as caught:
            read(source())
    assert caught.value.where == "python source rows" and "function returning a fresh iterator" in str(caught.value)


def test_a_list_and_a_factory_can_be_read_again() -> None:
    for data in ([{"id": 1}, {"id": 2}], lambda: iter([{"id": 1}, {"id": 2}])):
        with bind({"rows": data}):
            assert source().reread_cost() is None
            assert [sum(b.num_rows for b in read(source())) for _ in range(2)] == [2, 2]


def test_a_row_that_does_not_fit_is_quarantined_with_its_place() -> None:
    rows = [{"id": 1}, {"id": "two"}, {"id": 3}, "not a row"]
    with bind({"rows": rows}):
        src = source()
        assert sum(b.num_rows for b in read(src)) == 2
    rejected = [(reason, str(position)) for _, reason, position in src.quarantined()]
    assert rejected[0] == ("expected a JSON object, got string", "python rows record 4")
    assert rejected[1][1] == "python rows record 2" and "id" in rejected[1][0]


def test_unbound_data_and_unreadable_objects_say_what_to_do() -> None:
    with pytest.raises(ConfigurationError) as caught:
        read(source("orders"))
    assert caught.value.where == "python source orders" and "agent-etl run" in str(caught.value)
    with bind({"rows": {"id": 1}}), pytest.raises(ConfigurationError, match="cannot read a dict as rows"):
        read(source())


def test_another_run_cannot_rebind_a_ref_to_other_data() -> None:
    with (
        bind({"rows": [1]}),
        pytest.raises(ConfigurationError, match="another run in this process holds"),
        bind({"rows": [2]}),
    ):
        pass
    with bind({"rows": [{"id": 2}]}):  # free again once the first run ended
        assert read(source())[0].to_pylist() == [{"id": 2}]
