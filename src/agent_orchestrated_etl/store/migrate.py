"""Bring the metadata store to this agent-etl's schema, with the Alembic history in store/migrations.

Opening the store calls ``upgrade``. A store already at the head revision
costs two small queries. Otherwise the upgrade runs in one transaction (DDL is
transactional on SQLite and PostgreSQL, so a failed upgrade leaves the store
as it was) under a lock, so that two processes opening an old store at once
upgrade it once: a transaction-level advisory lock on PostgreSQL, the write
lock that BEGIN IMMEDIATE takes on SQLite.

A store made before migrations existed (tables, no ``alembic_version``) is
adopted: revision 0001 creates the tables it lacks, it is stamped at the
revision its columns show, and upgraded from there. A store at a revision
this version does not know was upgraded by a newer agent-etl and is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import metadata as package_metadata
from importlib import resources
from typing import TYPE_CHECKING

import sqlalchemy as sa

from agent_orchestrated_etl.exceptions import ConfigurationError
from agent_orchestrated_etl.store.schema import metadata

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

log = logging.getLogger(__name__)

# The newest revision in migrations/versions (a test checks they agree). A store
# already at it opens without importing Alembic, which would add about a fifth
# to the start of every agent-etl command.
HEAD = "0004"

# Any fixed 64-bit key will do; every agent-etl process must use the same one.
_ADVISORY_LOCK = int.from_bytes(b"aetl-mig", "big")
# How long a process waits on SQLite while another one upgrades the store.
_SQLITE_WAIT_SECONDS = 300


@dataclass(frozen=True)
class Revisions:
    current: str | None  # None: an empty store, or one made before migrations
    head: str


def upgrade(url: str, where: str) -> Revisions:
    """Upgrade the store at ``url`` to the head revision; returns the revisions it was at before and after.

    ``where`` names the store in messages (the URL without its password).
    Raises ConfigurationError for a store of a newer agent-etl, or one older than any revision.
    """
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            current = _current(conn)
        if current == HEAD:
            return Revisions(current, HEAD)
        with engine.begin() as conn:
            _lock(conn)
            current = _current(conn)  # another process may have upgraded it while we waited
            if current != HEAD:
                _upgrade(conn, current, where)
    finally:
        engine.dispose()
    return Revisions(current, HEAD)


def revisions(url: str) -> Revisions:
    """The store's revision and this version's head, without changing anything."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            current = _current(conn)
    finally:
        engine.dispose()
    return Revisions(current, HEAD)


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """Alembic's configuration without an alembic.ini: the shipped scripts, run on ``connection``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("agent_orchestrated_etl.store") / "migrations"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade(conn: sa.Connection, current: str | None, where: str) -> None:
    from alembic import command
    from alembic.util import CommandError

    config = alembic_config(conn)
    if current is not None:
        try:
            _scripts().get_revision(current)
        except CommandError:
            raise ConfigurationError(
                f"the metadata store is at revision {current}, which agent-etl {_version()} does not know (its newest"
                f" is {HEAD}): a newer agent-etl upgraded it",
                where=where,
                hint=(
                    "upgrade agent-etl (pip install -U agent-orchestrated-etl), or point DATABASE_URL at another store"
                ),
            ) from None
    inspector = sa.inspect(conn)
    adopting = current is None and inspector.has_table("runs")
    if adopting:
        has_definition = inspector.has_table("tasks") and "definition" in {
            c["name"] for c in inspector.get_columns("tasks")
        }
        log.info(
            "metadata store %s was made before migrations; adopting it at revision %s",
            where,
            "0002" if has_definition else "0001",
        )
        command.upgrade(config, "0001")
        if has_definition:
            command.stamp(config, "0002")
    if current is None and not adopting:
        log.debug("metadata store %s: creating it at revision %s", where, HEAD)  # a first run: nothing to tell the user
    else:
        log.info("metadata store %s: upgrading from revision %s to %s", where, current or "0001", HEAD)
    command.upgrade(config, "head")
    if adopting:
        _refuse_missing_columns(conn, where)


def _refuse_missing_columns(conn: sa.Connection, where: str) -> None:
    """An adopted store whose tables lack columns predates revision 0001; migrations cannot know its shape."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    missing: dict[str, list[str]] = {}
    for diff in diffs:
        if isinstance(diff, tuple) and diff[0] == "add_column":
            missing.setdefault(diff[2], []).append(diff[3].name)
    if missing:
        path = where.removeprefix("sqlite:///")
        raise ConfigurationError(
            f"the metadata store was made by an agent-etl older than its migrations (missing {missing})",
            where=where,
            hint=f"move it aside, e.g. mv {path} {path}.old, or point DATABASE_URL elsewhere",
        )


def _lock(conn: sa.Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})
    elif conn.dialect.name == "sqlite":
        # The driver has not begun a transaction yet (it does so before DML only); take the write lock now.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _current(conn: sa.Connection) -> str | None:
    """The store's revision, read without Alembic (see HEAD); None for an empty store or one made before migrations."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def _engine(url: str) -> sa.Engine:
    connect_args = {"timeout": _SQLITE_WAIT_SECONDS} if url.startswith("sqlite") else {}
    return sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=connect_args)


def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def _version() -> str:
    return package_metadata.version("agent-orchestrated-etl")
