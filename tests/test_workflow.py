"""Workflows: pipelines ordered by depends_on, cycles named, failures skip dependents, resume."""

from pathlib import Path

import duckdb
import pytest

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.exceptions import SpecError
from agent_orchestrated_etl.orchestrator import resume_run, run_pipeline
from agent_orchestrated_etl.spec import load_spec, parse_spec
from agent_orchestrated_etl.store.records import RunStore

WORKFLOW = """\
workflow: nightly
pipelines:
  - name: raw_people
    sources: {people: {type: file, path: people.csv}}
    destination: {type: file, path: lake/people, format: parquet, write: replace}
  - name: people_to_duckdb
    depends_on: [raw_people]
    sources: {people: {type: file, path: "lake/people/*.parquet"}}
    destination: {type: duckdb, path: wh.duckdb, table: people, write: replace}
  - name: cities
    sources: {cities: {type: file, path: cities.csv}}
    destination: {type: duckdb, path: wh2.duckdb, table: cities, write: replace}
"""


def setup(tmp_path: Path, *, people: bool = True) -> Path:
    if people:
        (tmp_path / "people.csv").write_text("id,name\n1,Ada\n2,Grace\n3,Edsger\n")
    (tmp_path / "cities.csv").write_text("city\nOslo\nLyon\n")
    spec = tmp_path / "wf.yaml"
    spec.write_text(WORKFLOW)
    return spec


def count(path: Path, table: str) -> int:
    return duckdb.connect(str(path), read_only=True).execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def decisions(run_id: str) -> list[tuple[str, str]]:
    record = RunStore(Settings().store_url).get_run(run_id)
    return [(e["subject"], e["choice"]) for e in record["events"] if e["kind"] == "decision"]


def test_pipelines_run_in_dependency_order(tmp_path: Path) -> None:
    result = run_pipeline(load_spec(setup(tmp_path)), Settings())
    assert result.status == "succeeded"
    assert count(tmp_path / "wh.duckdb", "people") == 3
    assert count(tmp_path / "wh2.duckdb", "cities") == 2
    order = [subject for subject, choice in decisions(result.run_id) if choice == "start"]
    assert order.index("pipeline raw_people") < order.index("pipeline people_to_duckdb")
    children = {r["pipeline"]: r for r in RunStore(Settings().store_url).list_runs() if r["run_id"] != result.run_id}
    assert {name: r["run_id"] for name, r in children.items()} == {
        n: f"{result.run_id}.{n}" for n in ("raw_people", "people_to_duckdb", "cities")
    }
    assert {r["status"] for r in children.values()} == {"succeeded"}


def test_a_cycle_is_named() -> None:
    text = WORKFLOW.replace("  - name: raw_people\n", "  - name: raw_people\n    depends_on: [people_to_duckdb]\n")
    with pytest.raises(SpecError) as caught:
        parse_spec(text, file="wf.yaml")
    [problem] = caught.value.problems
    assert "cycle" in problem.message
    assert "raw_people -> people_to_duckdb" in problem.message or "people_to_duckdb -> raw_people" in problem.message


def test_unknown_dependencies_and_stray_depends_on_are_errors() -> None:
    with pytest.raises(SpecError, match="unknown pipeline"):
        parse_spec(WORKFLOW.replace("depends_on: [raw_people]", "depends_on: [nope]"))
    with pytest.raises(SpecError, match="only pipelines inside a workflow"):
        parse_spec(
            "name: p\ndepends_on: [x]\nsources: {a: {type: file, path: a.csv}}\ndestination: {type: duckdb, path:"
            " w.duckdb, table: t}\n"
        )


def test_a_failure_skips_dependents_and_resume_finishes_the_rest(tmp_path: Path) -> None:
    spec = setup(tmp_path, people=False)
    first = run_pipeline(load_spec(spec), Settings())
    assert first.status == "failed"
    assert ("pipeline people_to_duckdb", "skip") in decisions(first.run_id)
    assert count(tmp_path / "wh2.duckdb", "cities") == 2  # independent pipelines still load

    (tmp_path / "people.csv").write_text("id,name\n1,Ada\n")
    second = resume_run(first.run_id, Settings())
    assert (second.run_id, second.status) == (first.run_id, "succeeded")
    assert count(tmp_path / "wh.duckdb", "people") == 1
    assert ("pipeline cities", "keep") in decisions(first.run_id)


def test_parallel_pipelines_share_max_workers(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AGENT_ETL_MAX_WORKERS bounds the tasks running at once across a workflow, not per pipeline."""
    import sqlalchemy as sa

    table = f"slow_{tmp_path.name[-12:].replace('-', '_')}"
    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {table} AS SELECT i AS id FROM generate_series(1, 300) i")
    # About 2 ms a row slept in the server: each 100-row task runs for about 0.2 s.
    source = (
        f'{{type: postgres, url: "{postgres_url}", query: "SELECT id FROM {table} WHERE pg_sleep(0.001)::text = \'\'",'
        " partition: {column: id, parts: 3}}"
    )
    (tmp_path / "wf.yaml").write_text(
        "workflow: shared\npipelines:\n"
        + "".join(
            f"  - name: p{i}\n    sources: {{s: {source}}}\n    quality: [{{not_null: [id]}}]\n    destination: {{type:"
            f" duckdb, path: w{i}.duckdb, table: t}}\n"
            for i in (1, 2)
        )
    )
    monkeypatch.setenv("AGENT_ETL_MAX_WORKERS", "3")
    try:
        result = run_pipeline(load_spec(tmp_path / "wf.yaml"), Settings())
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE {table}")
        engine.dispose()
    assert result.status == "succeeded", result.error
    store = RunStore(Settings().store_url)
    moments = []
    for name in ("p1", "p2"):
        for event in store.get_run(f"{result.run_id}.{name}")["events"]:
            if event["kind"] in ("task_started", "task_finished"):
                moments.append((event["at"], 1 if event["kind"] == "task_started" else -1))
    running, most = 0, 0
    for _, step in sorted(moments, key=lambda m: (m[0], m[1])):  # a finish before a start at the same instant
        running += step
        most = max(most, running)
    assert most == 3, sorted((str(m[0])[11:], m[1]) for m in moments)
