"""The one HTTP client of every HTTP source: pool, limiter, breaker and retries.

A client serves one read. Its ``httpx.AsyncClient`` keeps one connection
pool per host; the rate limiter and the circuit breaker of a host are
process-wide, so every task that talks to the host shares them.

What a status means is decided by the source's ``ResponseValidator``
(responses.py); the client acts on its verdict: it retries what is
retriable, pauses the host for a ``Retry-After`` and counts server failures
against the breaker.

A host that refuses the connection (or does not accept it within
``connect_timeout_seconds``) is not a slow server: until it has answered once
in this read, ``connect_attempts`` quick tries decide, and then the read
fails with ``UnreachableError``, which the orchestrator does not retry.
Retrying the task would only wait out the backoff and the circuit breaker
again (a wrong port once took 184 s to fail). A host that did answer before
and then refuses is restarting: that keeps the full retries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from agent_orchestrated_etl.circuit_breaker import breakers
from agent_orchestrated_etl.connectors.http.ratelimit import limiters, parse_rate
from agent_orchestrated_etl.connectors.http.responses import ResponseValidator
from agent_orchestrated_etl.exceptions import AgentETLError, ConnectionFailedError, RateLimitedError, UnreachableError
from agent_orchestrated_etl.retry import retry_async

if TYPE_CHECKING:
    import httpx


class HttpRetry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(6, ge=1, le=100, description="Tries per request, the first included.")
    connect_attempts: int = Field(
        3,
        ge=1,
        le=100,
        description="Tries to connect to a host that has not answered yet in this read (refused, unreachable, connect timeout).",
    )
    connect_timeout_seconds: float = Field(3.0, gt=0, description="How long to wait for a connection to the host.")
    backoff_seconds: float = Field(0.25, ge=0, description="First wait; doubles each retry, with jitter.")
    max_backoff_seconds: float = Field(30.0, ge=0, description="Longest wait, Retry-After included.")
    breaker_failures: int = Field(
        5, ge=1, description="Consecutive server failures that open the host's circuit breaker."
    )
    breaker_reset_seconds: float = Field(30.0, gt=0, description="How long the breaker stays open before a probe.")


@dataclass
class ClientSettings:
    headers: dict[str, str] = field(default_factory=dict)
    auth: httpx.Auth | None = None
    timeout_seconds: float = 30.0
    rate_limit: str | None = None
    max_connections: int = 8
    retry: HttpRetry = field(default_factory=HttpRetry)
    #: Called with (attempt, error, wait) before each retry; the reader counts them and shows them live.
    on_retry: Callable[[int, BaseException, float], None] | None = None
    validator: ResponseValidator = field(default_factory=ResponseValidator)


def host_of(url: str | httpx.URL) -> str:
    import httpx

    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}:{parsed.port or (443 if parsed.scheme == 'https' else 80)}"


class HttpClient:
    def __init__(self, settings: ClientSettings, *, where: str) -> None:
        import httpx  # here, not at the top: the spec models in this package must not pull it in

        self.settings = settings
        self.where = where
        self._rate = parse_rate(settings.rate_limit) if settings.rate_limit else None
        self._answered: set[str] = set()  # hosts that accepted a connection in this read
        self._http = httpx.AsyncClient(
            headers=settings.headers,
            auth=settings.auth,
            timeout=httpx.Timeout(
                settings.timeout_seconds, connect=min(settings.retry.connect_timeout_seconds, settings.timeout_seconds)
            ),
            limits=httpx.Limits(
                max_connections=settings.max_connections, max_keepalive_connections=settings.max_connections
            ),
            follow_redirects=True,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, url: str, *, params: Any = None, json: Any = None) -> httpx.Response:
        """One request with retries; returns a 2xx response or raises from the exception tree.

        ``params`` are merged into the URL's own query; on a clash ``params`` win.
        """
        retry = self.settings.retry
        connect_failures = 0

        async def attempt() -> httpx.Response:
            nonlocal connect_failures
            try:
                return await self._attempt(method, url, params, json)
            except _ConnectFailed as exc:
                connect_failures += 1
                if connect_failures >= retry.connect_attempts and host_of(url) not in self._answered:
                    raise UnreachableError(
                        f"cannot connect to {url} after {connect_failures} attempt(s): {exc.cause}",
                        where=self.where,
                        hint="check that the server is up and that `url:` (host and port) is right",
                    ) from exc
                raise

        return await retry_async(attempt, retry, on_retry=self.settings.on_retry)

    async def _attempt(self, method: str, url: str, params: Any, json: Any) -> httpx.Response:
        import httpx

        host = host_of(url)
        retry = self.settings.retry
        breaker = breakers.get(
            host, failure_threshold=retry.breaker_failures, reset_seconds=retry.breaker_reset_seconds
        )
        limiter = limiters.get(host, self._rate)
        breaker.allow()
        await limiter.acquire()
        if params:
            # httpx replaces a URL's query with ``params``; a filter written into `url:` must survive
            url = str(httpx.URL(url).copy_merge_params(params))
        where = f"{self.where}: {method} {url}"
        try:
            response = await self._http.request(method, url, json=json)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            breaker.record_failure(f"{type(exc).__name__}: {exc}")
            cause = (
                f"no connection within {self.settings.retry.connect_timeout_seconds:g}s"
                if isinstance(exc, httpx.ConnectTimeout)
                else f"{type(exc).__name__}: {exc}"
            )
            raise _ConnectFailed(cause, where=where) from exc
        except httpx.TimeoutException as exc:
            breaker.record_failure(f"timeout ({type(exc).__name__})")
            raise ConnectionFailedError(
                f"no answer within {self.settings.timeout_seconds}s",
                where=where,
                hint="raise timeout_seconds if the server is slow",
            ) from exc
        except httpx.TransportError as exc:
            breaker.record_failure(f"{type(exc).__name__}: {exc}")
            raise ConnectionFailedError(
                f"connection failed: {type(exc).__name__}: {exc}",
                where=where,
                hint="check that the server is up and the URL is right",
            ) from exc
        self._answered.add(host)
        limiter.observe(response.headers)
        try:
            self.settings.validator.validate(response, where=where)
        except AgentETLError as exc:
            if self.settings.validator.server_failed(response, exc):
                breaker.record_failure(f"HTTP {response.status_code}")
            else:
                breaker.record_success()  # alive: a 429 is only busy, a 4xx is our mistake
            if isinstance(exc, RateLimitedError) and exc.retry_after:
                limiter.pause(exc.retry_after)
            raise
        breaker.record_success()
        return response


class _ConnectFailed(ConnectionFailedError):
    """No connection was made; retried like any dropped connection until connect_attempts decide."""

    def __init__(self, cause: str, *, where: str) -> None:
        super().__init__(
            f"connection failed: {cause}", where=where, hint="check that the server is up and the URL is right"
        )
        self.cause = cause
