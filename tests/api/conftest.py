"""An in-process server (FastAPI's TestClient runs the lifespan) over a small CSV pipeline."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette 1.x suggests httpx2 for its test client; httpx still works and is what the project uses.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from agent_orchestrated_etl.api.app import create_app
from agent_orchestrated_etl.api.service import ServeOptions
from agent_orchestrated_etl.config import Settings

TOKEN = "test-token-4f1c"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

PEOPLE_YAML = """\
name: people
sources:
  people: {type: file, path: people.csv}
quality:
  - {not_null: [email], threshold: 0.5}
destination: {type: duckdb, path: out.duckdb, table: people, write: replace}
"""


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    rows = ["id,name,email"] + [f"{i},person {i},{'' if i % 10 == 0 else f'p{i}@example.com'}" for i in range(1, 101)]
    (tmp_path / "people.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


@pytest.fixture
def client(data_dir: Path) -> Iterator[TestClient]:
    # The memory alert compares this process's RSS with the budget, and this process is pytest,
    # which holds whatever earlier tests left (a 50 MiB value, say): give it room, so only the
    # alerts a test provokes fire.
    options = ServeOptions(
        settings=Settings(AGENT_ETL_MEMORY_LIMIT="16GB"),
        token=TOKEN,
        base_dir=data_dir,
        max_body_bytes=64 * 1024,
        dedup_seconds=600,
        public_read=True,
    )  # tests of reading without a token: test_security_api.py
    with TestClient(create_app(options), raise_server_exceptions=False) as test_client:
        yield test_client


def wait_for_run(
    client: TestClient,
    run_id: str,
    timeout: float = 30,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(f"/api/v1/runs/{run_id}", headers=headers)
        run = response.json()
        # A run the API started is in the store only once the runtime takes it: a 404 until then.
        if response.status_code != 404 and run.get("status") not in (None, "running"):
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish in {timeout}s")
