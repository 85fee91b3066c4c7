"""How the REST source spends a server's capacity: pages fetched ahead of a slow one, and quotas used to the full.

The quota tests run against a real local server that counts requests in
fixed one-second windows and says so the way many APIs do: ``X-RateLimit-Remaining``
and an ``X-RateLimit-Reset`` rounded up to whole seconds, a 429 past the limit.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pytest
from tests.connectors.http_servers import FaultAPI, serve
from tests.connectors.rest_helpers import make_source, read_all

from agent_orchestrated_etl.logging_config import setup_logging


def ids(table: pa.Table) -> list[int]:
    return table.column("id").to_pylist()


def test_a_stalled_page_does_not_stall_the_pages_after_it(fault_api: tuple[str, FaultAPI]) -> None:
    url, api = fault_api
    api.faults["offset=200"] = ["slow:1.5"]  # page 3 of 20
    source = make_source(
        {
            "type": "rest",
            "url": f"{url}/offset",
            "records": "results",
            "concurrency": 4,
            "pagination": {"type": "offset", "page_size": 100, "total_path": "count"},
        }
    )
    table, rejected = read_all(source)
    assert ids(table) == list(range(1, 2001)) and rejected == []  # handed on in order all the same
    answered = [path for path, status, _ in api.log if status == 200]
    assert len(answered) == 20
    # while page 3 slept, the other three connections fetched every later page
    assert "offset=200" in answered[-1], answered  # with a window of 4 pages it came before offset=600


class QuotaAPI:
    """Fixed windows of ``window`` seconds, ``limit`` requests each; every arrival logged, refused ones too."""

    def __init__(self, limit: int, window: float = 1.0) -> None:
        self.limit, self.window = limit, window
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.arrivals: list[tuple[float, int]] = []  # (time, status)
        self._current, self._used = -1, 0

    def admit(self) -> tuple[int, int, int]:
        """(status, remaining, reset in whole seconds, rounded up as servers send it)."""
        with self.lock:
            now = time.monotonic()
            number = int((now - self.started) // self.window)
            if number != self._current:
                self._current, self._used = number, 0
            reset = math.ceil(self.started + (number + 1) * self.window - now)
            status = 200 if self._used < self.limit else 429
            self._used += status == 200
            self.arrivals.append((now, status))
            return status, self.limit - self._used, reset


def quota_server(api: QuotaAPI, items: int) -> tuple[object, str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            status, remaining, reset = api.admit()
            query = parse_qs(urlsplit(self.path).query)
            page, size = int(query["page"][0]), int(query["per_page"][0])
            body = (
                {"data": [{"id": i} for i in range((page - 1) * size + 1, min(page * size, items) + 1)]}
                if status == 200
                else {"error": "rate limited"}
            )
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Total-Count", str(items))
            self.send_header("X-RateLimit-Limit", str(api.limit))
            self.send_header("X-RateLimit-Remaining", str(remaining))
            self.send_header("X-RateLimit-Reset", str(reset))
            if status == 429:
                self.send_header("Retry-After", str(reset))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: object) -> None:
            pass

    return serve(Handler)


def paced_read(seconds: float, *, limit: int, rate_limit: str | None) -> tuple[QuotaAPI, float]:
    """Read ``seconds`` worth of the allowed rate; returns the server's log and the rate it allowed."""
    allowed = min(limit, float(rate_limit.split("/")[0])) if rate_limit else float(limit)
    pages = int(allowed * seconds)
    api = QuotaAPI(limit)
    server, url = quota_server(api, pages * 10)
    try:
        source = make_source(
            {
                "type": "rest",
                "url": f"{url}/items",
                "records": "data",
                "concurrency": 4,
                "rate_limit": rate_limit,
                "pagination": {"type": "page", "size_param": "per_page", "page_size": 10},
            }
        )
        table, _ = read_all(source)
        assert ids(table) == list(range(1, pages * 10 + 1))
    finally:
        server.shutdown()  # type: ignore[attr-defined]
    return api, allowed


def assert_paced(api: QuotaAPI, allowed: float) -> None:
    served = [at for at, status in api.arrivals if status == 200]
    used = (len(served) - 1) / (served[-1] - served[0])
    assert used >= 0.95 * allowed, f"{used:.1f}/s of {allowed:g}/s allowed"
    sent = [at for at, _ in api.arrivals]
    busiest = max(sum(1 for at in sent if start <= at < start + 10) for start in sent if start + 10 <= sent[-1])
    assert busiest <= 1.05 * allowed * 10, f"{busiest} requests in 10 s, allowed {allowed * 10:g}"


@pytest.mark.parametrize("rate_limit", [None, "30/s"])
def test_quota_headers_with_whole_second_resets_are_used_to_the_full(rate_limit: str | None) -> None:
    api, allowed = paced_read(22, limit=40, rate_limit=rate_limit)
    assert_paced(api, allowed)


@pytest.mark.slow
def test_quota_headers_are_used_to_the_full_for_a_minute() -> None:
    api, allowed = paced_read(62, limit=40, rate_limit=None)
    assert_paced(api, allowed)


def test_aiohttp_loggers_print_no_secret_even_at_debug(capsys: pytest.CaptureFixture[str]) -> None:
    from agent_orchestrated_etl import redaction

    secret = f"aio-{uuid.uuid4().hex}"
    redaction.register(secret)
    setup_logging("DEBUG")
    try:
        for name in ("aiohttp.client", "aiohttp.internal", "asyncio"):
            logging.getLogger(name).debug("request to %s", f"http://example.com/x?api_key={secret}")
    finally:
        setup_logging("WARNING")
    err = capsys.readouterr().err
    assert secret not in err
    assert err.count(redaction.MASK) == 3
