"""The public Python API (agent_orchestrated_etl/__init__.py, pipeline.py): its members, and each promise of docs/python-api.md.

The list of exported names is spelled out here, as httpx's test_exported_members does, so that
adding or removing a public name is a deliberate change to this file too.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from pydantic import SecretStr

import agent_orchestrated_etl as etl
from agent_orchestrated_etl.exceptions import ConnectionFailedError

EXPORTED = [
    "__version__",
    # running
    "Pipeline",
    "Progress",
    "RunEvents",
    "read_batches",
    "read_table",
    "resume",
    "Settings",
    "load_settings",
    # results
    "RunResult",
    "RunFailure",
    "RunEvent",
    "TaskState",
    "Remedy",
    "RunStatus",
    "TaskStatus",
    # spec models
    "PipelineSpec",
    "WorkflowSpec",
    "RetryPolicy",
    "TransformSpec",
    "PythonSourceSpec",
    "FileSourceSpec",
    "FileDestinationSpec",
    "DuckDBSourceSpec",
    "DuckDBDestinationSpec",
    "SQLiteSourceSpec",
    "SQLiteDestinationSpec",
    "PostgresSourceSpec",
    "PostgresDestinationSpec",
    "RestSourceSpec",
    "NotNullCheck",
    "UniqueCheck",
    "InRangeCheck",
    "RegexCheck",
    "AcceptedValuesCheck",
    "RowCountCheck",
    "FreshnessCheck",
    "SchemaCheck",
    "ReferentialCheck",
    "SqlCheck",
    # errors
    "AgentETLError",
    "RetriableError",
    "DataError",
    "ConfigurationError",
    "SpecError",
    "SpecProblem",
    "MissingDependencyError",
    "AuthError",
    "FatalError",
    "SourceNotFoundError",
    "InternalError",
    "RunFailedError",
]


def test_exported_members() -> None:
    assert etl.__all__ == EXPORTED
    assert list(etl._EXPORTS) == EXPORTED[1:]  # each name knows its module
    for name in EXPORTED:
        assert hasattr(etl, name), name
        member = getattr(etl, name)
        if name != "__version__":
            assert member.__module__.startswith("agent_orchestrated_etl."), (name, member.__module__)
    assert sorted(dir(etl)) == sorted(EXPORTED)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        etl.nothing  # noqa: B018 - the access is what is tested


def test_every_error_is_of_the_one_tree() -> None:
    for name in EXPORTED:
        member = getattr(etl, name)
        if isinstance(member, type) and issubclass(member, Exception):
            assert issubclass(member, etl.AgentETLError), name


def test_importing_the_package_imports_no_engine() -> None:
    # The CLI and every submodule import the package first: the API's names load on first use.
    code = "import sys, agent_orchestrated_etl; print(sorted(m for m in sys.modules if m.startswith('agent_orch')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['agent_orchestrated_etl']"


def _users(n: int = 1000) -> list[dict[str, Any]]:
    return [{"id": i, "email": None if i % 10 == 0 else f"u{i}@example.com"} for i in range(n)]


def _duckdb(path: Path, table: str = "users", **options: Any) -> etl.DuckDBDestinationSpec:
    return etl.DuckDBDestinationSpec(type="duckdb", path=str(path), table=table, write="replace", **options)


def test_a_pipeline_of_typed_objects_runs_and_its_result_says_what_happened(tmp_path: Path) -> None:
    pipeline = etl.Pipeline(
        "users",
        sources={"users": _users()},
        transforms=[etl.TransformSpec(name="clean", sql="SELECT id, lower(email) AS email FROM users")],
        quality=[etl.NotNullCheck(not_null=["email"], threshold=0.2), {"unique": ["id"]}],
        destination=_duckdb(tmp_path / "w.duckdb"),
        retry=etl.RetryPolicy(attempts=2),
    )
    assert isinstance(pipeline.spec, etl.PipelineSpec)
    assert "type: python" in pipeline.yaml and "ref: users.users" in pipeline.yaml
    assert pipeline.validate() == []

    result = pipeline.run()

    assert isinstance(result, etl.RunResult)
    assert result.ok and result.status is etl.RunStatus.SUCCEEDED and result.failure is None
    assert (result.rows_read, result.rows_written, result.rows_quarantined) == (1000, 900, 100)
    assert {t.kind for t in result.tasks} and all(isinstance(t, etl.TaskState) for t in result.tasks)
    assert all(t.status is etl.TaskStatus.SUCCEEDED and t.seconds is not None for t in result.tasks)
    assert sum(t.rows_quarantined for t in result.tasks) == 100
    assert result.decisions and all({"subject", "choice", "reason"} <= set(d) for d in result.decisions)
    assert {(q["check"], q["passed"]) for q in result.quality} >= {("not_null(email)", True), ("unique(id)", True)}
    table = pipeline.read_table()
    assert table.num_rows == 900 and table.column_names == ["id", "email"]
    assert pipeline.read_table(quarantine=True).column("check_name").to_pylist() == ["not_null(email)"] * 100


def test_yaml_text_and_file_give_the_same_pipeline(tmp_path: Path) -> None:
    text = f"""
name: users
sources:
  users: {{type: python, ref: users}}
destination: {{type: sqlite, url: "sqlite:///{tmp_path}/w.db", table: users, write: replace}}
"""
    (tmp_path / "users.yaml").write_text(text)
    from_text = etl.Pipeline.from_yaml(text, data={"users": _users(10)})
    from_file = etl.Pipeline.from_file(tmp_path / "users.yaml", data={"users": _users(10)})
    assert from_text.spec == from_file.spec
    assert from_file.run().ok
    assert from_file.read_table().num_rows == 10
    assert etl.read_table(from_file.spec.all_destinations[0]).num_rows == 10


def test_an_invalid_pipeline_raises_a_spec_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(etl.SpecError) as caught:
        etl.Pipeline("users", sources={"users": _users(1)}, destination={"type": "duckdb", "path": "w.duckdb"})
    assert [p.path for p in caught.value.problems] == ["destination.table"]
    assert "field required" in str(caught.value)
    with pytest.raises(etl.SpecError) as caught:  # a dict is a spec, never data: its type is missing
        etl.Pipeline("p", sources={"a": {"path": "a.csv"}}, destination={"type": "duckdb", "path": "w", "table": "t"})
    assert [p.path for p in caught.value.problems] == ["sources.a"]
    with pytest.raises(etl.ConfigurationError, match="no `type: python` source names"):
        etl.Pipeline.from_yaml(
            "name: p\nsources: {a: {type: file, path: a.csv}}\ndestination: {type: duckdb, path: w.duckdb, table: t}",
            data={"b": []},
        )


def test_validate_reports_a_column_no_source_has(tmp_path: Path) -> None:
    pipeline = etl.Pipeline(
        "users",
        sources={"users": _users(5)},
        quality=[etl.NotNullCheck(not_null=["mail"])],
        destination=_duckdb(tmp_path / "w.duckdb"),
    )
    with pytest.raises(etl.SpecError) as caught:
        pipeline.validate()
    assert "mail" in str(caught.value)
    assert pipeline.validate(offline=True) is not None  # offline binds no column


def test_a_secret_given_by_value_is_refused_before_it_reaches_the_store(tmp_path: Path) -> None:
    with pytest.raises(etl.ConfigurationError) as caught:
        etl.Pipeline(
            "p",
            sources={"a": _users(1)},
            destination={"type": "duckdb", "path": "w.duckdb", "table": "t", "token": SecretStr("s3cret")},
        )
    assert "s3cret" not in str(caught.value) and caught.value.where == "destination.token"


def test_a_failed_run_returns_its_failure_and_check_raises_it_as_the_cli_words_it(tmp_path: Path) -> None:
    pipeline = etl.Pipeline(
        "files",
        sources={"orders": {"type": "file", "path": str(tmp_path / "missing.csv")}},
        destination=_duckdb(tmp_path / "w.duckdb", table="orders"),
    )
    result = pipeline.run()
    assert result.status is etl.RunStatus.FAILED and not result.ok
    assert result.failure is not None and result.failure.remedy is etl.Remedy.FIX_CONFIG
    assert "missing.csv" in result.failure.message and result.failure.error_type == "SourceNotFoundError"
    assert "pipeline.run() again" in result.failure.next_step and "<python>" not in result.failure.next_step

    with pytest.raises(etl.RunFailedError) as caught:
        pipeline.run(check=True)
    error = caught.value
    assert error.next_remedy is etl.Remedy.FIX_CONFIG and error.result.status is etl.RunStatus.FAILED
    # The CLI prints `error: <error>` and `see the decisions: agent-etl runs show <id>; <next step>`.
    assert str(error) == (
        f"{error.result.error} (see the decisions: agent-etl runs show {error.run_id}; {error.result.failure.next_step})"
    )


def test_a_run_that_stopped_on_a_transient_error_resumes(tmp_path: Path) -> None:
    calls: list[int] = []

    def rows() -> list[dict[str, Any]]:  # a factory: each read calls it afresh
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionFailedError("the API dropped us", where="orders api")
        return _users(20)

    pipeline = etl.Pipeline(
        "flaky",
        sources={"users": rows},
        destination=_duckdb(tmp_path / "w.duckdb"),
        retry={"attempts": 1},
    )
    failed = pipeline.run()
    assert failed.failure is not None and failed.failure.remedy is etl.Remedy.RESUME
    assert failed.failure.next_step == f"go on from the checkpoints: agent-etl resume {failed.run_id}"

    resumed = pipeline.resume(failed.run_id)
    assert resumed.ok and resumed.run_id == failed.run_id and resumed.rows_written == 20
    with pytest.raises(etl.ConfigurationError, match="succeeded; there is nothing to go on with"):
        etl.resume(failed.run_id, data={"users": rows})


def test_progress_callbacks_see_every_event_with_the_run_counts(tmp_path: Path) -> None:
    seen: list[etl.Progress] = []
    result = etl.Pipeline("users", sources={"users": _users()}, destination=_duckdb(tmp_path / "w.duckdb")).run(
        on_progress=seen.append
    )
    kinds = [p.kind for p in seen]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert {"task_started", "task_finished", "destination_committed", "decision"} <= set(kinds)
    assert all(p.run_id == result.run_id for p in seen)
    assert (seen[-1].rows_read, seen[-1].rows_written) == (result.rows_read, result.rows_written) == (1000, 1000)
    assert "1/1 tasks, 1000 rows read, 1000 written, 0 quarantined" in str(seen[-1])


def test_a_failing_callback_does_not_stop_the_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def broken(progress: etl.Progress) -> None:
        raise RuntimeError("dashboard down")

    result = etl.Pipeline("users", sources={"users": _users(3)}, destination=_duckdb(tmp_path / "w.duckdb")).run(
        on_progress=broken
    )
    assert result.ok
    assert "progress callback" in caplog.text and "dashboard down" in caplog.text


async def test_events_are_an_async_iterator_and_leaving_early_cancels(tmp_path: Path) -> None:
    pipeline = etl.Pipeline("users", sources={"users": _users()}, destination=_duckdb(tmp_path / "w.duckdb"))
    events = pipeline.events()
    kinds = [progress.kind async for progress in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert events.result is not None and events.result.ok

    def slow() -> Any:
        for i in range(1_000_000):
            yield {"id": i}

    slow_one = etl.Pipeline(
        "slow", sources={"rows": slow}, destination=_duckdb(tmp_path / "w.duckdb", table="slow"), settings=None
    )
    async with slow_one.events() as stream:
        async for progress in stream:
            if progress.kind == "task_started":
                break
    assert stream.result is not None and stream.result.status is etl.RunStatus.CANCELLED
    assert "slow" not in {r[0] for r in duckdb.connect(str(tmp_path / "w.duckdb")).sql("SHOW TABLES").fetchall()}


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda rows: rows, id="list of dicts"),
        pytest.param(lambda rows: (r for r in rows), id="generator"),
        pytest.param(lambda rows: pa.Table.from_pylist(rows), id="arrow table"),
        pytest.param(lambda rows: pa.Table.from_pylist(rows).to_batches(max_chunksize=7), id="arrow batches"),
        pytest.param(lambda rows: __import__("pandas").DataFrame(rows), id="pandas"),
        pytest.param(lambda rows: _ArrowStream(pa.Table.from_pylist(rows)), id="arrow c stream"),
    ],
)
def test_every_kind_of_python_data_loads(tmp_path: Path, make: Any) -> None:
    rows = [{"id": i, "name": f"n{i}", "score": i / 2} for i in range(50)]
    pipeline = etl.Pipeline("kinds", sources={"rows": make(rows)}, destination=_duckdb(tmp_path / "w.duckdb"))
    assert pipeline.run(check=True).rows_written == 50
    assert pipeline.read_table().sort_by("id").to_pylist() == rows


def test_a_polars_dataframe_loads(tmp_path: Path) -> None:
    polars = pytest.importorskip("polars")  # optional: read through the Arrow C stream interface
    frame = polars.DataFrame({"id": [1, 2, 3], "name": ["a", "b", "c"]})
    pipeline = etl.Pipeline("polars", sources={"rows": frame}, destination=_duckdb(tmp_path / "w.duckdb"))
    assert pipeline.run(check=True).rows_written == 3


class _ArrowStream:
    """Any object with the Arrow PyCapsule stream interface, as a Polars DataFrame or a DuckDB relation has."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        return self.table.__arrow_c_stream__(requested_schema)


def test_read_table_reads_postgres(tmp_path: Path, postgres_url: str) -> None:
    url = postgres_url.replace("postgresql://", "postgresql://", 1)
    dest = etl.PostgresDestinationSpec(type="postgres", url=url, table="api_users", write="replace")
    pipeline = etl.Pipeline("pg_users", sources={"users": _users(30)}, destination=dest)
    assert pipeline.run(check=True).rows_written == 30
    assert etl.read_table(dest).sort_by("id").column("id").to_pylist() == list(range(30))


def test_read_table_reads_a_file_destination_through_its_manifest(tmp_path: Path) -> None:
    dest = {"type": "file", "path": str(tmp_path / "out"), "format": "parquet"}
    pipeline = etl.Pipeline("files_out", sources={"users": _users(40)}, destination=dest)
    pipeline.run(check=True)
    pipeline.run(check=True)  # append: two committed loads
    assert pipeline.read_table(str(tmp_path / "out")).num_rows == 80
    assert sum(b.num_rows for b in pipeline.read_batches()) == 80


def test_read_table_says_what_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(etl.ConfigurationError, match="reading a clickhouse destination back is not supported"):
        etl.read_table({"type": "clickhouse", "url": "clickhouse://x", "table": "t"})
    pipeline = etl.Pipeline("one", sources={"users": _users(1)}, destination=_duckdb(tmp_path / "w.duckdb"))
    with pytest.raises(etl.ConfigurationError, match="no destination 'nope'"):
        pipeline.read_table("nope")


async def test_run_works_where_an_event_loop_already_runs(tmp_path: Path) -> None:
    # A notebook cell runs inside Jupyter's loop: asyncio.run there would raise.
    pipeline = etl.Pipeline("users", sources={"users": _users(5)}, destination=_duckdb(tmp_path / "w.duckdb"))
    assert pipeline.run().rows_written == 5
    assert (await pipeline.run_async()).rows_written == 5


async def test_two_pipelines_with_a_source_of_the_same_name_run_side_by_side(tmp_path: Path) -> None:
    first, second = (
        etl.Pipeline(name, sources={"users": _users(n)}, destination=_duckdb(tmp_path / f"{name}.duckdb"))
        for name, n in (("first", 3), ("second", 7))
    )
    results = await asyncio.gather(first.run_async(), second.run_async())
    assert [r.rows_written for r in results] == [3, 7]
