"""The metadata store a test runs against: the default SQLite file, or PostgreSQL (DATABASE_URL) in a fresh schema.

Import ``store_url`` into a test module to run its tests on both backends.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.store.records import _with_driver


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
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
