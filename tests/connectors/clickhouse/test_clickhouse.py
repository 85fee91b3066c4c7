"""The ClickHouse destination's own promises, beyond the contract: what a crash leaves, schema changes, ranges.

ClickHouse has no multi-statement transactions; the destination publishes by
one EXCHANGE TABLES whose table comment names the run (and carries its
state), and writes the ledger row after it. These tests stop a commit on
either side of the swap and check that the load still lands exactly once.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from tests.connectors.conftest import Harness, clickhouse_table, make_harness

from agent_orchestrated_etl.connectors.clickhouse import ClickHouseDestination
from agent_orchestrated_etl.connectors.clickhouse.client import ChdbClient
from agent_orchestrated_etl.connectors.sql.protocol import STAGING_PREFIX
from agent_orchestrated_etl.exceptions import AgentETLError, ConfigurationError, DataError

STATE = {"p/src": {"cursor": "id", "value": 3, "keys": []}}


@pytest.fixture
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    return make_harness("clickhouse", request, tmp_path)


def stage(h: Harness, run_id: str, *batches: dict[str, list[Any]], **spec: Any) -> ClickHouseDestination:
    dest = h.destination(**spec)
    assert isinstance(dest, ClickHouseDestination)
    dest.begin(run_id, "t0")
    for batch in batches:
        dest.write_batch(run_id, "t0", pa.record_batch(batch))
    dest.finish(run_id, "t0")
    return dest


def leftovers(h: Harness) -> list[str]:
    """Staging and publish tables left in the target's database."""
    dest = h.destination()
    try:
        with dest.client.session() as session:
            return [name for name in dest.client.tables(session) if name.startswith(STAGING_PREFIX)]
    finally:
        dest.close()


def ids(h: Harness) -> list[int]:
    return sorted(h.read().column("id").to_pylist())


def crash(run_id: str) -> None:
    raise RuntimeError(f"the process dies after publishing {run_id}")


@pytest.mark.parametrize("then", ["settle", "resume", "next run"])
def test_a_crash_between_the_swap_and_the_ledger_row_loads_once(
    h: Harness, monkeypatch: pytest.MonkeyPatch, then: str
) -> None:
    h.load("r1", pa.table({"id": [1]}))
    dest = stage(h, "r2", {"id": [2, 3]})
    monkeypatch.setattr(ClickHouseDestination, "before_commit", crash)
    with pytest.raises(RuntimeError, match="dies after publishing r2"):
        dest.commit("r2", ["t0"], STATE)
    dest.close()
    monkeypatch.undo()
    assert ids(h) == [1, 2, 3]  # the swap is what readers see: the rows are there, once

    again = h.destination()
    if then == "settle":  # what settlement asks of a dead run: the swap landed, so the run committed
        assert again.committed("r2")
        assert again.commit("r2", ["t0"], STATE).already_committed
    elif then == "next run":  # a new run reads the incremental state first: the state the swap published
        assert again.read_state("p/src") == STATE["p/src"]
        assert again.committed("r2")
    else:  # what `agent-etl resume` does: commit the run again
        result = again.commit("r2", ["t0"], STATE)
        assert (result.rows, result.already_committed) == (2, False)
        assert again.committed("r2")
    assert again.read_state("p/src") == STATE["p/src"]
    again.close()
    assert ids(h) == [1, 2, 3]
    assert leftovers(h) == []


def test_a_crash_before_the_swap_leaves_the_target_as_it_was(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    h.load("r1", pa.table({"id": [1]}))
    dest = stage(h, "r2", {"id": [2, 3]})
    import chdb

    real = ChdbClient.query

    def dies_at_the_swap(self: ChdbClient, sql: str, *args: Any, **kwargs: Any) -> Any:
        if sql.startswith("EXCHANGE TABLES"):
            raise chdb.ChdbError("Code: 1000. DB::Exception: the process dies before the swap")
        return real(self, sql, *args, **kwargs)

    monkeypatch.setattr(ChdbClient, "query", dies_at_the_swap)
    with pytest.raises(AgentETLError):
        dest.commit("r2", ["t0"], STATE)
    dest.close()
    monkeypatch.undo()
    assert ids(h) == [1]

    again = h.destination()
    assert not again.committed("r2")
    assert again.read_state("p/src") is None
    assert again.commit("r2", ["t0"], STATE).rows == 2
    again.close()
    assert ids(h) == [1, 2, 3]
    assert leftovers(h) == []


def test_a_new_column_arrives_with_the_swap_and_freeze_refuses_it(h: Harness) -> None:
    h.load("r1", pa.table({"id": [1]}))
    frozen = stage(h, "r2", {"id": [2], "note": ["x"]}, schema="freeze")
    with pytest.raises(ConfigurationError, match="schema: freeze"):
        frozen.commit("r2", ["t0"])
    frozen.abort("r2")
    frozen.close()
    assert h.read().column_names == ["id"]

    dest = stage(h, "r3", {"id": [2], "note": ["x"]})
    assert dest.commit("r3", ["t0"]).schema_changes == ["added column note Nullable(String)"]
    dest.close()
    assert h.read().sort_by("id").to_pylist() == [{"id": 1, "note": None}, {"id": 2, "note": "x"}]


def test_within_a_run_the_last_staged_row_of_a_key_wins(h: Harness) -> None:
    spec = {"write": "merge", "primary_key": ["id"]}
    dest = h.destination(**spec)
    for task, batches in {
        "t0": [{"id": [1, 2], "v": ["a", "b"]}, {"id": [2], "v": ["b2"]}],
        "t1": [{"id": [1], "v": ["a1"]}],
    }.items():
        dest.begin("r1", task)
        for batch in batches:
            dest.write_batch("r1", task, pa.record_batch(batch))
        dest.finish("r1", task)
    dest.commit("r1", ["t0", "t1"])
    dest.close()
    assert h.read().sort_by("id").to_pylist() == [{"id": 1, "v": "a1"}, {"id": 2, "v": "b2"}]


def test_dates_clickhouse_would_clamp_are_unstorable(h: Harness) -> None:
    batch = pa.record_batch(
        {
            "day": pa.array([dt.date(1899, 12, 31), dt.date(2000, 1, 1), None], pa.date32()),
            "ts": pa.array([dt.datetime(2000, 1, 1), dt.datetime(2300, 1, 1), None], pa.timestamp("us", tz="UTC")),
        }
    )
    dest = h.destination()
    reasons = dest.unstorable(batch)
    dest.close()
    assert reasons is not None and reasons[2] is None
    assert "column day: 1899-12-31 is outside ClickHouse's 1900-01-01 to 2299-12-31" in str(reasons[0])
    assert "column ts" in str(reasons[1])


def test_a_list_column_is_refused_as_data_not_stored_as_an_empty_array(h: Harness) -> None:
    dest = h.destination()
    dest.begin("r1", "t0")
    with pytest.raises(DataError, match="no clickhouse column type"):
        dest.write_batch("r1", "t0", pa.record_batch({"xs": pa.array([[1], None], pa.list_(pa.int64()))}))
    dest.close()


def test_a_second_data_directory_in_one_process_is_a_configuration_error(h: Harness, tmp_path: Path) -> None:
    import chdb

    held = chdb.connect(h.destination_fields["path"])  # a destination of the pipeline has the first one open
    try:
        other = h.destination(path=str(tmp_path / "elsewhere"))
        with pytest.raises(ConfigurationError, match="one chdb data directory at a time") as caught:
            other.committed("r1")
        assert caught.value.where is not None and "elsewhere" in caught.value.where
    finally:
        held.close()


def test_binary_and_text_stay_apart(h: Harness) -> None:
    h.load("r1", pa.table({"id": [1], "raw": pa.array([b"\xff\x00"]), "txt": ["\xff"]}))
    back = clickhouse_table(h.destination_fields["path"], *h.table.split("."))
    assert back.to_pylist() == [{"id": 1, "raw": b"\xff\x00", "txt": "\xff"}]


def test_an_append_to_a_partitioned_table_of_the_users_keeps_every_partition(h: Harness) -> None:
    import chdb

    database, table = h.table.split(".")
    conn = chdb.connect(h.destination_fields["path"])
    try:
        conn.query(f"CREATE DATABASE IF NOT EXISTS `{database}` ENGINE = Atomic")
        conn.query(
            f"CREATE TABLE `{database}`.`{table}` (id Nullable(Int64), month Int32)"
            " ENGINE = MergeTree PARTITION BY month ORDER BY tuple()"
        )
        conn.query(f"INSERT INTO `{database}`.`{table}` VALUES (1, 1), (2, 2)")
    finally:
        conn.close()
    h.load("r1", pa.table({"id": pa.array([3], pa.int64()), "month": pa.array([3], pa.int32())}))
    assert ids(h) == [1, 2, 3]
