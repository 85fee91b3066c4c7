"""The REST source against json-server and the fault-injecting API: pagination, auth, faults, limits."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from tests.connectors.http_servers import FaultAPI, logged
from tests.connectors.rest_helpers import make_source, read_all

from agent_orchestrated_etl.circuit_breaker import breakers
from agent_orchestrated_etl.connectors.http.ratelimit import RateLimiter
from agent_orchestrated_etl.exceptions import AuthError, DataError, SourceNotFoundError, SpecError

FAST_RETRY = {"attempts": 8, "backoff_seconds": 0.02, "max_backoff_seconds": 0.5}


def ids(table) -> list[int]:
    return table.column("id").to_pylist()


def test_json_server_page_numbers_fetched_concurrently(json_server_url: str) -> None:
    source = make_source(
        {
            "type": "rest",
            "url": f"{json_server_url}/items",
            "concurrency": 8,
            "pagination": {"type": "page", "page_param": "_page", "size_param": "_limit", "page_size": 100},
        }
    )
    table, rejected = read_all(source)
    assert ids(table) == list(range(1, 10_001))
    assert rejected == []
    assert table.schema.field("address").type.names == ["city", "zip"]


def test_json_server_link_header_flattened(json_server_url: str) -> None:
    source = make_source(
        {
            "type": "rest",
            "url": f"{json_server_url}/items",
            "params": {"_page": 1, "_limit": 500},
            "pagination": {"type": "link_header"},
            "nested": {"shape": "flatten"},
        }
    )
    table, _ = read_all(source)
    assert ids(table) == list(range(1, 10_001))
    assert table.column_names == ["id", "name", "price", "updated_at", "address__city", "address__zip", "tags"]
    assert table.slice(41, 1).to_pylist() == [
        {
            "id": 42,
            "name": "item 42",
            "price": 52.5,
            "updated_at": "2024-01-15T00:00:42",
            "address__city": "city 0",
            "address__zip": "10042",
            "tags": ["t0", "t2"],
        }
    ]


@pytest.mark.parametrize(
    ("route", "pagination", "records"),
    [
        (
            "/pages",
            {"type": "page", "size_param": "per_page", "total_path": "meta.total", "total_header": None},
            "data.items",
        ),
        ("/offset", {"type": "offset", "size_param": "limit", "total_path": "count"}, "results"),
        ("/cursor", {"type": "cursor", "cursor_path": "next_cursor"}, "items"),
        ("/next", {"type": "next_url", "next_url_path": "links.next"}, "items"),
    ],
)
def test_pagination_styles_read_every_record_once(
    fault_api: tuple[str, FaultAPI], route: str, pagination: dict, records: str
) -> None:
    url, api = fault_api
    table, _ = read_all(make_source({"type": "rest", "url": url + route, "records": records, "pagination": pagination}))
    assert ids(table) == list(range(1, 2001))
    assert sum(1 for _, status, _ in api.log if status == 200) == 20


def test_a_repeated_cursor_stops_the_read_instead_of_looping(fault_api: tuple[str, FaultAPI]) -> None:
    url, api = fault_api
    source = make_source(
        {
            "type": "rest",
            "url": f"{url}/loop",
            "records": "items",
            "pagination": {"type": "cursor", "cursor_path": "next_cursor"},
        }
    )
    with pytest.raises(
        DataError,
        match=r"the server sent the same page twice .*cursor.*same.*; pagination would loop \(check the pagination settings\)",
    ):
        read_all(source)
    assert [path for path, _, _ in api.log] == ["/loop", "/loop?cursor=same"]  # the repeat is refused before it is sent


def test_faults_on_schedule_lose_and_duplicate_nothing(fault_api: tuple[str, FaultAPI]) -> None:
    url, api = fault_api
    api.faults["offset=200"] = ["429:0", "429:0", "503"]
    api.faults["offset=500"] = ["500", "drop"]
    api.faults["offset=900"] = ["slow:2.0"]
    api.faults["offset=1500"] = ["503:0", "429"]
    source = make_source(
        {
            "type": "rest",
            "url": f"{url}/offset",
            "records": "results",
            "timeout_seconds": 1.0,
            "concurrency": 4,
            "pagination": {"type": "offset", "total_path": "count"},
            "retry": FAST_RETRY,
        }
    )
    table, rejected = read_all(source)
    assert ids(table) == list(range(1, 2001))
    assert rejected == []
    assert source.retries >= 8  # one per fault; a busy machine may add a timeout or two
    # Retry-After: 0 still backs off: the three answers for offset=200 are spread out, not a burst
    times = [t for path, _, t in api.log if "offset=200" in path]
    assert len(times) == 4 and all(b - a >= 0.01 for a, b in itertools.pairwise(times))


def test_breaker_opens_then_recovers_and_reports_each_change(fault_api: tuple[str, FaultAPI]) -> None:
    url, api = fault_api
    api.faults["offset=300"] = ["503", "503", "503", "503"]
    changes = []
    remove = breakers.add_listener(lambda change: changes.append((change.old.value, change.new.value)))
    try:
        source = make_source(
            {
                "type": "rest",
                "url": f"{url}/offset",
                "records": "results",
                "concurrency": 1,
                "pagination": {"type": "offset", "total_path": "count"},
                "retry": {**FAST_RETRY, "breaker_failures": 3, "breaker_reset_seconds": 0.2},
            }
        )
        table, _ = read_all(source)
    finally:
        remove()
    assert ids(table) == list(range(1, 2001))
    assert changes == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


def test_breaker_that_stays_open_fails_the_read_with_its_reason(fault_api: tuple[str, FaultAPI]) -> None:
    url, api = fault_api
    api.faults["first"] = ["503"] * 10
    source = make_source(
        {
            "type": "rest",
            "url": f"{url}/offset",
            "records": "results",
            "retry": {
                "attempts": 4,
                "backoff_seconds": 0.01,
                "max_backoff_seconds": 0.05,
                "breaker_failures": 2,
                "breaker_reset_seconds": 60,
            },
        }
    )
    with pytest.raises(Exception) as info:
        read_all(source)
    assert str(info.value).startswith("http://127.0.0.1:")
    assert "circuit breaker for http://127.0.0.1" in str(info.value) and "is open after 2 consecutive failures" in str(
        info.value
    )


def test_quota_headers_slow_the_client_before_any_429(fault_api: tuple[str, FaultAPI]) -> None:
    url, api = fault_api
    api.limit_per_second = 30
    source = make_source(
        {
            "type": "rest",
            "url": f"{url}/offset",
            "records": "results",
            "concurrency": 8,
            "pagination": {"type": "offset", "page_size": 100, "total_path": "count"},
        }
    )
    table, _ = read_all(source)
    assert ids(table) == list(range(1, 2001))
    assert [status for _, status, _ in api.log] == [200] * 20


def test_server_rate_limit_answers_429_and_no_page_is_lost(fault_api: tuple[str, FaultAPI]) -> None:
    url, api = fault_api
    # Low enough that the burst of 8 concurrent pages after the first exceeds it however slow
    # the client is (a loaded machine once kept a client under a limit of 30/s).
    api.limit_per_second = 4
    api.quota_headers = False  # the server only says 429 with Retry-After: 1
    source = make_source(
        {
            "type": "rest",
            "url": f"{url}/offset",
            "records": "results",
            "concurrency": 8,
            "pagination": {"type": "offset", "page_size": 200, "total_path": "count"},
            "retry": {"attempts": 10, "backoff_seconds": 0.05, "max_backoff_seconds": 2},
        }
    )
    table, _ = read_all(source)
    assert ids(table) == list(range(1, 2001))
    assert sum(1 for _, status, _ in api.log if status == 200) == 10
    assert any(status == 429 for _, status, _ in api.log)  # the server did refuse some


def test_rate_limit_is_shared_by_every_task_on_the_host(fault_api: tuple[str, FaultAPI]) -> None:
    url, _ = fault_api
    spec = {
        "type": "rest",
        "url": f"{url}/offset",
        "records": "results",
        "rate_limit": "40/s",
        "concurrency": 4,
        "pagination": {"type": "offset", "total_path": "count", "page_size": 200},
    }
    results: list[int] = []
    started = time.monotonic()
    threads = [
        threading.Thread(target=lambda: results.append(read_all(make_source(spec))[0].num_rows)) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert results == [2000, 2000]
    # 20 requests at 40/s across both tasks, the first two as the limiter's burst of slack: the last starts
    # 18/40 s after the first (per task, each alone would take half that)
    burst = RateLimiter(40).burst
    assert elapsed >= (20 - burst) / 40


def test_auth_bearer_api_key_in_header_and_query_basic(
    fault_api: tuple[str, FaultAPI], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = fault_api
    monkeypatch.setenv("API_TOKEN", "s3cr3t")
    from agent_orchestrated_etl.spec import resolve_env

    cases = [
        ({"type": "bearer", "token": "${env:API_TOKEN}"}, "Bearer s3cr3t", None, ""),
        ({"type": "api_key", "name": "X-API-Key", "value": "k1"}, None, "k1", ""),
        ({"type": "api_key", "name": "api_key", "value": "k2", "in": "query"}, None, None, "api_key=k2"),
        ({"type": "basic", "username": "u", "password": "p"}, "Basic dTpw", None, ""),
    ]
    for auth, authorization, api_key, query in cases:
        source = make_source({"type": "rest", "url": f"{url}/echo", "auth": auth})
        source.spec = resolve_env(source.spec)
        table, _ = read_all(source)
        assert table.to_pylist() == [{"authorization": authorization, "api_key": api_key, "query": query}]


def test_oauth2_client_credentials_fetches_and_refreshes_the_token(fault_api: tuple[str, FaultAPI]) -> None:
    url, api = fault_api
    source = make_source(
        {
            "type": "rest",
            "url": f"{url}/secure",
            "auth": {
                "type": "oauth2_client_credentials",
                "token_url": f"{url}/token",
                "client_id": "client",
                "client_secret": "secret",
            },
            "pagination": {"type": "page", "page_size": 10, "total_header": None},
        }
    )
    table, _ = read_all(source)
    assert ids(table) == list(range(1, 51))
    assert api.tokens_issued == 2  # 3 uses per token: pages 1-3, then a 401 on page 4 and a fresh token


def test_wrong_client_secret_is_an_auth_error(fault_api: tuple[str, FaultAPI]) -> None:
    url, _ = fault_api
    source = make_source(
        {
            "type": "rest",
            "url": f"{url}/secure",
            "auth": {
                "type": "oauth2_client_credentials",
                "token_url": f"{url}/token",
                "client_id": "client",
                "client_secret": "wrong",
            },
        }
    )
    with pytest.raises(
        AuthError,
        match=r"the token endpoint answered 401: \{\"error\": \"invalid_client\"\} \(check client_id, client_secret and scope\)",
    ):
        read_all(source)


def test_incremental_runs_pass_the_committed_mark_to_the_api(fault_api: tuple[str, FaultAPI], tmp_path: Path) -> None:
    url, api = fault_api
    (tmp_path / "p.yaml").write_text(f"""
name: changed_items
sources:
  items:
    type: rest
    url: {url}/offset
    records: results
    params: {{updated_gte: "{{{{ high_water_mark }}}}"}}
    pagination: {{type: offset, total_path: count}}
    incremental: {{cursor: updated_at, initial_value: "2024-01-27"}}
destination: {{type: file, path: out, format: parquet}}
""")
    env = {**os.environ, "AGENT_ETL_HOME": str(tmp_path / "home")}

    def run() -> None:
        result = subprocess.run(
            [sys.executable, "-m", "agent_orchestrated_etl", "run", "p.yaml"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr

    run()
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    expected = [i for i in range(1, 2001) if 1 + i % 28 >= 27]
    assert [run["rows"] for run in manifest["runs"].values()] == [len(expected)]
    assert manifest["state"]["changed_items/items"]["value"] == "2024-01-28T00:00:59"
    assert {path.split("&")[0] for path, _, _ in api.log} == {"/offset?updated_gte=2024-01-27"}
    api.log.clear()
    run()  # nothing changed since: the API is asked from the mark, and the boundary row is not loaded again
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert [run["rows"] for run in manifest["runs"].values()] == [len(expected), 0]
    assert {path.split("&")[0] for path, _, _ in api.log} == {"/offset?updated_gte=2024-01-28T00%3A00%3A59"}


def test_errors_name_the_request_and_the_fix(fault_api: tuple[str, FaultAPI]) -> None:
    url, _ = fault_api
    with pytest.raises(
        SourceNotFoundError,
        match=r"^source src: GET http://127\.0\.0\.1:\d+/nothing: HTTP 404: .* \(check `url:` and the path\)$",
    ):
        read_all(make_source({"type": "rest", "url": f"{url}/nothing"}))
    with pytest.raises(Exception, match=r"the response is not JSON: '<html'"):
        read_all(make_source({"type": "rest", "url": f"{url}/html"}))
    with pytest.raises(SpecError, match=r"unknown template \{\{ since \}\}"):
        make_source({"type": "rest", "url": url, "params": {"since": "{{ since }}"}})
    with pytest.raises(SpecError, match=r"not a rate: '100 per second'"):
        make_source({"type": "rest", "url": url, "rate_limit": "100 per second"})


def test_a_query_string_in_url_is_kept_and_merged_with_params(fault_api: tuple[str, FaultAPI]) -> None:
    url, api = fault_api
    expected = [i for i in range(1, 2001) if 1 + i % 28 >= 27]
    pagination = {"type": "offset", "size_param": "limit", "page_size": 50, "total_path": "count"}
    # the filter is only in the URL; the paginator adds offset and limit
    table, _ = read_all(
        make_source(
            {
                "type": "rest",
                "url": f"{url}/offset?updated_gte=2024-01-27",
                "records": "results",
                "pagination": pagination,
                "concurrency": 1,
            }
        )
    )
    assert ids(table) == expected
    pages = -(-len(expected) // 50)
    logged(api, pages)
    assert [path for path, _, _ in api.log] == [
        f"/offset?updated_gte=2024-01-27&limit=50&offset={50 * n}" for n in range(pages)
    ]
    api.log.clear()
    # a clash: params (and the paginator's) win over the URL's
    source = make_source(
        {
            "type": "rest",
            "url": f"{url}/offset?updated_gte=2000-01-01&limit=7",
            "params": {"updated_gte": "2024-01-27"},
            "records": "results",
            "pagination": pagination,
            "concurrency": 1,
        }
    )
    table, _ = read_all(source)
    assert ids(table) == expected
    logged(api, pages)
    assert [path for path, _, _ in api.log] == [
        f"/offset?updated_gte=2024-01-27&limit=50&offset={50 * n}" for n in range(pages)
    ]
    # no params at all: the URL's query goes out as written
    table, _ = read_all(make_source({"type": "rest", "url": f"{url}/echo?status=open&x=1"}))
    assert table.column("query").to_pylist() == ["status=open&x=1"]


def test_a_port_nothing_listens_on_fails_fast_naming_the_url(tmp_path: Path) -> None:
    import re
    import socket

    from agent_orchestrated_etl.config import Settings
    from agent_orchestrated_etl.orchestrator import run_pipeline
    from agent_orchestrated_etl.spec import load_spec
    from agent_orchestrated_etl.store.records import RunStore

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/items"
    (tmp_path / "p.yaml").write_text(
        f'name: wrong_port\nsources:\n  items: {{type: rest, url: "{url}"}}\ndestination: {{type: duckdb, path: out.duckdb, table: items}}\n'
    )
    started = time.monotonic()
    result = run_pipeline(load_spec(tmp_path / "p.yaml"), Settings())
    assert (
        time.monotonic() - started < 10
    )  # it took 184 s: 3 task attempts waiting out the backoff and the open breaker
    assert result.status == "failed"
    assert result.error == (
        f"source items: cannot connect to {url} after 3 attempt(s): ConnectError: All connection attempts failed"
        " (check that the server is up and that `url:` (host and port) is right)"
    )
    events = RunStore(Settings().store_url).get_run(result.run_id)["events"]
    assert [e["attempt"] for e in events if e["kind"] == "task_started"] == [
        1
    ]  # the task is not retried: the client did
    assert [e["reason"] for e in events if e["kind"] == "decision" and e["choice"] == "fail"] == [
        "UnreachableError: retrying cannot help"
    ]
    # the live view showed each failed attempt and when the next one would go
    notes = [e["note"] for e in events if e["kind"] == "task_progress" and e.get("note")]
    assert len(notes) == 2
    for attempt, note in enumerate(notes, 1):
        assert re.fullmatch(
            rf"attempt {attempt} failed \(connection failed: ConnectError: All connection attempts failed\); next in 0\.\ds",
            note,
        ), note


def test_a_host_that_answered_and_then_refuses_keeps_every_retry() -> None:
    import asyncio

    from tests.connectors.http_servers import fault_server

    from agent_orchestrated_etl.connectors.http.client import ClientSettings, HttpClient, HttpRetry
    from agent_orchestrated_etl.exceptions import ConnectionFailedError, UnreachableError

    server, url, _ = fault_server(10)
    retries: list[int] = []
    # Connection: close, so the second request needs a new connection, which the stopped server refuses
    settings = ClientSettings(
        headers={"Connection": "close"},
        retry=HttpRetry(attempts=5, backoff_seconds=0.01, max_backoff_seconds=0.02, breaker_failures=50),
        on_retry=lambda attempt, error, wait: retries.append(attempt),
    )

    async def read() -> BaseException:
        client = HttpClient(settings, where="source src")
        try:
            assert (await client.request("GET", f"{url}/offset")).status_code == 200
            server.shutdown()
            server.server_close()
            try:
                await client.request("GET", f"{url}/offset?offset=5")
            except ConnectionFailedError as exc:
                return exc
            raise AssertionError("the stopped server answered")
        finally:
            await client.aclose()

    error = asyncio.run(read())
    assert not isinstance(error, UnreachableError)  # it answered before: a restart, not a wrong port
    assert retries == [1, 2, 3, 4]
    assert str(error).startswith(f"source src: GET {url}/offset?offset=5: connection failed: ConnectError: ")
