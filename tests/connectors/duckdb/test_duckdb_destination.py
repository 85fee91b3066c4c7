"""The DuckDB destination's commit protocol: nothing visible before commit, once only, atomic."""

from pathlib import Path

import pyarrow as pa
import pytest

from agent_orchestrated_etl.connectors.duckdb import DuckDBDestination, DuckDBDestinationSpec
from agent_orchestrated_etl.exceptions import DataError

MB = 1 << 20


def destination(tmp_path: Path, **spec: object) -> DuckDBDestination:
    model = DuckDBDestinationSpec(type="duckdb", path=str(tmp_path / "w.duckdb"), table="t", **spec)
    return DuckDBDestination(model, memory_limit_bytes=256 * MB)


def batch(ids: list[int], values: list[str]) -> pa.RecordBatch:
    return pa.record_batch({"id": pa.array(ids, pa.int64()), "v": pa.array(values)})


def rows(dest: DuckDBDestination) -> list[tuple]:
    return dest._cursor().execute("SELECT * FROM t ORDER BY id").fetchall()


def load(dest: DuckDBDestination, run_id: str, *tasks: list[pa.RecordBatch]) -> int:
    for n, batches in enumerate(tasks):
        dest.begin(run_id, f"task{n}")
        for b in batches:
            dest.write_batch(run_id, f"task{n}", b)
    return dest.commit(run_id, [f"task{n}" for n in range(len(tasks))]).rows


def test_nothing_is_visible_before_commit_and_all_of_it_after(tmp_path: Path) -> None:
    dest = destination(tmp_path)
    dest.begin("r1", "a")
    dest.write_batch("r1", "a", batch([1, 2], ["x", "y"]))
    assert dest._cursor().execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 't'").fetchone()[0] == 0
    assert dest.commit("r1", ["a"]).rows == 2
    assert rows(dest) == [(1, "x"), (2, "y")]


def test_append_from_parallel_tasks_then_again(tmp_path: Path) -> None:
    dest = destination(tmp_path)
    assert load(dest, "r1", [batch([1], ["a"])], [batch([2], ["b"]), batch([3], ["c"])]) == 3
    assert load(dest, "r2", [batch([4], ["d"])]) == 1
    assert [r[0] for r in rows(dest)] == [1, 2, 3, 4]


def test_committing_a_run_twice_is_a_no_op(tmp_path: Path) -> None:
    dest = destination(tmp_path)
    load(dest, "r1", [batch([1], ["a"])])
    again = dest.commit("r1", ["task0"])
    assert again.already_committed and again.rows == 1
    assert rows(dest) == [(1, "a")]


def test_abort_leaves_the_target_as_it_was(tmp_path: Path) -> None:
    dest = destination(tmp_path)
    load(dest, "r1", [batch([1], ["a"])])
    dest.begin("r2", "task0")
    dest.write_batch("r2", "task0", batch([2], ["b"]))
    dest.abort("r2")
    assert rows(dest) == [(1, "a")]
    leftovers = (
        dest._cursor()
        .execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE '_agent_etl_stg_%'")
        .fetchone()[0]
    )
    assert leftovers == 0


def test_a_failing_commit_rolls_back_everything(tmp_path: Path) -> None:
    dest = destination(tmp_path, write="merge", primary_key=["id"])
    load(dest, "r1", [batch([1], ["a"])])
    dest.begin("r2", "task0")
    dest.write_batch("r2", "task0", pa.record_batch({"id": pa.array(["one"]), "v": pa.array(["b"])}))  # no BIGINT key
    with pytest.raises(DataError, match="(?s)do not fit the target.*! id: target holds int64, incoming string"):
        dest.commit("r2", ["task0"])
    assert rows(dest) == [(1, "a")]
    assert dest._cursor().execute("SELECT count(*) FROM _agent_etl_loads WHERE run_id = 'r2'").fetchone()[0] == 0


def test_replace_swaps_the_whole_table(tmp_path: Path) -> None:
    dest = destination(tmp_path, write="replace")
    load(dest, "r1", [batch([1, 2], ["a", "b"])])
    load(dest, "r2", [batch([7], ["z"])], [batch([8], ["y"])])
    assert rows(dest) == [(7, "z"), (8, "y")]


def test_merge_upserts_and_the_last_staged_row_of_a_key_wins(tmp_path: Path) -> None:
    dest = destination(tmp_path, write="merge", primary_key=["id"])
    load(dest, "r1", [batch([1, 2], ["a", "b"])])
    load(dest, "r2", [batch([2, 3], ["old", "c"]), batch([2], ["new"])])
    assert rows(dest) == [(1, "a"), (2, "new"), (3, "c")]
    load(dest, "r3", [batch([2, 3], ["new", "c"])])  # merging the same rows again changes nothing
    assert rows(dest) == [(1, "a"), (2, "new"), (3, "c")]


def test_new_columns_are_added_on_append(tmp_path: Path) -> None:
    dest = destination(tmp_path)
    load(dest, "r1", [batch([1], ["a"])])
    wider = pa.record_batch({"id": pa.array([2]), "v": pa.array(["b"]), "extra": pa.array([True])})
    load(dest, "r2", [wider])
    assert dest._cursor().execute("SELECT id, v, extra FROM t ORDER BY id").fetchall() == [
        (1, "a", None),
        (2, "b", True),
    ]


def test_table_names_must_be_plain_identifiers() -> None:
    with pytest.raises(ValueError, match="plain identifier"):
        DuckDBDestinationSpec(type="duckdb", path="w.duckdb", table='t"; DROP TABLE x; --')


def test_a_copy_by_the_engine_may_reorder_rows_unless_a_merge_copy_runs_too() -> None:
    import duckdb as ddb

    from agent_orchestrated_etl.connectors.duckdb.client import engine_copy as _engine_copy

    conn = ddb.connect(":memory:", config={"memory_limit": "64MB"})

    def settings() -> tuple[bool, str]:
        return conn.execute(
            "SELECT current_setting('preserve_insertion_order'), current_setting('memory_limit')"
        ).fetchone()

    budget = 512 << 20
    with _engine_copy(conn, budget, keep_order=False):
        assert settings() == (
            False,
            "122.0 MiB",
        )  # 128 MB (DuckDB's MB are decimal): a quarter of the budget: the unordered copy needs no more
        with _engine_copy(conn, budget, keep_order=True):
            assert settings() == (True, "274.6 MiB")  # 288 MB: a merge's last row of a key must stay last
        assert settings() == (False, "122.0 MiB")
    assert settings() == (True, "61.0 MiB")
