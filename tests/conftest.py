"""Shared fixtures: server URLs from the environment, and isolation of AGENT_ETL_HOME.

A test that needs a server takes its fixture. When the server does not answer,
the test is skipped on a developer's machine, but under CI=true it fails:
CI never passes by skipping silently.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

SERVERS = {
    "postgres": ("AGENT_ETL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    "mysql": ("AGENT_ETL_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
    "redis": ("AGENT_ETL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
}


def server_url(name: str) -> str:
    """The server's URL if it answers; otherwise skip (or fail under CI=true)."""
    env, default = SERVERS[name]
    url = os.environ.get(env, default)
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=2):
            pass
    except OSError as exc:
        message = f"{name} server at {parts.hostname}:{parts.port} does not answer ({exc}); set {env}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return url


def run_sql(url: str, *statements: str) -> list[tuple]:
    """Run statements in one transaction on a test server; the rows of the last one (if it returns any)."""
    import sqlalchemy as sa

    driver = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql"}[url.split("://", 1)[0]]
    engine = sa.create_engine(driver + "://" + url.split("://", 1)[1])
    try:
        with engine.begin() as conn:
            for statement in statements:
                result = conn.exec_driver_sql(statement)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


@pytest.fixture
def postgres_url() -> str:
    return server_url("postgres")


@pytest.fixture
def mysql_url() -> str:
    return server_url("mysql")


@pytest.fixture
def redis_url() -> str:
    return server_url("redis")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The metadata store a test runs against: the default SQLite file, or PostgreSQL in a fresh schema."""
    import uuid

    import sqlalchemy as sa

    from agent_orchestrated_etl.config import Settings
    from agent_orchestrated_etl.store.records import _with_driver

    if request.param == "sqlite":
        yield Settings().store_url
        return
    server: str = request.getfixturevalue("postgres_url")
    name = f"aetl_store_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(_with_driver(server), poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {name}")
    url = f"{server}?options=-csearch_path%3D{name}"
    monkeypatch.setenv("DATABASE_URL", url)
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")
        admin.dispose()


@pytest.fixture(autouse=True)
def etl_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own metadata store and workspace directory."""
    home = tmp_path / "agent-etl-home"
    monkeypatch.setenv("AGENT_ETL_HOME", str(home))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    yield home


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """Secrets one test registered for redaction (redaction.py) must not mask values in the next."""
    yield
    from agent_orchestrated_etl import redaction

    redaction.forget()


@pytest.fixture(scope="session")
def _moto_url() -> Iterator[str]:
    from tests.aws_servers import moto_server

    with moto_server() as url:
        yield url


@pytest.fixture
def aws(_moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """moto's server, emptied, as this process's AWS: AWS_ENDPOINT_URL and moto's admin keys in the environment."""
    from tests.aws_servers import REGION, MotoAWS

    from agent_orchestrated_etl.connectors.files import filesystems
    from agent_orchestrated_etl.secrets import PROVIDERS

    for name, value in {
        "AWS_ENDPOINT_URL": _moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_STS"):
        monkeypatch.delenv(name, raising=False)
    PROVIDERS["aws-sm"].forget()  # type: ignore[attr-defined]
    yield MotoAWS(_moto_url)
    PROVIDERS["aws-sm"].forget()  # type: ignore[attr-defined]
    filesystems.forget()
