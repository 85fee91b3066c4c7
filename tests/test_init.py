"""`agent-etl init`: each starter spec is written, and validates; files-to-parquet also runs on the embedded defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from agent_orchestrated_etl.cli import app
from agent_orchestrated_etl.cli_memory import TEMPLATES

runner = CliRunner()


@pytest.mark.parametrize("template", TEMPLATES)
def test_each_template_writes_a_commented_spec_that_validates(
    template: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PGPASSWORD", "API_TOKEN"):
        monkeypatch.setenv(name, "not-a-real-secret")
    monkeypatch.setenv("WAREHOUSE_URL", "postgresql://etl:pw@localhost:5432/dw")
    spec = tmp_path / f"{template}.yaml"
    written = runner.invoke(app, ["init", "--template", template, "-o", str(spec)])
    assert written.exit_code == 0, written.output
    text = spec.read_text()
    assert text.startswith("# ") and text.count("#") >= 5
    # Offline: the servers the templates name are examples; the spec, its keys and its SQL are checked.
    checked = runner.invoke(app, ["validate", "--offline", "--json", str(spec)])
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout)["valid"] is True


def test_the_files_to_parquet_template_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["init", "--template", "files-to-parquet"]).exit_code == 0
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("id,name\n" + "".join(f"{i},n{i}\n" for i in range(1, 40)) + ",nameless\n")
    (tmp_path / "data" / "b.csv").write_text("id,name\n100,x\n")
    assert runner.invoke(app, ["validate", "pipeline.yaml"]).exit_code == 0
    ran = runner.invoke(app, ["run", "pipeline.yaml", "--json"])
    assert ran.exit_code == 0, ran.output
    manifest = json.loads((tmp_path / "lake" / "records" / "_manifest.json").read_text())
    files = [tmp_path / "lake" / "records" / f for f in manifest["files"]]
    rows = sum(pq.read_metadata(f).num_rows for f in files)
    assert rows == 40  # 41 rows read, the one without an id quarantined


def test_init_refuses_to_overwrite_and_names_the_templates(tmp_path: Path) -> None:
    spec = tmp_path / "pipeline.yaml"
    spec.write_text("mine")
    kept = runner.invoke(app, ["init", "-o", str(spec)])
    assert kept.exit_code != 0 and "exists already" in str(kept.exception) and spec.read_text() == "mine"
    unknown = runner.invoke(app, ["init", "--template", "oracle-to-excel", "-o", str(tmp_path / "x.yaml")])
    assert "postgres-to-duckdb, api-to-postgres" in unknown.exception.hint  # type: ignore[union-attr]
