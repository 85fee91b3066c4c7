"""Tokens with roles (issue 12, serve hardened): every route of the app, by every kind of caller; the audit log.

The routes are taken from the app itself, so a route added without a line in RULES fails
``test_every_route_has_a_rule``, and each rule is then checked against what the route answers.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastapi.routing
import pytest
import sqlalchemy as sa
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from tests.api.conftest import PEOPLE_YAML, TOKEN, wait_for_run

from agent_orchestrated_etl.api import websocket as ws
from agent_orchestrated_etl.api.app import create_app
from agent_orchestrated_etl.api.security import allowed_hosts
from agent_orchestrated_etl.api.service import ServeOptions
from agent_orchestrated_etl.config import Settings

PUBLIC, VIEWER, OPERATOR, ADMIN = "public", "viewer", "operator", "admin"
ORDER = [VIEWER, OPERATOR, ADMIN]
# The policy, written out: the lowest role each route allows.
RULES: dict[tuple[str, str], str] = {
    ("GET", "/"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/api/v1/openapi.json"): PUBLIC,
    ("GET", "/static"): PUBLIC,
    ("GET", "/docs-assets"): PUBLIC,
    ("GET", "/api/v1/pipelines"): VIEWER,
    ("GET", "/api/v1/pipelines/{name}"): VIEWER,
    ("POST", "/api/v1/pipelines/validate"): VIEWER,
    ("POST", "/api/v1/pipelines"): ADMIN,
    ("DELETE", "/api/v1/pipelines/{name}"): ADMIN,
    ("GET", "/api/v1/runs"): VIEWER,
    ("GET", "/api/v1/runs/{run_id}"): VIEWER,
    ("POST", "/api/v1/runs"): OPERATOR,
    ("POST", "/api/v1/runs/{run_id}/cancel"): OPERATOR,
    ("POST", "/api/v1/runs/{run_id}/resume"): OPERATOR,
    ("GET", "/api/v1/agents"): VIEWER,
    ("GET", "/api/v1/tools"): VIEWER,
    ("GET", "/api/v1/events"): VIEWER,
    ("GET", "/api/v1/alerts"): VIEWER,
    ("GET", "/api/v1/audit"): ADMIN,
    ("GET", "/metrics"): VIEWER,
    ("POST", "/api/v1/session"): VIEWER,
    ("GET", "/api/v1/session"): VIEWER,
    ("DELETE", "/api/v1/session"): VIEWER,
    ("WEBSOCKET", "/ws"): VIEWER,
}
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/pipelines"): {"yaml": PEOPLE_YAML},
    ("POST", "/api/v1/pipelines/validate"): {"yaml": PEOPLE_YAML},
    ("POST", "/api/v1/runs"): {"pipeline": "people"},
}


def app_routes(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route; FastAPI 0.16x keeps included routers unexpanded in ``app.routes``."""
    expand = getattr(fastapi.routing, "iter_route_contexts", None)
    contexts = [(c.original_route, c.path) for c in expand(app.routes)] if expand else [(r, r.path) for r in app.routes]
    found = []
    for route, path in contexts:
        if isinstance(route, WebSocketRoute):
            found.append(("WEBSOCKET", path))
        elif isinstance(route, Mount):
            found.append(("GET", path))
        elif isinstance(route, Route):
            found += [(method, path) for method in sorted(route.methods or ()) if method != "HEAD"]
    return found


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str], str]]:
    """Serve as the CLI starts it (no --public-read), with a token of each role besides the single admin token,
    a registered pipeline and a finished run."""
    data_dir = tmp_path_factory.mktemp("roles")
    (data_dir / "people.csv").write_text("id,name,email\n" + "".join(f"{i},p{i},p{i}@example.com\n" for i in range(10)))
    options = ServeOptions(
        settings=Settings(AGENT_ETL_MEMORY_LIMIT="16GB", AGENT_ETL_HOME=str(data_dir / "home")),
        token=TOKEN,
        base_dir=data_dir,
        allowed_hosts=allowed_hosts("127.0.0.1", []),
    )
    with TestClient(create_app(options), base_url="http://127.0.0.1:8080", raise_server_exceptions=False) as client:
        tokens = {role: client.app.state.server.tokens.create(f"{role}-bot", role) for role in ORDER}  # type: ignore[attr-defined]
        admin = {"Authorization": f"Bearer {TOKEN}"}
        assert client.post("/api/v1/pipelines", json={"yaml": PEOPLE_YAML}, headers=admin).status_code == 201
        run_id = client.post("/api/v1/runs", json={"pipeline": "people"}, headers=admin).json()["run_id"]
        wait_for_run(client, run_id, headers=admin)
        yield client, tokens, run_id


def test_every_route_has_a_rule(served: tuple[TestClient, dict[str, str], str]) -> None:
    client, _, _ = served
    assert sorted(app_routes(client.app)) == sorted(RULES)


def _call(client: TestClient, method: str, path: str, token: str | None, run_id: str) -> int:
    url = path.replace("{name}", "people").replace("{run_id}", run_id)
    if url in ("/static", "/docs-assets"):
        url += "/app.js" if url == "/static" else "/swagger-ui.css"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if method == "WEBSOCKET":
        with client.websocket_connect(url, headers={**headers, "Host": "127.0.0.1:8080"}) as socket:
            if not token:
                socket.send_text(json.dumps({}))
            try:
                return 200 if json.loads(socket.receive_text())["type"] == "hello" else 500
            except WebSocketDisconnect as closed:
                return 401 if closed.code == ws.UNAUTHORIZED else 500
    response = client.request(method, url, headers=headers, json=BODIES.get((method, path)))
    client.cookies.clear()  # POST /session sets one, which would stand in for the token afterwards
    assert "traceback" not in response.text.lower()
    if response.status_code in (401, 403):
        assert response.headers["content-type"] == "application/problem+json"
    return response.status_code


@pytest.mark.parametrize("route", sorted(RULES), ids=lambda r: f"{r[0]} {r[1]}")
def test_each_route_answers_each_role_as_its_rule_says(
    served: tuple[TestClient, dict[str, str], str], route: tuple[str, str]
) -> None:
    client, tokens, run_id = served
    method, path = route
    rule = RULES[route]
    seen = {}
    for caller in ("nobody", "wrong", *ORDER, "default"):
        token = {"nobody": None, "wrong": "not-a-token", "default": TOKEN}.get(caller, tokens.get(caller))
        seen[caller] = _call(client, method, path, token, run_id)
    for caller, status in seen.items():
        role = ADMIN if caller == "default" else caller
        if rule == PUBLIC:
            allowed = True
        elif caller in ("nobody", "wrong"):
            assert status == 401, (caller, seen)
            continue
        else:
            allowed = ORDER.index(role) >= ORDER.index(rule)
        if allowed:
            assert status not in (401, 403) and status < 500, (caller, seen)
        else:
            assert status == 403, (caller, seen)


def test_every_mutating_call_is_audited_with_the_tokens_name_never_the_token(data_dir: Path) -> None:
    options = ServeOptions(settings=Settings(AGENT_ETL_MEMORY_LIMIT="16GB"), token=TOKEN, base_dir=data_dir)
    with TestClient(create_app(options), raise_server_exceptions=False) as client:
        tokens = {role: client.app.state.server.tokens.create(f"{role}-bot", role) for role in ORDER}  # type: ignore[attr-defined]
        _audited(client, tokens)


def _audited(client: TestClient, tokens: dict[str, str]) -> None:
    operator = {"Authorization": f"Bearer {tokens[OPERATOR]}"}
    viewer = {"Authorization": f"Bearer {tokens[VIEWER]}"}
    admin = {"Authorization": f"Bearer {tokens[ADMIN]}"}
    assert client.post("/api/v1/pipelines", json={"yaml": PEOPLE_YAML}, headers=admin).status_code == 201
    assert client.post("/api/v1/pipelines", json={"yaml": PEOPLE_YAML}, headers=operator).status_code == 403
    started = client.post("/api/v1/runs", json={"pipeline": "people"}, headers=operator)
    run_id = started.json()["run_id"]
    wait_for_run(client, run_id, headers=viewer)
    assert client.post(f"/api/v1/runs/{run_id}/cancel", headers=viewer).status_code == 403
    assert client.post(f"/api/v1/runs/{run_id}/cancel", headers=operator).status_code == 409
    assert (
        client.post("/api/v1/pipelines/validate", json={"yaml": PEOPLE_YAML}, headers=viewer).status_code == 200
    )  # reads
    assert client.delete("/api/v1/pipelines/people").status_code == 401
    assert client.get("/api/v1/audit", headers=operator).status_code == 403
    audit = client.get("/api/v1/audit", headers=admin).json()
    api_calls = [
        (e["actor"], e["action"], e["run_id"], e["pipeline"], e["detail"])
        for e in reversed(audit)
        if e["action"].startswith("api:")
    ]
    assert api_calls == [
        ("token:admin-bot", "api:register", None, "people", "POST /api/v1/pipelines -> 201"),
        ("token:operator-bot", "api:register", None, None, "POST /api/v1/pipelines -> 403"),
        ("token:operator-bot", "api:start_run", run_id, None, "POST /api/v1/runs -> 202"),
        ("token:viewer-bot", "api:cancel_run", run_id, None, f"POST /api/v1/runs/{run_id}/cancel -> 403"),
        ("token:operator-bot", "api:cancel_run", run_id, None, f"POST /api/v1/runs/{run_id}/cancel -> 409"),
        ("anonymous", "api:delete_pipeline", None, "people", "DELETE /api/v1/pipelines/people -> 401"),
    ]
    # The store keeps the tokens' hashes and names, never a token: not in any table.
    engine = client.app.state.server.runtime.store.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        everything = json.dumps(
            [
                [list(r) for r in conn.execute(sa.text(f"SELECT * FROM {t}"))]
                for t in sa.inspect(conn).get_table_names()
            ],
            default=str,
        )
    assert "admin-bot" in everything
    for token in [*tokens.values(), TOKEN]:
        assert token not in everything
