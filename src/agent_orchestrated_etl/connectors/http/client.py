"""The one HTTP client of every HTTP source: pool, limiter, breaker and retries.

A client serves one read. Its ``aiohttp.ClientSession`` keeps one connection
pool per host (aiohttp rather than httpx: about 3x the pages per second here,
bench/README.md); the rate limiter and the circuit breaker of a host are
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

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field

from agent_orchestrated_etl.circuit_breaker import breakers
from agent_orchestrated_etl.connectors.http.ratelimit import limiters, parse_rate
from agent_orchestrated_etl.connectors.http.responses import Response, ResponseValidator
from agent_orchestrated_etl.exceptions import (
    AgentETLError,
    ConnectionFailedError,
    RateLimitedError,
    RetriableError,
    UnreachableError,
)
from agent_orchestrated_etl.retry import retry_async

if TYPE_CHECKING:
    import aiohttp
    from yarl import URL

    from agent_orchestrated_etl.connectors.http.flows import Outgoing, Signer


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
    auth: Signer | None = None
    timeout_seconds: float = 30.0
    rate_limit: str | None = None
    max_connections: int = 8
    retry: HttpRetry = field(default_factory=HttpRetry)
    #: Called with (attempt, error, wait) before each retry; the reader counts them and shows them live.
    on_retry: Callable[[int, BaseException, float], None] | None = None
    validator: ResponseValidator = field(default_factory=ResponseValidator)


def host_of(url: URL) -> str:
    return f"{url.scheme}://{url.host}:{url.port}"


class HttpClient:
    def __init__(self, settings: ClientSettings, *, where: str) -> None:
        self.settings = settings
        self.where = where
        self._rate = parse_rate(settings.rate_limit) if settings.rate_limit else None
        self._answered: set[str] = set()  # hosts that accepted a connection in this read
        self._session: aiohttp.ClientSession | None = None  # made on the read's loop, at the first request

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp  # here, not at the top: the spec models in this package must not pull it in

        settings = self.settings
        self._session = aiohttp.ClientSession(
            headers=settings.headers,
            connector=aiohttp.TCPConnector(limit=settings.max_connections, limit_per_host=settings.max_connections),
            # per phase, as a slow but steady answer is not a failure: connecting, then each read from the socket
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=min(settings.retry.connect_timeout_seconds, settings.timeout_seconds),
                sock_read=settings.timeout_seconds,
            ),
        )
        # aiohttp resends a request once, silently, when a kept-alive connection drops under it; the retry
        # policy above is the one that counts attempts, backs off and tells the breaker, so it is the only one
        self._session._retry_connection = False
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, url: str, *, params: Any = None, json: Any = None) -> Response:
        """One request with retries; returns a 2xx response or raises from the exception tree.

        ``params`` are merged into the URL's own query; on a clash ``params`` win.
        """
        retry = self.settings.retry
        connect_failures = 0
        target = _merged(url, params)

        async def attempt() -> Response:
            nonlocal connect_failures
            try:
                return await self._attempt(method, target, json)
            except _ConnectFailed as exc:
                connect_failures += 1
                if connect_failures >= retry.connect_attempts and host_of(target) not in self._answered:
                    raise UnreachableError(
                        f"cannot connect to {url} after {connect_failures} attempt(s): {exc.cause}",
                        where=self.where,
                        hint="check that the server is up and that `url:` (host and port) is right",
                    ) from exc
                raise

        try:  # the first try outside tenacity: its bookkeeping cost a fifth of a page's time at 2,000 pages/s
            return await attempt()
        except RetriableError as exc:
            if retry.attempts == 1:
                raise
            first: list[BaseException] = [exc]

        async def again() -> Response:
            if first:  # attempt 1 failed above: tenacity counts it, waits and tells on_retry as always
                raise first.pop()
            return await attempt()

        return await retry_async(again, retry, on_retry=self.settings.on_retry)

    async def _attempt(self, method: str, url: URL, json: Any) -> Response:
        import aiohttp

        session = self._session or self._open()
        host = host_of(url)
        retry = self.settings.retry
        breaker = breakers.get(
            host, failure_threshold=retry.breaker_failures, reset_seconds=retry.breaker_reset_seconds
        )
        limiter = limiters.get(host, self._rate)
        breaker.allow()
        slot = await limiter.acquire()
        where = f"{self.where}: {method} {url}"
        try:
            response = await self._send(session, method, url, json)
        except aiohttp.ClientConnectorError as exc:
            breaker.record_failure(f"ConnectError: {exc}")
            raise _ConnectFailed(_connect_cause(exc), where=where) from exc
        except aiohttp.ConnectionTimeoutError as exc:
            breaker.record_failure("ConnectTimeout")
            raise _ConnectFailed(
                f"no connection within {self.settings.retry.connect_timeout_seconds:g}s", where=where
            ) from exc
        except TimeoutError as exc:  # aiohttp's SocketTimeoutError is one
            breaker.record_failure(f"timeout ({type(exc).__name__})")
            raise ConnectionFailedError(
                f"no answer within {self.settings.timeout_seconds}s",
                where=where,
                hint="raise timeout_seconds if the server is slow",
            ) from exc
        except aiohttp.ClientError as exc:
            breaker.record_failure(f"{type(exc).__name__}: {exc}")
            raise ConnectionFailedError(
                f"connection failed: {type(exc).__name__}: {exc}",
                where=where,
                hint="check that the server is up and the URL is right",
            ) from exc
        self._answered.add(host)
        limiter.observe(response.headers, slot)
        try:
            self.settings.validator.validate(response, where=where)
        except AgentETLError as exc:
            if self.settings.validator.server_failed(response, exc):
                breaker.record_failure(f"HTTP {response.status_code}")
            else:
                breaker.record_success()  # alive: a 429 is only busy, a 4xx is our mistake
            if isinstance(exc, RateLimitedError) and exc.retry_after:
                exc.retry_after = limiter.pause(exc.retry_after)  # this request waits no longer than the host
            raise
        breaker.record_success()
        return response

    async def _send(self, session: aiohttp.ClientSession, method: str, url: URL, json: Any) -> Response:
        """Send once, signed; after a 401 once more if the signer got fresh credentials."""
        from agent_orchestrated_etl.connectors.http.flows import Outgoing

        signer = self.settings.auth
        outgoing = Outgoing(url)
        if signer is not None:
            await signer.sign(outgoing, session)
        response = await _exchange(session, method, outgoing, json)
        if response.status_code == 401 and signer is not None and await signer.refused(outgoing, session):
            response = await _exchange(session, method, outgoing, json)
        return response


async def _exchange(session: aiohttp.ClientSession, method: str, outgoing: Outgoing, json: Any) -> Response:
    """Send ``outgoing`` once and read the whole answer.

    Credentials in the URL (``user:password@``) go as Basic auth unless a
    signer set ``Authorization``, as httpx did; the response keeps the URL as
    requested, credentials in it (shown masked), unless a redirect moved it.
    """
    url, headers = outgoing.url, outgoing.headers
    if url.user is not None or url.password is not None:
        if "Authorization" not in headers:
            credentials = base64.b64encode(f"{url.user or ''}:{url.password or ''}".encode()).decode()
            headers = {**headers, "Authorization": f"Basic {credentials}"}
        url = url.with_user(None)
    async with session.request(method, url, headers=headers or None, json=json) as raw:
        content = await raw.read()
        names = {name.lower(): value for name, value in raw.headers.items()}
        links = (
            {str(rel): str(link["url"]) for rel, link in raw.links.items() if rel and "url" in link}
            if "link" in names
            else {}
        )
        shown = str(raw.url) if raw.history else str(outgoing.url)
        return Response(raw.status, shown, names, content, links)


def _merged(url: str, params: Mapping[str, Any] | None) -> URL:
    """``url`` with ``params`` merged into its own query (a filter written into `url:` survives), form-encoded."""
    from yarl import URL

    if not params:
        return URL(url)
    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params] if parts.query else []
    query = urlencode([*kept, *((k, str(v)) for k, v in params.items())])
    return URL(urlunsplit(parts._replace(query=query)), encoded=True)


def _connect_cause(exc: aiohttp.ClientConnectorError) -> str:
    """Why no connection was made, in the same words whatever the address family or the resolver said."""
    import aiohttp

    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"ConnectError: cannot resolve {exc.host}"
    return "ConnectError: All connection attempts failed"


class _ConnectFailed(ConnectionFailedError):
    """No connection was made; retried like any dropped connection until connect_attempts decide."""

    def __init__(self, cause: str, *, where: str) -> None:
        super().__init__(
            f"connection failed: {cause}", where=where, hint="check that the server is up and the URL is right"
        )
        self.cause = cause
