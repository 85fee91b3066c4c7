"""Serve, hardened (issue 12, items 4 and 5): data root, tokens on reading routes, the Host check, file modes."""

from __future__ import annotations

import json
import os
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from tests.api.conftest import AUTH, PEOPLE_YAML, TOKEN, wait_for_run

from agent_orchestrated_etl.api.app import create_app
from agent_orchestrated_etl.api.security import allowed_hosts, resolve_token
from agent_orchestrated_etl.api.service import ServeOptions
from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.store.records import RunStore

READ_ROUTES = [
    "/api/v1/pipelines",
    "/api/v1/pipelines/people",
    "/api/v1/runs",
    "/api/v1/agents",
    "/api/v1/tools",
    "/api/v1/events",
    "/api/v1/alerts",
    "/metrics",
]


def spec(path: str, *, key: str = "sources") -> str:
    if key == "sources":
        return (
            f"name: escape\nsources:\n  people: {{type: file, path: '{path}'}}\ndestination: {{type: duckdb, path:"
            " out.duckdb, table: t}\n"
        )
    return (
        "name: escape\nsources:\n  people: {type: file, path: people.csv}\ndestination: {type: duckdb, path:"
        f" '{path}', table: t}}\n"
    )


@pytest.fixture
def private(data_dir: Path) -> Iterator[TestClient]:
    """Serve as the CLI starts it: reading needs the token, only its own names in Host."""
    options = ServeOptions(
        settings=Settings(), token=TOKEN, base_dir=data_dir, allowed_hosts=allowed_hosts("127.0.0.1", [])
    )
    with TestClient(create_app(options), base_url="http://127.0.0.1:8080", raise_server_exceptions=False) as client:
        yield client


def problems(response) -> list[dict]:  # type: ignore[no-untyped-def]
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()["problems"]


def test_a_spec_reaching_outside_the_data_root_is_refused_with_422_naming_its_line(
    client: TestClient, data_dir: Path
) -> None:
    root = data_dir.resolve()
    (data_dir / "etc").symlink_to("/etc")
    tail = f"a served spec reads and writes only inside the data root {root} (agent-etl serve --data-root)"
    cases = {
        spec("../../etc/passwd"): ("sources.people.path", "'../../etc/passwd' goes up with '..'", 3),
        spec("/etc/passwd"): ("sources.people.path", "'/etc/passwd' is outside the data root", 3),
        spec("etc/passwd"): ("sources.people.path", "'etc/passwd' leads outside the data root through a symlink", 3),
        spec("file:///etc/passwd"): ("sources.people.path", "'file:///etc/passwd' is outside the data root", 3),
        spec("~/x.csv"): ("sources.people.path", "'~/x.csv' is in a home directory", 3),
        spec("/tmp/anywhere.duckdb", key="destination"): (
            "destination.path",
            "'/tmp/anywhere.duckdb' is outside the data root",
            4,
        ),
    }
    for text, (path, reason, line) in cases.items():
        expected = [{"file": "<request body>", "line": line, "path": path, "message": f"{reason}; {tail}"}]
        assert problems(client.post("/api/v1/pipelines", json={"yaml": text}, headers=AUTH)) == expected
        assert client.post("/api/v1/pipelines/validate", json={"yaml": text}, headers=AUTH).json() == {
            "valid": False,
            "problems": expected,
        }
    outside = data_dir.parent / "x"
    assert problems(
        client.post("/api/v1/pipelines", json={"yaml": PEOPLE_YAML, "base_dir": str(outside)}, headers=AUTH)
    ) == [
        {
            "file": "<request body>",
            "line": None,
            "path": "base_dir",
            "message": f"{outside} is outside the server's data root {root} (agent-etl serve --data-root)",
        }
    ]
    assert (
        problems(client.post("/api/v1/pipelines", json={"yaml": PEOPLE_YAML, "base_dir": "../.."}, headers=AUTH))[0][
            "path"
        ]
        == "base_dir"
    )
    assert client.get("/api/v1/pipelines").json() == []
    # Inside the root, as before: a sub-directory as base_dir, a glob, and the run works.
    (data_dir / "sub").mkdir()
    (data_dir / "sub" / "people.csv").write_text((data_dir / "people.csv").read_text())
    assert (
        client.post("/api/v1/pipelines", json={"yaml": PEOPLE_YAML, "base_dir": "sub"}, headers=AUTH).status_code == 201
    )
    assert (
        client.post("/api/v1/pipelines/validate", json={"yaml": spec("sub/*.csv")}, headers=AUTH).json()["valid"]
        is True
    )
    run = wait_for_run(client, client.post("/api/v1/runs", json={"pipeline": "people"}, headers=AUTH).json()["run_id"])
    assert (run["status"], run["rows_read"]) == ("succeeded", 100)
    assert (data_dir / "sub" / "out.duckdb").exists()


def test_reading_routes_need_the_token_unless_public_read(private: TestClient, client: TestClient) -> None:
    for http in (private, client):
        assert http.post("/api/v1/pipelines", json={"yaml": PEOPLE_YAML}, headers=AUTH).status_code in (
            200,
            201,
        )  # one store
    for route in READ_ROUTES:
        refused = private.get(route)
        assert (route, refused.status_code) == (route, 401)
        assert refused.json()["type"].endswith("token-missing")
        assert "needs the API token (or start serve with --public-read)" in refused.json()["detail"]
        assert private.get(route, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert (route, private.get(route, headers=AUTH).status_code) == (route, 200)
        assert (route, client.get(route).status_code) == (route, 200)  # --public-read
    assert private.post("/api/v1/pipelines/validate", json={"yaml": PEOPLE_YAML}).status_code == 401
    assert private.post("/api/v1/pipelines/validate", json={"yaml": PEOPLE_YAML}, headers=AUTH).json()["valid"] is True
    # What carries no data stays open, so the dashboard can load and ask for the token.
    for route in ("/", "/api/v1/openapi.json", "/static/app.js"):
        assert private.get(route).status_code == 200


def test_only_the_servers_own_names_are_accepted_in_host(data_dir: Path) -> None:
    options = ServeOptions(
        settings=Settings(),
        token=TOKEN,
        base_dir=data_dir,
        allowed_hosts=allowed_hosts("127.0.0.1", ["etl.example.com"]),
    )
    with TestClient(create_app(options), raise_server_exceptions=False) as http:
        for host, status in {
            "127.0.0.1:8080": 200,
            "localhost:8080": 200,
            "[::1]:8080": 200,
            "etl.example.com": 200,
            "ETL.example.com:443": 200,
            "rebound.attacker.example:8080": 421,
            "testserver": 421,
            "": 421,
        }.items():
            response = http.get("/api/v1/runs", headers={**AUTH, "Host": host})
            assert (host, response.status_code) == (host, status)
        refused = http.get("/", headers={"Host": "rebound.attacker.example"})
        assert refused.headers["content-type"] == "application/problem+json"
        assert (
            refused.json()["detail"]
            == "this server does not answer to Host 'rebound.attacker.example'; start agent-etl serve with"
            " --allowed-host rebound.attacker.example if that is its name"
        )
        from starlette.websockets import WebSocketDisconnect

        with (
            pytest.raises(WebSocketDisconnect) as closed,
            http.websocket_connect("/ws", headers={**AUTH, "Host": "rebound.attacker.example"}),
        ):
            pass
        assert closed.value.code == 1008
    assert allowed_hosts("0.0.0.0", []) == frozenset({"127.0.0.1", "localhost", "::1"})
    assert allowed_hosts("10.0.0.5", ["*"]) is None


def test_the_store_and_home_are_created_private(tmp_path: Path) -> None:
    home = tmp_path / "new-home"
    RunStore(f"sqlite:///{home / 'agent-etl.db'}").engine.dispose()
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(home / "agent-etl.db").st_mode) == 0o600
    other = tmp_path / "other-home"
    resolve_token(other)
    assert stat.S_IMODE(os.stat(other).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(other / "api-token").st_mode) == 0o600


def test_a_workspace_creates_home_private_when_the_store_is_elsewhere(tmp_path: Path) -> None:
    from agent_orchestrated_etl.transform.workspace import Workspace

    home = tmp_path / "home"  # with DATABASE_URL on PostgreSQL, a run's workspace is the first to make it
    old = os.umask(0o022)
    try:
        Workspace(home / "runs" / "r1", memory_limit_bytes=256 * 1024 * 1024).close()
    finally:
        os.umask(old)
    for directory in (home, home / "runs", home / "runs" / "r1"):
        assert (directory, stat.S_IMODE(os.stat(directory).st_mode)) == (directory, 0o700)


def test_a_glob_match_that_links_out_of_the_data_root_is_not_read(client: TestClient, data_dir: Path) -> None:
    (data_dir / "in").mkdir()
    (data_dir / "in" / "a.csv").write_text((data_dir / "people.csv").read_text())
    secret = data_dir.parent / f"{data_dir.name}-outside.csv"
    secret.write_text("id,name,email\n1,SECRET-ROW,s@example.com\n")
    spec = PEOPLE_YAML.replace("path: people.csv", "path: 'in/*.csv'")
    # The glob's directory is inside the root, so the spec registers.
    assert client.post("/api/v1/pipelines", json={"yaml": spec}, headers=AUTH).status_code == 201
    (data_dir / "in" / "b.csv").symlink_to(secret)  # a link that appears after the check at registration
    run = wait_for_run(client, client.post("/api/v1/runs", json={"pipeline": "people"}, headers=AUTH).json()["run_id"])
    assert run["status"] == "failed"
    outside = (data_dir / "in").resolve()
    expected = f"in/b.csv matches the glob {data_dir}/in/*.csv but is a symlink to {secret}, outside {outside}"
    assert expected in run["error"]
    assert "SECRET-ROW" not in json.dumps(run)
