"""An empty or header-only CSV gives the same outcome on every destination and in every write mode.

The rule (docs/databases.md): an empty input creates no target table, since
it has no column types to create one from (a header names columns, it does not
type them); the run succeeds with 0 rows and the reader's quarantine entry.
A replace needs `allow_empty: true` here: without it, a replace whose every
row was set aside is refused (tests/connectors/test_empty_reads.py), and an
empty file is set aside as one quarantine entry.
Before, a replace into PostgreSQL, MariaDB or SQLite failed: it cleared a
target that did not exist (`relation "empty" does not exist`).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa
from tests.conftest import run_sql
from tests.connectors.conftest import Harness, make_harness

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.orchestrator import run_pipeline
from agent_orchestrated_etl.spec import parse_spec

CASES = [
    ("duckdb", "append"),
    ("duckdb", "replace"),
    ("duckdb", "merge"),
    ("sqlite", "append"),
    ("sqlite", "replace"),
    ("sqlite", "merge"),
    ("postgres", "append"),
    ("postgres", "replace"),
    ("postgres", "merge"),
    ("mysql", "append"),
    ("mysql", "replace"),
    ("mysql", "merge"),
    ("file", "append"),
    ("file", "replace"),  # files do not merge
]
QUARANTINE = {"": ("empty file: no header and no rows", ""), "id,v\n": ("the file has a header but no rows", ":1")}


def tables(h: Harness, tmp_path: Path) -> list[str]:
    """The tables (or files) the run left, bookkeeping aside."""
    if h.kind == "duckdb":
        with duckdb.connect(h.destination_fields["path"], read_only=True) as conn:
            names = [r[0] for r in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
    elif h.kind == "sqlite":
        with sqlite3.connect(tmp_path / "db.sqlite") as conn:
            names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    elif h.kind == "file":
        return sorted(
            p.name
            for p in Path(h.destination_fields["path"]).rglob("*")
            if p.suffix == ".parquet" and "_quarantine" not in p.parts
        )
    else:
        url = h.destination_fields["url"]
        driver = url.replace("postgresql://", "postgresql+psycopg://").replace("mysql://", "mysql+pymysql://")
        engine = sa.create_engine(driver)
        try:
            names = sa.inspect(engine).get_table_names(schema=h.table.split(".")[0] if "." in h.table else None)
        finally:
            engine.dispose()
    return sorted(n for n in names if not n.startswith("_agent_etl_"))


@pytest.mark.parametrize("content", ["", "id,v\n"], ids=["empty", "header-only"])
@pytest.mark.parametrize(("kind", "write"), CASES)
def test_an_empty_csv_creates_nothing_and_succeeds(
    kind: str, write: str, content: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    h = make_harness(kind, request, tmp_path, table="empty")
    (tmp_path / "empty.csv").write_text(content)
    fields = {
        "type": kind,
        **h.destination_fields,
        "write": write,
        **({"primary_key": ["id"]} if write == "merge" else {}),
        **({"allow_empty": True} if write == "replace" else {}),
    }
    spec = tmp_path / "p.yaml"
    spec.write_text(f"name: e\nsources:\n  s: {{type: file, path: empty.csv}}\ndestination: {json.dumps(fields)}\n")
    result = run_pipeline(parse_spec(spec.read_text(), file=str(spec)), Settings())
    assert result.status == "succeeded", result.error
    assert [(c["rows"], c["quarantined_rows"]) for c in result.commits] == [(0, 1)]
    assert tables(h, tmp_path) == ([] if kind == "file" else ["empty__quarantine"])
    if kind in ("postgres", "mysql"):
        quarantined = run_sql(h.destination_fields["url"], f"SELECT reason, origin FROM {h.table}__quarantine")
        reason, line = QUARANTINE[content]
        assert quarantined == [(reason, f"{tmp_path / 'empty.csv'}{line}")]
