"""The staged-destination protocol itself: its type tables, and its ledger variant for engines without transactions.

The transactional variant is what every database destination runs, so the
contract suite covers it; the ledger variant is exercised here through a
small engine of the test's own: DuckDB used one statement at a time, with an
append made idempotent per run the way such an engine must make it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from agent_orchestrated_etl.connectors.duckdb.client import DuckDBClient, DuckDBSession
from agent_orchestrated_etl.connectors.duckdb.types import TYPES as DUCKDB_TYPES
from agent_orchestrated_etl.connectors.sql.protocol import LedgerDestination, Published, Session
from agent_orchestrated_etl.connectors.sql.types import TypeTable, ddl_type
from agent_orchestrated_etl.exceptions import DataError

ARROW_TYPES = [
    pa.bool_(),
    pa.int8(),
    pa.int16(),
    pa.int32(),
    pa.int64(),
    pa.uint8(),
    pa.uint16(),
    pa.uint32(),
    pa.uint64(),
    pa.float32(),
    pa.float64(),
    pa.decimal128(12, 3),
    pa.string(),
    pa.large_string(),
    pa.binary(),
    pa.date32(),
    pa.time64("us"),
    pa.timestamp("us"),
    pa.timestamp("us", tz="UTC"),
    pa.list_(pa.int32()),
]


def test_duckdbs_type_table_says_what_duckdbs_own_arrow_scan_makes() -> None:
    # Staging tables are created by DuckDB from the batches; the table types agent-etl's own columns. They must agree.
    conn = duckdb.connect()
    for dtype in ARROW_TYPES:
        made = str(conn.from_arrow(pa.table({"x": pa.array([], dtype)})).types[0])
        assert ddl_type(DUCKDB_TYPES, dtype, column="x", where="t") == made, dtype


def test_an_engine_without_a_type_gets_a_data_error_naming_the_column_not_a_key_error() -> None:
    table = TypeTable(engine="tiny", columns={"string": "TEXT"})
    with pytest.raises(DataError, match="column d: Arrow type date32\\[day\\] has no tiny column type"):
        ddl_type(table, pa.date32(), column="d", where="destination t")
    assert ddl_type(table, pa.dictionary(pa.int8(), pa.string()), column="s", where="destination t") == "TEXT"


class _OneStatementDestination(LedgerDestination):
    """An engine that commits every statement by itself: append made idempotent by tagging rows with their run."""

    capabilities = None  # type: ignore[assignment]  # not planned by an orchestrator here

    def __init__(self, path: Path) -> None:
        super().__init__(type("Spec", (), {"table": "t", "write": "append"})(), memory_limit_bytes=256 << 20)
        self.path = path

    def make_client(self) -> DuckDBClient:
        return DuckDBClient(self.path, memory_limit_bytes=self.memory_limit_bytes, where="test t")

    def create_staging(self, name: str, schema: pa.Schema, *, kind: Any) -> None:
        return None  # DuckDB makes the table from the first batch

    def publish_once(self, session: Session, run_id: str, staged: list[str], *, resumed: bool, state: Any) -> Published:
        assert isinstance(session, DuckDBSession)
        if resumed:  # an earlier commit of this run may have inserted some of its rows
            session.execute("DELETE FROM t WHERE _run = ?", (run_id,))
        rows = 0
        for name in staged:
            session.execute(f"CREATE TABLE IF NOT EXISTS t AS SELECT *, ''::VARCHAR AS _run FROM {name} LIMIT 0")
            session.execute(f"INSERT INTO t SELECT *, ? FROM {name}", (run_id,))
            rows += self.count(session, name)
        return Published(rows)

    def publish_quarantine_once(self, session: Session, run_id: str, staged: list[str], *, resumed: bool) -> int:
        return 0


def _staged(dest: _OneStatementDestination, run_id: str, values: list[int]) -> None:
    dest.begin(run_id, "task")
    dest.write_batch(run_id, "task", pa.record_batch({"id": pa.array(values, pa.int64())}))


def test_the_ledger_variant_publishes_once_across_a_crash_and_counts_only_the_committed_row(tmp_path: Path) -> None:
    dest = _OneStatementDestination(tmp_path / "one.duckdb")
    _staged(dest, "r1", [1, 2, 3])

    def crash(run_id: str) -> None:
        raise RuntimeError("killed after the publish, before the ledger's committed row")

    type(dest).before_commit = crash
    try:
        with pytest.raises(RuntimeError, match="killed"):
            dest.commit("r1", ["task"], state={"p/s": {"high": 3}})
    finally:
        type(dest).before_commit = None
    # The rows are in the target, but the run has not loaded: the ledger has only its publishing row.
    assert not dest.committed("r1") and dest.read_state("p/s") is None
    cursor = dest.client.cursor()  # type: ignore[attr-defined]
    assert cursor.execute("SELECT count(*) FROM t").fetchone()[0] == 3

    again = dest.commit("r1", ["task"], state={"p/s": {"high": 3}})
    assert (again.rows, again.already_committed) == (3, False)
    assert cursor.execute("SELECT id FROM t ORDER BY id").fetchall() == [(1,), (2,), (3,)]
    assert dest.committed("r1") and dest.read_state("p/s") == {"high": 3}
    statuses = cursor.execute("SELECT status FROM _agent_etl_loads WHERE run_id = 'r1' ORDER BY status").fetchall()
    assert statuses == [("committed",), ("publishing",)]

    twice = dest.commit("r1", ["task"])
    assert (twice.rows, twice.already_committed) == (3, True)
    _staged(dest, "r2", [4])
    assert dest.commit("r2", ["task"], state={"p/s": {"high": 4}}).rows == 1
    assert dest.read_state("p/s") == {"high": 4}
    assert cursor.execute("SELECT count(*) FROM t").fetchone()[0] == 4
    assert dest.staged_rows("r2", "task") == 0  # the commit dropped its staging
    dest.close()


class _MarkedDestination(_OneStatementDestination):
    """An engine whose publish leaves a marker of its own (the rows carry their run): settlement can tell it landed."""

    def landed(self, session: Session, run_id: str) -> Published | None:
        if not self.client.columns(session, "t"):
            return None
        rows = session.scalar("SELECT count(*) FROM t WHERE _run = ?", (run_id,))
        return Published(int(rows), state={"p/s": {"high": 2}}) if rows else None


def test_settlement_finds_a_ledger_publish_that_landed_without_its_committed_row(tmp_path: Path) -> None:
    dest = _MarkedDestination(tmp_path / "marked.duckdb")
    assert not dest.committed("r1")  # nothing at all yet
    _staged(dest, "r1", [1, 2])

    def crash(run_id: str) -> None:
        raise RuntimeError("killed")

    type(dest).before_commit = crash
    try:
        with pytest.raises(RuntimeError):
            dest.commit("r1", ["task"])
    finally:
        type(dest).before_commit = None
    assert dest.committed("r1")  # the marker answered: the committed row is written now, from it
    assert dest.read_state("p/s") == {"high": 2}
    assert dest.commit("r1", ["task"]).already_committed
    assert dest.client.cursor().execute("SELECT count(*) FROM t").fetchone()[0] == 2  # type: ignore[attr-defined]
    dest.close()
