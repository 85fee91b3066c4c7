"""The program's own options: --version, and --debug wherever it is given, with a traceback on every failure."""

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

MISSING_FILE = """\
name: missing_file
sources:
  customers: {type: file, path: nowhere/customers.csv}
destination: {type: duckdb, path: out.duckdb, table: customers}
"""


def agent_etl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent_orchestrated_etl", *args],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_version_prints_the_installed_version(tmp_path: Path) -> None:
    result = agent_etl("--version", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, f"agent-etl {version('agent-orchestrated-etl')}\n")


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_before_or_after_the_command_shows_the_traceback_of_a_failed_run(tmp_path: Path, where: str) -> None:
    (tmp_path / "p.yaml").write_text(MISSING_FILE)
    args = ["--debug", "run", "p.yaml"] if where == "before" else ["run", "p.yaml", "--debug"]
    result = agent_etl(*args, cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "SourceNotFoundError" in result.stderr
    assert "error: source customers: file not found" in result.stderr

    plain = agent_etl("run", "p.yaml", cwd=tmp_path)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["validate", "missing.yaml", "--debug"], 2),  # the spec error path
        (["runs", "show", "nope", "--debug"], 1),  # a configuration error
        (["bogus", "--debug"], 2),  # a usage error
        (["profile", "nowhere.csv", "--debug"], 1),
    ],
)
def test_debug_adds_a_traceback_on_every_failure_path(tmp_path: Path, args: list[str], code: int) -> None:
    result = agent_etl(*args, cwd=tmp_path)
    assert result.returncode == code, result.stderr
    assert "Traceback" in result.stderr
    without = agent_etl(*[a for a in args if a != "--debug"], cwd=tmp_path)
    assert without.returncode == code and "Traceback" not in without.stderr


def test_debug_after_a_double_dash_is_not_the_programs_option(tmp_path: Path) -> None:
    result = agent_etl("validate", "--", "--debug", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
