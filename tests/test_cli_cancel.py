"""Ctrl-C during `agent-etl run` names the run to resume, however early it comes."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent_orchestrated_etl import orchestrator
from agent_orchestrated_etl.cli import app

SPEC = """\
name: early
sources:
  customers: {type: file, path: customers.csv}
destination: {type: duckdb, path: out.duckdb, table: customers}
"""


@pytest.mark.parametrize("as_json", [False, True])
def test_ctrl_c_before_the_first_event_still_names_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_json: bool
) -> None:
    (tmp_path / "customers.csv").write_text("id\n1\n")
    (tmp_path / "p.yaml").write_text(SPEC)
    given: list[str | None] = []

    def interrupted(*_args: object, listener: object = None, run_id: str | None = None) -> None:
        given.append(run_id)
        raise KeyboardInterrupt  # as a SIGINT that lands after the run is stored, before any event

    monkeypatch.setattr(orchestrator, "run_pipeline", interrupted)
    monkeypatch.setenv("AGENT_ETL_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "p.yaml"), *(["--json"] if as_json else [])])
    assert result.exit_code == 130
    assert given and given[0], "the CLI chose the run id before starting the run"
    assert f"agent-etl resume {given[0]}" in result.output
    assert "<run id>" not in result.output
