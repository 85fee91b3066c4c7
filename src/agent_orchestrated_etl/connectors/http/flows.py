"""The request signers behind the auth settings in auth.py.

The client calls ``sign`` on every request before sending it, and
``refused`` after a 401: a signer that can get fresh credentials (OAuth2)
does so and asks for one more try. So OAuth2's token fetch, its refresh
before expiry and its one retry after a 401 live here and not in the
client. The signers take plain values, not the settings models, so this
module and auth.py do not import each other.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent_orchestrated_etl.exceptions import AuthError

if TYPE_CHECKING:
    import aiohttp
    from yarl import URL


@dataclass
class Outgoing:
    """A request about to be sent, as a signer may change it."""

    url: URL
    headers: dict[str, str] = field(default_factory=dict)


class Signer:
    """Signs requests; the base signs nothing."""

    async def sign(self, request: Outgoing, session: aiohttp.ClientSession) -> None:
        """Add the credentials to ``request``; ``session`` serves a signer that must fetch them first."""

    async def refused(self, request: Outgoing, session: aiohttp.ClientSession) -> bool:  # noqa: ARG002
        """After a 401 to ``request``: True when fresh credentials are in place and the request should go again."""
        return False


class HeaderAuth(Signer):
    def __init__(self, name: str, value: str) -> None:
        self.name, self.value = name, value

    async def sign(self, request: Outgoing, session: aiohttp.ClientSession) -> None:  # noqa: ARG002
        request.headers[self.name] = self.value


def basic_auth(username: str, password: str) -> HeaderAuth:
    """RFC 7617 Basic credentials, as a header."""
    credentials = base64.b64encode(f"{username}:{password}".encode()).decode()
    return HeaderAuth("Authorization", f"Basic {credentials}")


class QueryAuth(Signer):
    def __init__(self, name: str, value: str) -> None:
        self.name, self.value = name, value

    async def sign(self, request: Outgoing, session: aiohttp.ClientSession) -> None:  # noqa: ARG002
        request.url = request.url.update_query({self.name: self.value})


class ClientCredentialsAuth(Signer):
    """Fetches a token with the client credentials grant and keeps it fresh.

    The token is shared by the concurrent requests of one read; a lock makes
    one of them fetch it while the others wait, and a 401 to a token that
    another request has already replaced only sends the request again.
    """

    def __init__(
        self, token_url: str, client_id: str, client_secret: str, *, scope: str | None, refresh_margin_seconds: float
    ) -> None:
        self.token_url, self.client_id, self.scope = token_url, client_id, scope
        self._client_secret = client_secret
        self.refresh_margin_seconds = refresh_margin_seconds
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock: asyncio.Lock | None = None  # made on the read's loop, at first use

    async def sign(self, request: Outgoing, session: aiohttp.ClientSession) -> None:
        if self._token is None or time.monotonic() >= self._expires_at - self.refresh_margin_seconds:
            async with self._locked():
                if self._token is None or time.monotonic() >= self._expires_at - self.refresh_margin_seconds:
                    await self._fetch(session)
        request.headers["Authorization"] = f"Bearer {self._token}"

    async def refused(self, request: Outgoing, session: aiohttp.ClientSession) -> bool:
        """Revoked or expired early: one fresh token (unless another request got one already), one more try."""
        async with self._locked():
            if request.headers.get("Authorization") == f"Bearer {self._token}":
                await self._fetch(session)
        request.headers["Authorization"] = f"Bearer {self._token}"
        return True

    def _locked(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def _fetch(self, session: aiohttp.ClientSession) -> None:
        data = {"grant_type": "client_credentials"}
        if self.scope:
            data["scope"] = self.scope
        credentials = f"{self.client_id}:{self._client_secret}".encode()
        headers = {"Authorization": "Basic " + base64.b64encode(credentials).decode()}
        async with session.post(self.token_url, data=data, headers=headers) as response:
            status, text = response.status, await response.text(errors="replace")
        if status != 200:
            raise AuthError(
                f"the token endpoint answered {status}: {text[:200]}",
                where=self.token_url,
                hint="check client_id, client_secret and scope",
            )
        body = json.loads(text)
        self._token = body["access_token"]
        self._expires_at = time.monotonic() + float(body.get("expires_in", 3600))
