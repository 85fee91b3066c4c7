"""Register a pipeline, start a run through the API, and read it back with tasks, quality and decisions."""

from __future__ import annotations

import duckdb
from fastapi.testclient import TestClient
from tests.api.conftest import AUTH, PEOPLE_YAML, wait_for_run


def test_register_run_and_read_back(client: TestClient, data_dir) -> None:
    created = client.post("/api/v1/pipelines", json={"yaml": PEOPLE_YAML}, headers=AUTH)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/api/v1/pipelines/people"
    assert created.json()["sources"] == ["people"]
    again = client.post("/api/v1/pipelines", json={"yaml": PEOPLE_YAML}, headers=AUTH)
    assert again.status_code == 200

    started = client.post("/api/v1/runs", json={"pipeline": "people"}, headers=AUTH)
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    run = wait_for_run(client, run_id)

    assert run["status"] == "succeeded", run
    assert run["rows_read"] == 100
    assert [(c["destination"], c["rows"], c["quarantined_rows"]) for c in run["commits"]] == [("people", 90, 10)]
    assert [(t["id"], t["status"], t["rows"], t["rows_written"]) for t in run["tasks"]] == [
        ("people[0]>people", "succeeded", 100, 90)
    ]
    assert [(q["check"], q["rows_checked"], q["rows_failed"], q["passed"]) for q in run["quality"]] == [
        ("not_null(email)", 100, 10, True)
    ]
    assert run["decisions"][0]["subject"] == "plan"
    assert run["errors"] == []
    assert duckdb.connect(str(data_dir / "out.duckdb")).execute("select count(*) from people").fetchone() == (90,)

    listed = client.get("/api/v1/runs", params={"pipeline": "people"}).json()
    assert [r["run_id"] for r in listed["runs"]] == [run_id]
    assert listed["runs"][0]["rows_written"] == 90
    pipeline = client.get("/api/v1/pipelines/people").json()
    assert pipeline["last_run"]["run_id"] == run_id and pipeline["yaml"] == PEOPLE_YAML

    events = client.get("/api/v1/events", params={"run_id": run_id, "limit": 2}).json()
    assert [e["kind"] for e in events["events"]] == ["run_started", "decision"]
    rest = client.get("/api/v1/events", params={"run_id": run_id, "after": events["next_after"], "limit": 1000}).json()
    assert rest["events"][-1]["kind"] == "run_finished" and rest["next_after"] is None


def test_a_failing_run_shows_its_error_with_a_fix_hint(client: TestClient, data_dir) -> None:
    broken = PEOPLE_YAML.replace("people.csv", "missing.csv")
    assert client.post("/api/v1/pipelines", json={"yaml": broken}, headers=AUTH).status_code == 201
    run_id = client.post("/api/v1/runs", json={"pipeline": "people"}, headers=AUTH).json()["run_id"]
    run = wait_for_run(client, run_id)
    assert run["status"] == "failed"
    assert "missing.csv" in run["error"]


def test_agents_tools_and_cancel_of_a_finished_run(client: TestClient) -> None:
    agents = client.get("/api/v1/agents").json()
    assert {(a["name"], a["role"]) for a in agents} == {
        ("monitor", "monitor"),
        ("orchestrator", "orchestrator"),
        ("etl-1", "etl"),
        ("etl-2", "etl"),
    }
    etl = next(a for a in agents if a["name"] == "etl-1")
    assert etl["capabilities"] == [
        "extract_load",
        "profile",
        "pushdown",
        "recall",
        "remember",
        "sample",
        "stage",
        "transform_load",
    ]
    assert etl["rss_bytes"] > 10 * 2**20 and etl["heartbeat_age_seconds"] < 5
    tools = client.get("/api/v1/tools").json()
    assert sorted(t["name"] for t in tools) == [
        "extract_load",
        "profile",
        "pushdown",
        "recall",
        "remember",
        "sample",
        "stage",
        "transform_load",
    ]
    assert tools[0]["input_schema"]["required"] == ["task"]


def test_a_transform_run_reports_its_dag_and_source_rows(client: TestClient, data_dir) -> None:
    spec = PEOPLE_YAML.replace(
        "quality:\n  - {not_null: [email], threshold: 0.5}\n",
        "transforms:\n  - {name: grown, sql: 'SELECT * FROM people WHERE id > 40'}\n",
    )
    assert client.post("/api/v1/pipelines", json={"yaml": spec}, headers=AUTH).status_code == 201
    run_id = client.post("/api/v1/runs", json={"pipeline": "people"}, headers=AUTH).json()["run_id"]
    run = wait_for_run(client, run_id)
    assert run["status"] == "succeeded", run
    assert [(t["id"], t["kind"], t["depends_on"], t["rows"]) for t in run["tasks"]] == [
        ("people[0]>workspace", "stage", [], 100),
        ("grown>people", "transform_load", ["people[0]>workspace"], 60),
    ]
    assert (run["rows_read"], run["commits"][0]["rows"]) == (100, 60)


def test_resume_a_failed_run_once_its_input_is_there(client: TestClient, data_dir) -> None:
    import time

    spec = PEOPLE_YAML.replace("people.csv", "later.csv")
    client.post("/api/v1/pipelines", json={"yaml": spec}, headers=AUTH)
    run_id = client.post("/api/v1/runs", json={"pipeline": "people"}, headers=AUTH).json()["run_id"]
    assert wait_for_run(client, run_id)["status"] == "failed"
    (data_dir / "later.csv").write_text((data_dir / "people.csv").read_text())
    resumed = client.post(f"/api/v1/runs/{run_id}/resume", headers=AUTH)
    assert resumed.status_code == 202, resumed.text
    deadline = time.monotonic() + 30
    while (run := client.get(f"/api/v1/runs/{run_id}").json())["status"] != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (run["status"], [c["rows"] for c in run["commits"]]) == ("succeeded", [90])
