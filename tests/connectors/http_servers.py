"""HTTP servers of the tests' own: an API with faults on a schedule, and a Relay GraphQL API.

Both run in a thread of the test process on 127.0.0.1 (stdlib
ThreadingHTTPServer, HTTP/1.1 keep-alive), so a test can change the fault
schedule and read the request log directly.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def make_items(count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "name": f"item {i}",
            "price": round(i * 1.25, 2),
            "updated_at": f"2024-01-{1 + i % 28:02d}T00:00:{i % 60:02d}",
            "address": {"city": f"city {i % 7}", "zip": f"{10000 + i}"},
            "tags": [f"t{i % 3}", f"t{i % 5}"],
        }
        for i in range(1, count + 1)
    ]


class FaultAPI:
    """State shared by the handler threads: data, fault schedule, request log, server-side rate limit.

    ``faults[key]`` is a list of faults served, one per request, before the
    real answer for that page key (``page=3``, ``offset=200``, ``cursor=c5``):
    ``"429:0"`` (429 with Retry-After: 0), ``"429"`` (no Retry-After),
    ``"503:1"``, ``"500"``, ``"200"`` (a success whose body is the error
    object), ``"slow:S"`` (answer after S seconds), ``"hold"`` (answer once
    the test sets ``held[key]``), ``"drop"`` (close the connection without
    answering).
    """

    def __init__(self, items: int) -> None:
        self.items = make_items(items)
        self.faults: dict[str, list[str]] = defaultdict(list)
        self.held: dict[str, threading.Event] = {}  # the release of each "hold" fault, made by the test
        self.log: list[tuple[str, int, float]] = []  # path, status, monotonic time
        self.lock = threading.Lock()
        self.limit_per_second: float | None = None
        self.quota_headers = True  # send X-RateLimit-Remaining/Reset with every answer
        self._window: list[float] = []
        self.tokens_issued = 0
        self.token_uses_left = 0
        self.uses_per_token = 3

    def reset(self) -> None:
        with self.lock:
            self.faults.clear()
            self.log.clear()
            self.limit_per_second = None
            self.quota_headers = True
            self._window.clear()
            self.tokens_issued = 0

    def next_fault(self, key: str) -> str | None:
        with self.lock:
            queue = self.faults.get(key)
            return queue.pop(0) if queue else None

    def over_limit(self) -> tuple[bool, int]:
        """A sliding one-second window: (refuse?, requests left in the window)."""
        with self.lock:
            if self.limit_per_second is None:
                return False, -1
            now = time.monotonic()
            self._window = [t for t in self._window if now - t < 1.0]
            if len(self._window) >= self.limit_per_second:
                return True, 0
            self._window.append(now)
            return False, int(self.limit_per_second - len(self._window))


class _Quick(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive without Nagle's delay (headers and body are two writes)."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output clean
        pass


class _Handler(_Quick):
    api: FaultAPI

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        with self.api.lock:
            self.api.log.append((self.path, status, time.monotonic()))

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode())
        if urlsplit(self.path).path == "/token":
            expected = "Basic " + base64.b64encode(b"client:secret").decode()
            if self.headers.get("Authorization") != expected or form.get("grant_type") != ["client_credentials"]:
                self._send(401, {"error": "invalid_client"})
                return
            with self.api.lock:
                self.api.tokens_issued += 1
                self.api.token_uses_left = self.api.uses_per_token
                token = f"token-{self.api.tokens_issued}"
            self._send(200, {"access_token": token, "token_type": "bearer", "expires_in": 3600})
            return
        self._send(404, {"error": "not found"})

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        route = parts.path
        if route == "/secure":
            self._secure(query)
            return
        if route == "/echo":
            self._send(
                200,
                [
                    {
                        "authorization": self.headers.get("Authorization"),
                        "api_key": self.headers.get("X-API-Key"),
                        "query": parts.query,
                    }
                ],
            )
            return
        key = next((f"{k}={query[k]}" for k in ("page", "offset", "cursor", "after") if k in query), "first")
        fault = self.api.next_fault(key)
        if fault == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if fault and fault.startswith("slow:"):
            time.sleep(float(fault.split(":")[1]))
        elif fault == "hold":
            self.api.held[key].wait(60)
        elif fault:
            status, _, retry_after = fault.partition(":")
            self._send(int(status), {"error": "injected"}, {"Retry-After": retry_after} if retry_after else None)
            return
        refused, left = self.api.over_limit()
        if refused:
            self._send(
                429,
                {"error": "rate limited"},
                {"Retry-After": "1", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1"},
            )
            return
        headers = (
            {"X-RateLimit-Remaining": str(left), "X-RateLimit-Reset": "1"}
            if left >= 0 and self.api.quota_headers
            else {}
        )
        size = int(query.get("per_page", query.get("limit", 100)))
        total = len(self.api.items)
        if route == "/pages":
            start = (int(query.get("page", 1)) - 1) * size
            self._send(
                200, {"data": {"items": self.api.items[start : start + size]}, "meta": {"total": total}}, headers
            )
        elif route == "/offset":
            start = int(query.get("offset", 0))
            items = [i for i in self.api.items if i["updated_at"] >= query.get("updated_gte", "")]
            self._send(200, {"results": items[start : start + size], "count": len(items)}, headers)
        elif route == "/cursor":
            start = int(query.get("cursor", "c0")[1:])
            nxt = f"c{start + size}" if start + size < total else None
            self._send(200, {"items": self.api.items[start : start + size], "next_cursor": nxt}, headers)
        elif route == "/next":
            start = int(query.get("after", 0))
            # relative, as many APIs send it: the client resolves it against the page's URL
            nxt = f"/next?after={start + size}&per_page={size}" if start + size < total else None
            self._send(200, {"items": self.api.items[start : start + size], "links": {"next": nxt}}, headers)
        elif route == "/loop":  # a broken server that hands out the same cursor forever
            self._send(200, {"items": self.api.items[:2], "next_cursor": "same"}, headers)
        elif route == "/html":
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"<html")
        else:
            self._send(404, {"error": f"no route {route}"})

    def _secure(self, query: dict[str, str]) -> None:
        auth = self.headers.get("Authorization", "")
        with self.api.lock:
            valid = auth == f"Bearer token-{self.api.tokens_issued}" and self.api.token_uses_left > 0
            if valid:
                self.api.token_uses_left -= 1
        if not valid:
            self._send(401, {"error": "token expired or invalid"})
            return
        page = int(query.get("page", 1))
        self._send(200, self.api.items[:50][(page - 1) * 10 : page * 10])


def serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def fault_server(items: int) -> tuple[ThreadingHTTPServer, str, FaultAPI]:
    api = FaultAPI(items)
    handler = type("Handler", (_Handler,), {"api": api})
    server, url = serve(handler)
    return server, url, api


_SDL = """
type Address { city: String, zip: String }
type Item { id: Int!, name: String, price: Float, address: Address, tags: [String], broken: String }
type ItemEdge { node: Item, cursor: String! }
type PageInfo { endCursor: String, hasNextPage: Boolean! }
type ItemConnection { edges: [ItemEdge], pageInfo: PageInfo! }
type Query { items(first: Int, after: String): ItemConnection }
"""


def graphql_server(items: int) -> tuple[ThreadingHTTPServer, str]:
    """A Relay connection ``items(first, after)`` over ``make_items(items)``, served by graphql-core.

    The field ``broken`` raises for item ids divisible by 250, so a query
    that selects it gets ``errors`` with partial data on those pages.
    """
    from graphql import build_schema, graphql_sync

    schema = build_schema(_SDL)
    data = make_items(items)

    def broken(item_id: int) -> str:
        if item_id % 250 == 0:
            raise ValueError(f"cannot compute broken for item {item_id}")
        return "fine"

    # graphql-core's default resolver calls a callable attribute with (info, **args).
    for item in data:
        item["broken"] = lambda info, item_id=item["id"]: broken(item_id)

    def resolve_items(info: Any, first: int = 100, after: str | None = None) -> dict[str, Any]:
        start = int(after) if after else 0
        chunk = data[start : start + first]
        return {
            "edges": [{"node": node, "cursor": str(start + i + 1)} for i, node in enumerate(chunk)],
            "pageInfo": {"endCursor": str(start + len(chunk)), "hasNextPage": start + first < len(data)},
        }

    class Handler(_Quick):
        def do_POST(self) -> None:  # noqa: N802
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            result = graphql_sync(
                schema, request["query"], root_value={"items": resolve_items}, variable_values=request.get("variables")
            )
            body = {"data": result.data}
            if result.errors:
                body["errors"] = [e.formatted for e in result.errors]
            payload = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server, url = serve(Handler)
    return server, url + "/graphql"


def logged(api: FaultAPI, count: int) -> list[int]:
    """The statuses the server logged, once it has logged ``count`` (it logs an answer after sending it)."""
    deadline = time.monotonic() + 5
    while len(api.log) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return [status for _, status, _ in api.log]
