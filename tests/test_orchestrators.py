"""The Airflow, Dagster and Prefect examples of docs/orchestrators.md, each run in a virtualenv of its own.

An orchestrator's pins never touch the dev environment: each gets ``python -m venv``
and ``pip install <orchestrator> <this package>``, kept under
``$AGENT_ETL_ORCHESTRATOR_VENVS`` (default ``~/.cache/agent-etl/orchestrators``) so
that a later run only reinstalls agent-etl. The example is the ```` ```python venv=NAME ````
block of the doc, run as a script; the test then reads the table it loaded.

The first install of the three takes over five minutes, too long for CI, so the test
is marked slow: ``pytest -m slow tests/test_orchestrators.py``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "orchestrators.md"

#: What each virtualenv installs besides agent-etl; docs/orchestrators.md names the same ranges.
ORCHESTRATORS = {
    "airflow": "apache-airflow>=3.1,<4",
    "dagster": "dagster>=1.8,<2",
    "prefect": "prefect>=3,<4",
}

BLOCK = re.compile(r"^```python venv=(?P<name>\w+)\n(?P<code>.*?)^```$", re.M | re.S)


def examples() -> dict[str, str]:
    return {m["name"]: m["code"] for m in BLOCK.finditer(DOC.read_text())}


def test_the_doc_has_one_example_per_orchestrator() -> None:
    assert sorted(examples()) == sorted(ORCHESTRATORS)
    for requirement in ORCHESTRATORS.values():
        assert f"pip install '{requirement}'" in DOC.read_text(), f"docs/orchestrators.md should name {requirement}"


def _venv(name: str) -> Path:
    home = Path(os.environ.get("AGENT_ETL_ORCHESTRATOR_VENVS", "~/.cache/agent-etl/orchestrators")).expanduser()
    venv = home / name
    python = venv / "bin" / "python"
    marker = venv / "installed.txt"
    if not marker.exists() or marker.read_text() != ORCHESTRATORS[name]:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        _pip(python, ORCHESTRATORS[name], str(ROOT))
        marker.write_text(ORCHESTRATORS[name])
    else:  # the orchestrator is there: only this tree's agent-etl is new
        _pip(python, "--force-reinstall", "--no-deps", str(ROOT))
    return python


def _pip(python: Path, *args: str) -> None:
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a first install, Airflow's `db migrate` and Prefect's temporary server, on a busy machine
@pytest.mark.parametrize("name", sorted(ORCHESTRATORS))
def test_the_example_runs_in_its_orchestrator(name: str, tmp_path: Path) -> None:
    started = time.perf_counter()
    python = _venv(name)
    installed = time.perf_counter() - started
    script = tmp_path / f"{name}_example.py"
    script.write_text(examples()[name])
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "VIRTUAL_ENV", "AIRFLOW", "PREFECT", "DAGSTER"))
    }
    env |= {
        "AGENT_ETL_HOME": str(tmp_path / "etl-home"),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        # The flow starts a temporary Prefect server; on a busy machine it needs longer than its default 20 s.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
    (tmp_path / "dagster").mkdir()
    if name == "airflow":  # dag.test() needs the metadata database
        migrate = subprocess.run(
            [str(python.parent / "airflow"), "db", "migrate"], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert migrate.returncode == 0, migrate.stderr[-3000:]
    ran = subprocess.run([str(python), str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as db:
        assert db.sql("SELECT count(*), count(DISTINCT order_id), sum(total) FROM orders").fetchone() == (
            1000,
            1000,
            sum(i * 1.5 for i in range(1, 1001)),
        )
    # The progress lines reached the orchestrator's log.
    assert "1000 written" in ran.stdout + ran.stderr
    print(f"{name}: venv ready in {installed:.0f} s, example ran in {time.perf_counter() - started - installed:.0f} s")
