"""Workflows under serve: registered from a file or the API, started and resumed through the API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from fastapi.testclient import TestClient
from tests.api.conftest import AUTH, TOKEN, wait_for_run

from agent_orchestrated_etl.api.app import create_app
from agent_orchestrated_etl.api.service import ServeOptions
from agent_orchestrated_etl.config import Settings

WORKFLOW = """\
workflow: nightly
description: people into the lake, then into the warehouse
pipelines:
  - name: raw_people
    sources: {people: {type: file, path: people.csv}}
    destination: {type: file, path: lake/people, format: parquet, write: replace}
  - name: people_to_duckdb
    depends_on: [raw_people]
    sources: {people: {type: file, path: "lake/people/*.parquet"}}
    sla: {min_rows: 1}
    destination: {type: duckdb, path: wh.duckdb, table: people, write: replace}
"""


@pytest.fixture
def workflow_client(data_dir: Path) -> Iterator[TestClient]:
    """serve started with a workflow file on its command line."""
    (data_dir / "nightly.yaml").write_text(WORKFLOW)
    options = ServeOptions(
        settings=Settings(), token=TOKEN, base_dir=data_dir, specs=[data_dir / "nightly.yaml"], public_read=True
    )
    with TestClient(create_app(options), raise_server_exceptions=False) as client:
        yield client


def test_a_workflow_file_is_registered_and_runs_in_dependency_order(
    workflow_client: TestClient, data_dir: Path
) -> None:
    described = workflow_client.get("/api/v1/pipelines/nightly").json()
    assert (described["kind"], described["sources"], described["destinations"]) == ("workflow", ["people"], 2)
    assert [(p["name"], p["depends_on"]) for p in described["pipelines"]] == [
        ("raw_people", []),
        ("people_to_duckdb", ["raw_people"]),
    ]

    started = workflow_client.post("/api/v1/runs", json={"pipeline": "nightly"}, headers=AUTH)
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    run = wait_for_run(workflow_client, run_id)
    assert (run["pipeline"], run["status"]) == ("nightly", "succeeded")
    order = [d["subject"] for d in run["decisions"] if d["choice"] == "start"]
    assert order == ["pipeline raw_people", "pipeline people_to_duckdb"]
    children = {
        r["run_id"]: (r["pipeline"], r["status"], r["rows_written"])
        for r in workflow_client.get("/api/v1/runs").json()["runs"]
        if r["run_id"] != run_id
    }
    assert children == {
        f"{run_id}.raw_people": ("raw_people", "succeeded", 100),
        f"{run_id}.people_to_duckdb": ("people_to_duckdb", "succeeded", 100),
    }
    assert duckdb.connect(str(data_dir / "wh.duckdb"), read_only=True).execute(
        "select count(*) from people"
    ).fetchone() == (100,)
    assert workflow_client.get("/api/v1/pipelines/nightly").json()["last_run"]["run_id"] == run_id


def test_a_failed_workflow_resumes_only_the_pipelines_that_did_not_succeed(client: TestClient, data_dir: Path) -> None:
    spec = WORKFLOW.replace("lake/people/*.parquet", "later/*.csv")
    assert client.post("/api/v1/pipelines", json={"yaml": spec}, headers=AUTH).status_code == 201
    run_id = client.post("/api/v1/runs", json={"pipeline": "nightly"}, headers=AUTH).json()["run_id"]
    assert wait_for_run(client, run_id)["status"] == "failed"
    (data_dir / "later").mkdir()
    (data_dir / "later" / "people.csv").write_text((data_dir / "people.csv").read_text())
    assert client.post(f"/api/v1/runs/{run_id}/resume", headers=AUTH).status_code == 202
    run = wait_for_run(client, run_id)
    assert run["status"] == "succeeded", run
    kept = [d["subject"] for d in run["decisions"] if d["choice"] == "keep"]
    assert kept == ["pipeline raw_people"]


def test_a_schedule_inside_a_workflow_is_refused_with_its_line(client: TestClient) -> None:
    spec = WORKFLOW.replace(
        "    depends_on: [raw_people]\n",
        '    depends_on: [raw_people]\n    schedule: "0 3 * * *"\n    sla: {freshness: soon}\n',
    ).replace("    sla: {min_rows: 1}\n", "")
    response = client.post("/api/v1/pipelines", json={"yaml": spec}, headers=AUTH)
    assert response.status_code == 422, response.text
    assert [(p["line"], p["path"]) for p in response.json()["problems"]] == [
        (9, "pipelines[1].schedule"),
        (10, "pipelines[1].sla.freshness"),
    ]
    assert client.get("/api/v1/pipelines").json() == []
