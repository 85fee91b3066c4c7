"""User SQL runs sandboxed: no files, no network, no ATTACH, no extensions, and no way to lift that."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.orchestrator import run_pipeline
from agent_orchestrated_etl.spec import load_spec
from agent_orchestrated_etl.transform.workspace import Workspace

DENIED = "file system operations are disabled by configuration"


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    ws = Workspace(tmp_path / "run", memory_limit_bytes=256 << 20)
    yield ws
    ws.close()


@pytest.mark.parametrize(
    ("sql", "error", "message"),
    [
        (
            "SELECT * FROM read_csv('/etc/passwd')",
            duckdb.PermissionException,
            f'Cannot access file "/etc/passwd" - {DENIED}',
        ),
        (
            "COPY (SELECT 42) TO '{tmp}/out.csv'",
            duckdb.PermissionException,
            f'Cannot access file "{{tmp}}/out.csv" - {DENIED}',
        ),
        (
            "ATTACH '{tmp}/other.duckdb' AS other",
            duckdb.PermissionException,
            f'Cannot access file "{{tmp}}/other.duckdb" - {DENIED}',
        ),
        ("INSTALL httpfs", duckdb.PermissionException, DENIED),
        ("LOAD httpfs", duckdb.PermissionException, "Loading external extensions is disabled through configuration"),
        (
            "SET enable_external_access = true",
            duckdb.InvalidInputException,
            'Cannot change configuration option "enable_external_access" - the configuration has been locked',
        ),
    ],
)
def test_the_workspace_refuses(
    workspace: Workspace, tmp_path: Path, sql: str, error: type[Exception], message: str
) -> None:
    cursor = workspace.cursor()
    with pytest.raises(error) as caught:
        cursor.execute(sql.format(tmp=tmp_path))
    assert message.format(tmp=tmp_path) in str(caught.value)
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "other.duckdb").exists()


def run_with(tmp_path: Path, transform: str):
    pq.write_table(pa.table({"id": [1, 2]}), tmp_path / "in.parquet")
    (tmp_path / "p.yaml").write_text(f"""\
name: sandboxed
sources:
  src: {{type: file, path: in.parquet}}
transforms:
{transform}
destination: {{type: duckdb, path: out.duckdb, table: t, input: t}}
""")
    return run_pipeline(load_spec(tmp_path / "p.yaml"), Settings())


def test_read_csv_in_a_sql_transform_fails_the_run_before_any_task(tmp_path: Path) -> None:
    result = run_with(tmp_path, "  - {name: t, sql: \"SELECT * FROM src, read_csv('/etc/passwd')\"}")
    assert result.status == "failed" and result.tasks == []
    assert (
        result.error
        == f'transform t: Permission Error: Cannot access file "/etc/passwd" - {DENIED} (fix the transform\'s sql:)'
    )


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("COPY (SELECT * FROM src) TO 'leak.csv'", "COPY"),
        ("ATTACH 'other.duckdb' AS other", "ATTACH"),
        ("INSTALL httpfs", "INSTALL"),
    ],
)
def test_statements_other_than_one_select_are_refused(tmp_path: Path, sql: str, kind: str) -> None:
    result = run_with(tmp_path, f'  - {{name: t, sql: "{sql}"}}')
    assert result.status == "failed"
    assert result.error.startswith(
        f"transform t: a sql: transform is one SELECT query, not {kind} (transforms cannot write files"
    )
    assert not (tmp_path / "leak.csv").exists() and not (tmp_path / "other.duckdb").exists()


def test_an_expression_cannot_end_the_query_and_start_another(tmp_path: Path) -> None:
    result = run_with(
        tmp_path, "  - {name: t, input: src, steps: [{filter: \"true; ATTACH 'x.duckdb' AS x; SELECT 1 WHERE (true\"}]}"
    )
    assert result.status == "failed"
    assert "transform t: step 1 (filter)" in result.error
    assert not (tmp_path / "x.duckdb").exists()


def test_a_subquery_reading_a_file_in_an_expression_is_refused(tmp_path: Path) -> None:
    result = run_with(
        tmp_path,
        "  - {name: t, input: src, steps: [{derive: {n: \"(SELECT count(*) FROM read_text('/etc/hostname'))\"}}]}",
    )
    assert result.status == "failed"
    assert result.error.startswith(
        f'transform t: step 1 (derive n): Permission Error: Cannot access file "/etc/hostname" - {DENIED}'
    )
