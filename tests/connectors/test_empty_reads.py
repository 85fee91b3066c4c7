"""A read that produced nothing because everything was rejected does not replace a full table (agents/empty_loads.py).

Every source kind gets the same rule: REST (a response that is not JSON, set
aside), GraphQL (every page answers ``errors``), files (every CSV line
malformed) and databases (a check that rejects every row). The target is a
DuckDB table of 20,000 rows that must survive the refused replace.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import duckdb
import pytest
from tests.conftest import run_sql

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.orchestrator import run_pipeline
from agent_orchestrated_etl.spec import load_spec
from agent_orchestrated_etl.store.records import RunStore


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


REFUSED = "fail the commit: nothing to load, every row was quarantined"


def full_target(tmp_path: Path) -> Path:
    path = tmp_path / "out.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE items AS SELECT range::BIGINT AS id FROM range(20000)")
    return path


def count(path: Path, table: str = "items") -> int:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]


def run(
    tmp_path: Path,
    source: dict,
    *,
    write: str = "replace",
    allow_empty: bool | None = None,
    quality: list | None = None,
    critical: bool = True,
):
    destination = {"type": "duckdb", "path": "out.duckdb", "table": "items", "write": write, "critical": critical}
    if allow_empty is not None:
        destination["allow_empty"] = allow_empty
    spec = {"name": "p", "sources": {"src": source}, "destination": destination, "retry": {"on_bad_data": "quarantine"}}
    if quality:
        spec["quality"] = quality
    (tmp_path / "p.yaml").write_text(json.dumps(spec))
    return run_pipeline(load_spec(tmp_path / "p.yaml"), Settings())


def decisions(run_id: str) -> list[tuple[str, str, str]]:
    """The destination's decisions at commit time (after the last task finished; the plan's come before)."""
    events = RunStore(Settings().store_url).get_run(run_id)["events"]
    last = max(i for i, e in enumerate(events) if e["kind"] == "task_finished")
    return [
        (e["subject"], e["choice"], e["reason"])
        for e in events[last:]
        if e["kind"] == "decision" and e["subject"] == "destination items"
    ]


def refusal(quarantined: int, read: int) -> str:
    return (
        f"every row it read was quarantined ({quarantined:,} quarantined, {read:,} read, 0 to load); a failed read is"
        " not an empty source, and write: replace would empty the target, which stays as it was (fix the source and"
        " run again, or set allow_empty: true on the destination to publish an empty replace)"
    )


def assert_refused(tmp_path: Path, result, quarantined: int, read: int) -> None:
    assert (result.status, result.error) == ("failed", f"destination items: {refusal(quarantined, read)}")
    assert decisions(result.run_id) == [("destination items", REFUSED, refusal(quarantined, read))]
    assert count(tmp_path / "out.duckdb") == 20_000
    assert result.commits == []


GRAPHQL = (
    "query($after: String) { items(first: 250, after: $after) { edges { node { id broken } } pageInfo { endCursor"
    " hasNextPage } } }"
)


def test_graphql_whose_every_page_fails_does_not_replace_the_table(graphql_url: str, tmp_path: Path) -> None:
    target = full_target(tmp_path)
    source = {"type": "graphql", "url": graphql_url, "query": GRAPHQL, "connection": "items", "on_errors": "quarantine"}
    # 10 pages of 250, each holding one item whose `broken` raises: every record is quarantined
    assert_refused(tmp_path, run(tmp_path, source), quarantined=2500, read=0)

    allowed = run(tmp_path, source, allow_empty=True)
    assert allowed.status == "succeeded", allowed.error
    assert count(target) == 0
    assert count(target, "items__quarantine") == 2500
    [(_, choice, reason), *_] = decisions(allowed.run_id)
    assert (choice, reason) == (
        "commit an empty replace",
        (
            "every row it read was quarantined (2,500 quarantined, 0 read, 0 to load); allow_empty: true publishes it,"
            " which empties the target"
        ),
    )


def test_rest_whose_only_page_is_unreadable_does_not_replace_the_table(fault_api, tmp_path: Path) -> None:
    url, _ = fault_api
    full_target(tmp_path)
    # not JSON: a DataError, set aside as one quarantine entry (retry.on_bad_data: quarantine)
    assert_refused(tmp_path, run(tmp_path, {"type": "rest", "url": f"{url}/html"}), quarantined=1, read=0)


def test_a_csv_whose_every_line_is_malformed_does_not_replace_the_table(tmp_path: Path) -> None:
    full_target(tmp_path)
    (tmp_path / "items.csv").write_text("id,name\n1,a,x\n2,b,y\n3,c,z\n")
    result = run(tmp_path, {"type": "file", "path": "items.csv"})
    assert_refused(tmp_path, result, quarantined=3, read=0)


def test_a_check_that_rejects_every_database_row_does_not_replace_the_table(postgres_url: str, tmp_path: Path) -> None:
    table = unique("empty_reads")
    run_sql(
        postgres_url,
        f"CREATE TABLE {table} (id int, email text)",
        f"INSERT INTO {table} SELECT g, NULL FROM generate_series(1, 5) g",
    )
    try:
        full_target(tmp_path)
        source = {"type": "postgres", "url": postgres_url, "table": table}
        result = run(tmp_path, source, quality=[{"not_null": ["email"], "threshold": 1.0}])
        assert_refused(tmp_path, result, quarantined=5, read=5)
        # append changes no row of the target: it commits, and the quarantine entries are published
        appended = run(tmp_path, source, write="append", quality=[{"not_null": ["email"], "threshold": 1.0}])
        assert appended.status == "succeeded", appended.error
        assert count(tmp_path / "out.duckdb") == 20_000
        assert count(tmp_path / "out.duckdb", "items__quarantine") == 5
        assert decisions(appended.run_id)[0][1:] == (
            "commit: nothing to add",
            (
                "every row it read was quarantined (5 quarantined, 5 read, 0 to load); write: append leaves the"
                " target's rows as they were and publishes the quarantine entries"
            ),
        )
    finally:
        run_sql(postgres_url, f"DROP TABLE {table}")


def test_a_genuinely_empty_source_replaces_the_table_with_nothing(postgres_url: str, tmp_path: Path) -> None:
    table = unique("empty_reads")
    run_sql(postgres_url, f"CREATE TABLE {table} (id bigint)")
    try:
        full_target(tmp_path)
        result = run(tmp_path, {"type": "postgres", "url": postgres_url, "table": table})
        assert result.status == "succeeded", result.error
        assert count(tmp_path / "out.duckdb") == 0
        assert decisions(result.run_id)[0][1:] == (
            "commit an empty replace",
            "the source returned no rows and none was quarantined: it is empty, so replace empties the target",
        )
    finally:
        run_sql(postgres_url, f"DROP TABLE {table}")


@pytest.mark.parametrize("write", ["append", "replace"])
def test_rows_to_load_commit_as_before(tmp_path: Path, write: str) -> None:
    full_target(tmp_path)
    (tmp_path / "items.csv").write_text("id\n1\n2,extra\n3\n")
    result = run(tmp_path, {"type": "file", "path": "items.csv"}, write=write)
    assert result.status == "succeeded", result.error
    assert count(tmp_path / "out.duckdb") == (20_002 if write == "append" else 2)
    assert [choice for _, choice, _ in decisions(result.run_id)] == ["commit"]


def test_a_refused_destination_that_is_not_critical_ends_the_run_partial(tmp_path: Path) -> None:
    full_target(tmp_path)
    (tmp_path / "items.csv").write_text("id,name\n1,a,x\n2,b,y\n")
    result = run(tmp_path, {"type": "file", "path": "items.csv"}, critical=False)
    assert (result.status, result.error) == ("partial", f"destination items: {refusal(2, 0)}")
    assert decisions(result.run_id) == [("destination items", "do not commit", f"{refusal(2, 0)}; it is not critical")]
    assert count(tmp_path / "out.duckdb") == 20_000
