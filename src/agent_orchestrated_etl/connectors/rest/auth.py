"""Authentication for HTTP sources: each spec model builds an ``httpx.Auth``.

httpx runs an auth flow around every request (sync or async), so OAuth2's
token fetch, its refresh before expiry and its one retry after a 401 live
here and not in the client.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Generator
from typing import Annotated, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from agent_orchestrated_etl.exceptions import AuthError


class _AuthSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BearerAuth(_AuthSpec):
    type: Literal["bearer"]
    token: SecretStr = Field(description="Sent as `Authorization: Bearer <token>`; use ${env:NAME}.")

    def build(self) -> httpx.Auth:
        return _HeaderAuth("Authorization", f"Bearer {self.token.get_secret_value()}")


class ApiKeyAuth(_AuthSpec):
    type: Literal["api_key"]
    name: str = Field("X-API-Key", description="Header or query parameter name.")
    value: SecretStr
    location: Literal["header", "query"] = Field("header", alias="in")

    def build(self) -> httpx.Auth:
        if self.location == "query":
            return _QueryAuth(self.name, self.value.get_secret_value())
        return _HeaderAuth(self.name, self.value.get_secret_value())


class BasicAuth(_AuthSpec):
    type: Literal["basic"]
    username: str
    password: SecretStr

    def build(self) -> httpx.Auth:
        return httpx.BasicAuth(self.username, self.password.get_secret_value())


class OAuth2ClientCredentials(_AuthSpec):
    type: Literal["oauth2_client_credentials"]
    token_url: str
    client_id: str
    client_secret: SecretStr
    scope: str | None = None
    refresh_margin_seconds: float = Field(30, ge=0, description="Fetch a new token this long before the old one expires.")

    def build(self) -> httpx.Auth:
        return _ClientCredentialsAuth(self)


AuthSpec = Annotated[BearerAuth | ApiKeyAuth | BasicAuth | OAuth2ClientCredentials, Field(discriminator="type")]


class _HeaderAuth(httpx.Auth):
    def __init__(self, name: str, value: str) -> None:
        self.name, self.value = name, value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[self.name] = self.value
        yield request


class _QueryAuth(httpx.Auth):
    def __init__(self, name: str, value: str) -> None:
        self.name, self.value = name, value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.url = request.url.copy_merge_params({self.name: self.value})
        yield request


class _ClientCredentialsAuth(httpx.Auth):
    """Fetches a token with the client credentials grant and keeps it fresh.

    The token is shared by the concurrent requests of one source; two
    requests may both refresh an expiring token, which costs one extra
    token request and is harmless.
    """

    requires_response_body = True

    def __init__(self, spec: OAuth2ClientCredentials) -> None:
        self.spec = spec
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._token is None or time.monotonic() >= self._expires_at - self.spec.refresh_margin_seconds:
            self._store((yield self._token_request()))
        request.headers["Authorization"] = f"Bearer {self._token}"
        response = yield request
        if response.status_code == 401:  # revoked or expired early: one fresh token, one more try
            self._store((yield self._token_request()))
            request.headers["Authorization"] = f"Bearer {self._token}"
            yield request

    def _token_request(self) -> httpx.Request:
        data = {"grant_type": "client_credentials"}
        if self.spec.scope:
            data["scope"] = self.spec.scope
        credentials = f"{self.spec.client_id}:{self.spec.client_secret.get_secret_value()}".encode()
        return httpx.Request(
            "POST", self.spec.token_url, data=data, headers={"Authorization": "Basic " + base64.b64encode(credentials).decode()}
        )

    def _store(self, response: httpx.Response) -> None:
        if response.status_code != 200:
            raise AuthError(
                f"the token endpoint answered {response.status_code}: {response.text[:200]}",
                where=self.spec.token_url,
                hint="check client_id, client_secret and scope",
            )
        body = response.json()
        with self._lock:
            self._token = body["access_token"]
            self._expires_at = time.monotonic() + float(body.get("expires_in", 3600))
