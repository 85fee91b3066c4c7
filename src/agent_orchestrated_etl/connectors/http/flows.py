"""The ``httpx.Auth`` flows behind the auth settings in auth.py.

httpx runs an auth flow around every request (sync or async), so OAuth2's
token fetch, its refresh before expiry and its one retry after a 401 live
here and not in the client. The flows take plain values, not the settings
models, so this module and auth.py do not import each other.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Generator

import httpx

from agent_orchestrated_etl.exceptions import AuthError


class HeaderAuth(httpx.Auth):
    def __init__(self, name: str, value: str) -> None:
        self.name, self.value = name, value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[self.name] = self.value
        yield request


class QueryAuth(httpx.Auth):
    def __init__(self, name: str, value: str) -> None:
        self.name, self.value = name, value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.url = request.url.copy_merge_params({self.name: self.value})
        yield request


class ClientCredentialsAuth(httpx.Auth):
    """Fetches a token with the client credentials grant and keeps it fresh.

    The token is shared by the concurrent requests of one source; two
    requests may both refresh an expiring token, which costs one extra
    token request and is harmless.
    """

    requires_response_body = True

    def __init__(
        self, token_url: str, client_id: str, client_secret: str, *, scope: str | None, refresh_margin_seconds: float
    ) -> None:
        self.token_url, self.client_id, self.scope = token_url, client_id, scope
        self._client_secret = client_secret
        self.refresh_margin_seconds = refresh_margin_seconds
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._token is None or time.monotonic() >= self._expires_at - self.refresh_margin_seconds:
            self._store((yield self._token_request()))
        request.headers["Authorization"] = f"Bearer {self._token}"
        response = yield request
        if response.status_code == 401:  # revoked or expired early: one fresh token, one more try
            self._store((yield self._token_request()))
            request.headers["Authorization"] = f"Bearer {self._token}"
            yield request

    def _token_request(self) -> httpx.Request:
        data = {"grant_type": "client_credentials"}
        if self.scope:
            data["scope"] = self.scope
        credentials = f"{self.client_id}:{self._client_secret}".encode()
        headers = {"Authorization": "Basic " + base64.b64encode(credentials).decode()}
        return httpx.Request("POST", self.token_url, data=data, headers=headers)

    def _store(self, response: httpx.Response) -> None:
        if response.status_code != 200:
            raise AuthError(
                f"the token endpoint answered {response.status_code}: {response.text[:200]}",
                where=self.token_url,
                hint="check client_id, client_secret and scope",
            )
        body = response.json()
        with self._lock:
            self._token = body["access_token"]
            self._expires_at = time.monotonic() + float(body.get("expires_in", 3600))
