"""Serve's API tokens and the dashboard's sessions, in the metadata store so replicas of serve share them.

A token is 32 random bytes, so its SHA-256 is all the store keeps: a slow
password hash buys nothing against a value that cannot be guessed, and a copy
of the store does not let anyone in. The token itself is shown once, by
``agent-etl tokens create``. A session (the dashboard's cookie) is kept the
same way, with its expiry; revoking a token ends its sessions.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from agent_orchestrated_etl.exceptions import ConfigurationError
from agent_orchestrated_etl.store.pipelines import utc
from agent_orchestrated_etl.store.schema import api_sessions, api_tokens

ROLES = ("viewer", "operator", "admin")
#: The name the audit log gives the single API token of AGENT_ETL_API_TOKEN or AGENT_ETL_HOME/api-token.
DEFAULT_NAME = "default"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")


@dataclass(frozen=True)
class Holder:
    """Who a token or a session belongs to."""

    name: str
    role: str


@dataclass(frozen=True)
class TokenInfo:
    name: str
    role: str
    created_at: datetime


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class TokenStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def create(self, name: str, role: str) -> str:
        """A new token for ``name``, returned once; only its hash is stored."""
        if not _NAME.match(name) or name == DEFAULT_NAME:
            raise ConfigurationError(
                f"token name {name!r} is not allowed",
                hint=f"use up to 100 letters, digits and _.@- (not {DEFAULT_NAME!r}, the name of the single API token)",
            )
        if role not in ROLES:
            raise ConfigurationError(f"unknown role {role!r}", hint=f"use one of {', '.join(ROLES)}")
        token = secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            if conn.execute(sa.select(api_tokens.c.name).where(api_tokens.c.name == name)).first() is not None:
                raise ConfigurationError(
                    f"a token named {name!r} exists already", hint=f"revoke it first: agent-etl tokens revoke {name}"
                )
            conn.execute(
                api_tokens.insert().values(name=name, role=role, token_sha256=digest(token), created_at=_now())
            )
        return token

    def list(self) -> list[TokenInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(api_tokens.select().order_by(api_tokens.c.name)).mappings().all()
        return [TokenInfo(r["name"], r["role"], utc(r["created_at"])) for r in rows]

    def revoke(self, name: str) -> bool:
        """Delete the token and end its sessions; False when there is no such token."""
        with self.engine.begin() as conn:
            conn.execute(api_sessions.delete().where(api_sessions.c.token_name == name))
            return conn.execute(api_tokens.delete().where(api_tokens.c.name == name)).rowcount > 0

    def holder(self, token: str) -> Holder | None:
        with self.engine.connect() as conn:
            query = sa.select(api_tokens.c.name, api_tokens.c.role).where(api_tokens.c.token_sha256 == digest(token))
            row = conn.execute(query).first()
        return Holder(row.name, row.role) if row else None

    def open_session(self, holder: Holder, lifetime: timedelta) -> str:
        session = secrets.token_urlsafe(32)
        now = _now()
        with self.engine.begin() as conn:
            conn.execute(api_sessions.delete().where(api_sessions.c.expires_at < now))  # only live sessions stay
            conn.execute(
                api_sessions.insert().values(
                    id_sha256=digest(session),
                    token_name=holder.name,
                    role=holder.role,
                    expires_at=now + lifetime,
                )
            )
        return session

    def session(self, session: str) -> Holder | None:
        with self.engine.connect() as conn:
            query = sa.select(api_sessions).where(api_sessions.c.id_sha256 == digest(session))
            row = conn.execute(query).mappings().first()
        if row is None or utc(row["expires_at"]) <= _now():
            return None
        return Holder(row["token_name"], row["role"])

    def close_session(self, session: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(api_sessions.delete().where(api_sessions.c.id_sha256 == digest(session)))


def _now() -> datetime:
    return datetime.now(UTC)
