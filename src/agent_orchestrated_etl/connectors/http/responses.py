"""What an HTTP status means, in one place: the ``validate_response`` hook of every HTTP source.

As in the Singer SDK, 429 and 5xx (and 408, 425) are retriable and every other
4xx is fatal, branched by remedy: 401/403 are auth errors, 404 a missing
source, the rest a request the user must change. A source whose API says
more than its status (an error object in a 200) subclasses
``ResponseValidator`` and passes it in ``ClientSettings.validator``.

The client reads the exception, not the status: a ``RateLimitedError`` with
``retry_after`` pauses the host, and ``server_failed`` tells whether the
answer counts against the host's circuit breaker (a 429 means the server is
up and busy, a 404 that our URL is wrong).
"""

from __future__ import annotations

import json as jsonlib
from dataclasses import dataclass, field
from typing import Any

from agent_orchestrated_etl.connectors.http.ratelimit import retry_after_seconds
from agent_orchestrated_etl.exceptions import (
    AgentETLError,
    AuthError,
    ConfigurationError,
    ConnectionFailedError,
    RateLimitedError,
    RetriableError,
    SourceNotFoundError,
)

RETRY_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Response:
    """A response read whole: what the client hands on, free of the HTTP library's connection state.

    ``headers`` keys are lower case; ``links`` are the ``Link`` header's targets by ``rel``, absolute.
    """

    status_code: int
    url: str
    headers: dict[str, str]
    content: bytes
    links: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; raises ValueError when it is not."""
        return jsonlib.loads(self.content)


class ResponseValidator:
    """Raises for a response that is not a success; returns None for one that is."""

    def validate(self, response: Response, *, where: str) -> None:
        """Raise from the exception tree for ``response``, or return for a success.

        ``where`` names the source and the request. Raises ``RateLimitedError`` (429, or a
        server error with Retry-After), ``ConnectionFailedError`` (other 5xx, 408, 425),
        ``AuthError`` (401, 403), ``SourceNotFoundError`` (404) or ``ConfigurationError``.
        """
        status = response.status_code
        if status < 400:
            return
        body = response.text[:300]
        if status >= 500 or status in RETRY_STATUSES:
            retry_after = retry_after_seconds(response.headers.get("retry-after"))
            if status == 429:
                raise RateLimitedError(
                    f"429 Too Many Requests: {body}", retry_after=retry_after, where=where, hint="lower rate_limit"
                )
            if retry_after is None:
                raise ConnectionFailedError(
                    f"server error {status}: {body}", where=where, hint="the server is failing; retried with backoff"
                )
            raise RateLimitedError(
                f"server error {status}: {body}", retry_after=retry_after, where=where, hint="the server asked to wait"
            )
        if status in (401, 403):
            raise AuthError(f"HTTP {status}: {body}", where=where, hint="check the credentials under `auth:`")
        if status == 404:
            raise SourceNotFoundError(f"HTTP 404: {body}", where=where, hint="check `url:` and the path")
        raise ConfigurationError(
            f"HTTP {status}: {body}", where=where, hint="the server refused the request; check params and body"
        )

    def server_failed(self, response: Response, error: AgentETLError) -> bool:
        """Whether ``error``, raised for ``response``, is the server failing (it counts against the breaker)."""
        return isinstance(error, RetriableError) and response.status_code != 429
