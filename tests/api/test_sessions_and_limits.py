"""`agent-etl tokens`, shared by replicas of serve; the dashboard's session cookie; the rate limit; CORS (issue 12)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from typer.testing import CliRunner

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from tests.api.conftest import AUTH, PEOPLE_YAML, TOKEN

from agent_orchestrated_etl.api.app import create_app
from agent_orchestrated_etl.api.limits import RateLimiter
from agent_orchestrated_etl.api.security import SESSION_COOKIE, allowed_hosts
from agent_orchestrated_etl.api.service import ServeOptions
from agent_orchestrated_etl.cli import app as cli
from agent_orchestrated_etl.config import Settings

ORIGIN = "http://127.0.0.1:8080"


@contextmanager
def serving(data_dir: Path, **options: object) -> Iterator[TestClient]:
    settings = Settings(AGENT_ETL_MEMORY_LIMIT="16GB")
    served = ServeOptions(
        settings=settings, token=TOKEN, base_dir=data_dir, allowed_hosts=allowed_hosts("127.0.0.1", []), **options
    )  # type: ignore[arg-type]
    with TestClient(create_app(served), base_url=ORIGIN, raise_server_exceptions=False) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_tokens_made_by_the_cli_work_in_every_replica_until_revoked(data_dir: Path) -> None:
    runner = CliRunner()
    made = runner.invoke(cli, ["tokens", "create", "ci-bot", "--role", "operator"])
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().splitlines()[-1]
    assert len(token) >= 40
    listed = runner.invoke(cli, ["tokens", "list"])
    assert listed.stdout.split()[:2] == ["ci-bot", "operator"] and token not in listed.stdout
    again = runner.invoke(cli, ["tokens", "create", "ci-bot", "--role", "viewer"])
    assert again.exit_code != 0 and "agent-etl tokens revoke ci-bot" in str(again.exception)
    bad_role = runner.invoke(cli, ["tokens", "create", "x", "--role", "root"])
    assert "unknown role 'root'" in str(bad_role.exception)
    with serving(data_dir) as one, serving(data_dir) as two:  # two servers on one store, as replicas behind a balancer
        assert one.post("/api/v1/pipelines", json={"yaml": PEOPLE_YAML}, headers=AUTH).status_code == 201
        for replica in (one, two):
            assert replica.get("/api/v1/session", headers=bearer(token)).json() == {
                "name": "ci-bot",
                "role": "operator",
            }
            assert replica.delete("/api/v1/pipelines/people", headers=bearer(token)).status_code == 403
        # A session opened on one replica is good on the other, and revoking the token ends both.
        assert one.post("/api/v1/session", headers=bearer(token)).status_code == 204
        cookie = one.cookies[SESSION_COOKIE]
        one.cookies.clear()
        assert two.get("/api/v1/runs", cookies={SESSION_COOKIE: cookie}).status_code == 200
        assert runner.invoke(cli, ["tokens", "revoke", "ci-bot"]).exit_code == 0
        for replica in (one, two):
            assert replica.get("/api/v1/runs", headers=bearer(token)).status_code == 401
            assert replica.get("/api/v1/runs", cookies={SESSION_COOKIE: cookie}).status_code == 401
    gone = runner.invoke(cli, ["tokens", "revoke", "ci-bot"])
    assert gone.exit_code != 0 and "no token named 'ci-bot'" in str(gone.exception)


def test_the_dashboard_trades_its_token_for_an_httponly_strict_cookie(data_dir: Path) -> None:
    with serving(data_dir) as client:
        assert client.post("/api/v1/session").status_code == 401
        assert client.post("/api/v1/session", headers=bearer("wrong")).status_code == 401
        opened = client.post("/api/v1/session", headers=AUTH)
        assert opened.status_code == 204
        cookie = opened.headers["set-cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}=")
        assert {"httponly", "samesite=strict", "path=/", "max-age=43200"} <= {
            p.strip().lower() for p in cookie.split(";")
        }
        assert "secure" not in cookie.lower()  # plain HTTP here; test_tls.py sees Secure over HTTPS
        assert TOKEN not in cookie
        assert client.get("/api/v1/session").json() == {"name": "default", "role": "admin"}
        assert (
            client.post("/api/v1/pipelines", json={"yaml": PEOPLE_YAML}, headers={"Origin": ORIGIN}).status_code == 201
        )
        # A page on another origin of this site gets the cookie sent along (SameSite compares sites): refused.
        for origin in ({}, {"Origin": "http://127.0.0.1:3000"}):
            refused = client.delete("/api/v1/pipelines/people", headers=origin)
            assert refused.status_code == 403 and refused.json()["type"] == "urn:agent-etl:problem:cross-origin"
        assert client.delete("/api/v1/session", headers={"Origin": ORIGIN}).status_code == 204
        assert client.get("/api/v1/runs").status_code == 401
    with serving(data_dir, session_hours=1 / 3600) as client:
        assert client.post("/api/v1/session", headers=AUTH).status_code == 204
        assert client.get("/api/v1/runs").status_code == 200
        time.sleep(1.2)
        assert client.get("/api/v1/runs").status_code == 401


def test_each_token_is_rate_limited_with_429_and_retry_after(data_dir: Path) -> None:
    with serving(data_dir, rate_per_minute=60) as client:  # a burst of 6, then one a second
        viewer = client.app.state.server.tokens.create("slow-bot", "viewer")  # type: ignore[attr-defined]
        statuses = [client.get("/api/v1/runs", headers=AUTH).status_code for _ in range(8)]
        assert statuses[:6] == [200] * 6 and statuses[6:] == [429, 429]
        limited = client.get("/api/v1/runs", headers=AUTH)
        assert limited.headers["content-type"] == "application/problem+json"
        assert limited.headers["retry-after"] == "1"
        assert "more than 60 requests a minute from token:default" in limited.json()["detail"]
        assert client.get("/api/v1/runs", headers=bearer(viewer)).status_code == 200  # another token, another bucket
        assert [client.get("/api/v1/runs", headers=bearer("guess")).status_code for _ in range(7)][
            -1
        ] == 429  # guessing too
        time.sleep(1.1)
        assert client.get("/api/v1/runs", headers=AUTH).status_code == 200


def test_the_rate_limiter_refills_and_forgets_idle_callers() -> None:
    now = [0.0]
    limiter = RateLimiter(600, clock=lambda: now[0])
    assert [limiter.acquire("a") for _ in range(60)] == [None] * 60
    assert limiter.acquire("a") == 0.1
    now[0] += 0.1
    assert limiter.acquire("a") is None
    limiter.MAX_KEYS = 3
    for key in "bcd":
        limiter.acquire(key)
    now[0] += 60
    assert limiter.acquire("e") is None
    assert len(limiter._buckets) <= 3


def test_cors_is_closed_unless_origins_are_configured(data_dir: Path) -> None:
    preflight = {
        "Origin": "https://app.example.com",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    with serving(data_dir) as client:
        answer = client.options("/api/v1/runs", headers=preflight)
        assert "access-control-allow-origin" not in answer.headers
        assert (
            "access-control-allow-origin"
            not in client.get("/api/v1/runs", headers={**AUTH, "Origin": "https://app.example.com"}).headers
        )
    with serving(data_dir, cors_origins=("https://app.example.com",)) as client:
        answer = client.options("/api/v1/runs", headers=preflight)
        assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "authorization" in answer.headers["access-control-allow-headers"].lower()
        other = client.options("/api/v1/runs", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        got = client.get("/api/v1/runs", headers={**AUTH, "Origin": "https://app.example.com"})
        assert got.headers["access-control-allow-origin"] == "https://app.example.com"
