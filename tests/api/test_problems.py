"""Bad requests get the right status and an RFC 9457 problem-details body; none crashes the server."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from tests.api.conftest import AUTH, PEOPLE_YAML

PROBLEM = "application/problem+json"


def assert_problem(response, status: int, type_: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert (body["status"], body["type"]) == (status, type_)
    assert body["title"] and body["detail"] and body["instance"] == response.request.url.path
    return body


def test_unknown_pipeline_and_run(client: TestClient) -> None:
    body = assert_problem(
        client.post("/api/v1/runs", json={"pipeline": "nope"}, headers=AUTH),
        404,
        "urn:agent-etl:problem:unknown-pipeline",
    )
    assert (
        body["detail"]
        == "no pipeline named 'nope' is registered (registered: none yet); POST its YAML to /api/v1/pipelines"
    )
    assert_problem(client.get("/api/v1/pipelines/nope"), 404, "urn:agent-etl:problem:unknown-pipeline")
    assert_problem(client.get("/api/v1/runs/20990101T000000-000000"), 404, "urn:agent-etl:problem:unknown-run")
    assert_problem(client.get("/api/v1/no-such-route"), 404, "about:blank")


def test_invalid_spec_lists_every_problem_with_its_line(client: TestClient) -> None:
    bad = (
        PEOPLE_YAML.replace("write: replace", "write: replace, colour: blue")
        + 'schedule: "every minute"\nsla: {max_duration: soon}\n'
    )
    body = assert_problem(
        client.post("/api/v1/pipelines", json={"yaml": bad}, headers=AUTH), 422, "urn:agent-etl:problem:invalid-spec"
    )
    assert [(p["line"], p["path"]) for p in body["problems"]] == [(6, "destination.colour")]
    # Once the model is valid, the fields only serve reads are checked too.
    bad = PEOPLE_YAML + 'schedule: "every minute"\nsla: {max_duration: soon}\n'
    body = assert_problem(
        client.post("/api/v1/pipelines", json={"yaml": bad}, headers=AUTH), 422, "urn:agent-etl:problem:invalid-spec"
    )
    assert [(p["line"], p["path"], p["message"]) for p in body["problems"]] == [
        (
            7,
            "schedule",
            "'every minute' is not a five-field cron expression (minute hour day month weekday), e.g. '*/15 * * * *'",
        ),
        (8, "sla.max_duration", "not a duration: 'soon' (use e.g. 90s, 15m, 1h30m, 2d)"),
    ]
    assert_problem(
        client.post("/api/v1/pipelines", json={"yaml": "name: [unclosed"}, headers=AUTH),
        422,
        "urn:agent-etl:problem:invalid-spec",
    )
    assert client.get("/api/v1/pipelines").json() == []
    checked = client.post("/api/v1/pipelines/validate", json={"yaml": bad}).json()
    assert checked["valid"] is False and len(checked["problems"]) == 2
    assert client.post("/api/v1/pipelines/validate", json={"yaml": PEOPLE_YAML}).json() == {
        "valid": True,
        "pipeline": "people",
        "kind": "pipeline",
        "problems": [],
    }


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("post", "/api/v1/pipelines", {"yaml": PEOPLE_YAML}),
        ("post", "/api/v1/runs", {"pipeline": "people"}),
        ("post", "/api/v1/runs/x/cancel", None),
        ("post", "/api/v1/runs/x/resume", None),
        ("delete", "/api/v1/pipelines/people", None),
    ],
)
def test_mutating_routes_need_the_token(client: TestClient, method: str, path: str, payload) -> None:
    kwargs = {"json": payload} if payload is not None else {}
    missing = assert_problem(getattr(client, method)(path, **kwargs), 401, "urn:agent-etl:problem:token-missing")
    assert "Authorization: Bearer" in missing["detail"]
    wrong = getattr(client, method)(path, headers={"Authorization": "Bearer not-it"}, **kwargs)
    assert_problem(wrong, 401, "urn:agent-etl:problem:token-wrong")
    assert wrong.headers["www-authenticate"] == 'Bearer realm="agent-etl", error="invalid_token"'


def test_oversized_and_malformed_bodies(client: TestClient) -> None:
    huge = {"yaml": PEOPLE_YAML + "#" * (70 * 1024)}
    assert_problem(client.post("/api/v1/pipelines", json=huge, headers=AUTH), 413, "about:blank")

    def chunks():
        for _ in range(70):
            yield b"x" * 1024

    streamed = client.post("/api/v1/pipelines/validate", content=chunks(), headers={"content-type": "application/json"})
    assert_problem(streamed, 413, "about:blank")
    body = assert_problem(
        client.post("/api/v1/runs", content=b"{not json", headers={**AUTH, "content-type": "application/json"}),
        422,
        "urn:agent-etl:problem:invalid-request",
    )
    assert body["errors"][0]["where"].startswith("body")
    assert_problem(
        client.post("/api/v1/runs", json={"pipe": "x"}, headers=AUTH), 422, "urn:agent-etl:problem:invalid-request"
    )
    assert_problem(client.get("/api/v1/runs", params={"limit": 0}), 422, "urn:agent-etl:problem:invalid-request")
    # The server is still there.
    assert client.get("/api/v1/pipelines").status_code == 200


def test_resume_and_cancel_of_a_finished_run_are_conflicts(client: TestClient) -> None:
    client.post("/api/v1/pipelines", json={"yaml": PEOPLE_YAML}, headers=AUTH)
    run_id = client.post("/api/v1/runs", json={"pipeline": "people"}, headers=AUTH).json()["run_id"]
    from tests.api.conftest import wait_for_run

    wait_for_run(client, run_id)
    body = assert_problem(
        client.post(f"/api/v1/runs/{run_id}/resume", headers=AUTH), 409, "urn:agent-etl:problem:run-not-resumable"
    )
    assert (body["run_id"], body["run_status"]) == (run_id, "succeeded")
    conflict = assert_problem(
        client.post(f"/api/v1/runs/{run_id}/cancel", headers=AUTH), 409, "urn:agent-etl:problem:run-not-running"
    )
    assert conflict["run_status"] == "succeeded"


def test_docs_are_served_without_a_cdn(client: TestClient) -> None:
    page = client.get("/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert "/api/v1/runs/{run_id}/cancel" in client.get("/api/v1/openapi.json").json()["paths"]


def test_a_second_run_of_a_running_pipeline_is_refused(client: TestClient, data_dir) -> None:
    import threading

    client.post("/api/v1/pipelines", json={"yaml": PEOPLE_YAML}, headers=AUTH)
    srv = client.app.state.server  # type: ignore[attr-defined]
    gate = threading.Event()
    original = srv.runtime.run

    async def held_run(*args, **kwargs):  # keep the first run "going" until the test says so
        import asyncio

        await asyncio.to_thread(gate.wait, 10)
        return await original(*args, **kwargs)

    srv.runtime.run = held_run
    first = client.post("/api/v1/runs", json={"pipeline": "people"}, headers=AUTH).json()["run_id"]
    body = assert_problem(
        client.post("/api/v1/runs", json={"pipeline": "people"}, headers=AUTH),
        409,
        "urn:agent-etl:problem:run-already-running",
    )
    assert body["run_id"] == first
    gate.set()
    from tests.api.conftest import wait_for_run

    assert wait_for_run(client, first)["status"] == "succeeded"


def test_resume_of_a_superseded_run_is_a_conflict(client: TestClient, data_dir) -> None:
    from tests.api.conftest import wait_for_run

    client.post("/api/v1/pipelines", json={"yaml": PEOPLE_YAML.replace("people.csv", "later.csv")}, headers=AUTH)
    failed = client.post("/api/v1/runs", json={"pipeline": "people"}, headers=AUTH).json()["run_id"]
    assert wait_for_run(client, failed)["status"] == "failed"
    (data_dir / "later.csv").write_text((data_dir / "people.csv").read_text())
    second = client.post("/api/v1/runs", json={"pipeline": "people"}, headers=AUTH).json()[
        "run_id"
    ]  # a new run, not a resume
    assert wait_for_run(client, second)["status"] == "succeeded"
    body = assert_problem(
        client.post(f"/api/v1/runs/{failed}/resume", headers=AUTH), 409, "urn:agent-etl:problem:run-not-resumable"
    )
    assert (body["run_id"], body["run_status"]) == (failed, "superseded")
    assert body["detail"].startswith(
        f"run {failed} cannot be resumed: it was superseded by run {second}; start a new run"
    )
