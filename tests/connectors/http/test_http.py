"""The shared HTTP package (connectors/http/): the validate_response hook and the open set of paginators."""

from __future__ import annotations

import asyncio
import typing

import httpx
import pytest
from tests.connectors.http_servers import FaultAPI, logged

from agent_orchestrated_etl.connectors.http.client import ClientSettings, HttpClient, HttpRetry
from agent_orchestrated_etl.connectors.http.paginators import PAGINATORS, Paginator
from agent_orchestrated_etl.connectors.http.responses import ResponseValidator
from agent_orchestrated_etl.exceptions import AuthError, ConfigurationError, ConnectionFailedError, SourceNotFoundError

FAST = HttpRetry(attempts=4, backoff_seconds=0.01, max_backoff_seconds=0.02)


def get(url: str, settings: ClientSettings) -> httpx.Response:
    async def request() -> httpx.Response:
        client = HttpClient(settings, where="source src")
        try:
            return await client.request("GET", url)
        finally:
            await client.aclose()

    return asyncio.run(request())


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("401", AuthError),
        ("403", AuthError),
        ("404", SourceNotFoundError),
        ("400", ConfigurationError),
        ("418", ConfigurationError),
    ],
)
def test_a_4xx_fails_at_once(fault_api: tuple[str, FaultAPI], fault: str, error: type[Exception]) -> None:
    url, api = fault_api
    api.faults["first"] = [fault]
    retries: list[int] = []
    with pytest.raises(error, match=rf"^source src: GET {url}/offset: HTTP {fault}: "):
        get(f"{url}/offset", ClientSettings(retry=FAST, on_retry=lambda attempt, *_: retries.append(attempt)))
    assert retries == []
    assert logged(api, 1) == [int(fault)]


@pytest.mark.parametrize("fault", ["429:0", "500", "501", "503", "408"])
def test_429_and_5xx_are_retried(fault_api: tuple[str, FaultAPI], fault: str) -> None:
    url, api = fault_api
    api.faults["first"] = [fault]
    retries: list[int] = []
    response = get(f"{url}/offset", ClientSettings(retry=FAST, on_retry=lambda attempt, *_: retries.append(attempt)))
    assert response.json()["count"] == 2000
    assert retries == [1]
    assert logged(api, 2) == [int(fault.split(":")[0]), 200]


class ErrorObjectIsRetriable(ResponseValidator):
    """An API that answers a busy moment with 200 and an error object."""

    def validate(self, response: httpx.Response, *, where: str) -> None:
        super().validate(response, where=where)
        if "error" in response.json():
            raise ConnectionFailedError(f"the API answered {response.json()}", where=where)


def test_a_source_can_override_what_a_response_means(fault_api: tuple[str, FaultAPI]) -> None:
    url, api = fault_api
    api.faults["first"] = ["200", "200"]
    retries: list[str] = []
    settings = ClientSettings(
        retry=FAST, validator=ErrorObjectIsRetriable(), on_retry=lambda _, error, __: retries.append(str(error))
    )
    response = get(f"{url}/offset", settings)
    assert response.json()["count"] == 2000
    assert retries == [f"source src: GET {url}/offset: the API answered {{'error': 'injected'}}"] * 2
    # without the override the error object is the answer
    api.faults["first"] = ["200"]
    assert get(f"{url}/offset", ClientSettings(retry=FAST)).json() == {"error": "injected"}


def _styles(cls: type[Paginator]) -> set[type[Paginator]]:
    found = set()
    for sub in cls.__subclasses__():
        if typing.get_origin(sub.model_fields["type"].annotation) is typing.Literal:
            found.add(sub)
        found |= _styles(sub)
    return found


def test_every_pagination_style_is_registered_and_parses() -> None:
    from tests.connectors.rest_helpers import make_source

    assert _styles(Paginator) == set(PAGINATORS)
    for style in PAGINATORS:
        [kind] = typing.get_args(style.model_fields["type"].annotation)
        required = {name: "x" for name, field in style.model_fields.items() if field.is_required() and name != "type"}
        source = make_source({"type": "rest", "url": "http://127.0.0.1:1/", "pagination": {"type": kind, **required}})
        assert type(source.spec.pagination) is style
