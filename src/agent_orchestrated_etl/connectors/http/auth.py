"""Authentication settings of HTTP sources: each spec model builds a request ``Signer`` (flows.py).

The models are part of every spec's schema, so this module does not import
aiohttp: a pipeline that reads no API does not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

if TYPE_CHECKING:
    from agent_orchestrated_etl.connectors.http.flows import Signer


class _AuthSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BearerAuth(_AuthSpec):
    type: Literal["bearer"]
    token: SecretStr = Field(description="Sent as `Authorization: Bearer <token>`; use ${env:NAME}.")

    def build(self) -> Signer:
        from agent_orchestrated_etl.connectors.http.flows import HeaderAuth

        return HeaderAuth("Authorization", f"Bearer {self.token.get_secret_value()}")


class ApiKeyAuth(_AuthSpec):
    type: Literal["api_key"]
    name: str = Field("X-API-Key", description="Header or query parameter name.")
    value: SecretStr
    location: Literal["header", "query"] = Field("header", alias="in")

    def build(self) -> Signer:
        from agent_orchestrated_etl.connectors.http.flows import HeaderAuth, QueryAuth

        if self.location == "query":
            return QueryAuth(self.name, self.value.get_secret_value())
        return HeaderAuth(self.name, self.value.get_secret_value())


class BasicAuth(_AuthSpec):
    type: Literal["basic"]
    username: str
    password: SecretStr

    def build(self) -> Signer:
        from agent_orchestrated_etl.connectors.http.flows import basic_auth

        return basic_auth(self.username, self.password.get_secret_value())


class OAuth2ClientCredentials(_AuthSpec):
    type: Literal["oauth2_client_credentials"]
    token_url: str
    client_id: str
    client_secret: SecretStr
    scope: str | None = None
    refresh_margin_seconds: float = Field(
        30, ge=0, description="Fetch a new token this long before the old one expires."
    )

    def build(self) -> Signer:
        from agent_orchestrated_etl.connectors.http.flows import ClientCredentialsAuth

        return ClientCredentialsAuth(
            self.token_url,
            self.client_id,
            self.client_secret.get_secret_value(),
            scope=self.scope,
            refresh_margin_seconds=self.refresh_margin_seconds,
        )


AuthSpec = Annotated[BearerAuth | ApiKeyAuth | BasicAuth | OAuth2ClientCredentials, Field(discriminator="type")]
