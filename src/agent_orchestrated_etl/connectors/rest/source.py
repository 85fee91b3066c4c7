"""The REST source: pages of JSON from one endpoint, as Arrow batches.

``read`` is a plain iterator, as every Source's; inside, it drives an asyncio
loop of its own so that pages can be fetched concurrently when the paginator
knows the total up front. Records of several pages are converted together
(``records_per_batch``), which keeps batches large and schema inference
wide.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import bisect
import queue
import re
import threading
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
from pydantic import Field, field_validator

from agent_orchestrated_etl.connectors.base import ConnectorSpec, Partition, Position, Source, SourceCapabilities
from agent_orchestrated_etl.connectors.incremental import IncrementalSpec, Window
from agent_orchestrated_etl.connectors.nested import NestedOptions, RecordsToArrow
from agent_orchestrated_etl.connectors.rest.auth import AuthSpec
from agent_orchestrated_etl.connectors.rest.client import ClientSettings, HttpClient, HttpRetry, gather_ordered
from agent_orchestrated_etl.connectors.rest.ratelimit import parse_rate
from agent_orchestrated_etl.connectors.rest.paginators import NoPagination, Page, PageRequest, Pagination, dig
from agent_orchestrated_etl.exceptions import DataError

if TYPE_CHECKING:
    import httpx

_TEMPLATE = re.compile(r"\{\{\s*(\w+)\s*\}\}")


class RestSourceSpec(ConnectorSpec):
    type: Literal["rest"]
    url: str = Field(description="The endpoint, e.g. https://api.example.com/v1/orders.")
    method: Literal["GET", "POST"] = "GET"
    params: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Query parameters; {{ high_water_mark }} is replaced by the committed incremental mark."
    )
    body: dict[str, Any] | None = Field(None, description="JSON body for POST.")
    headers: dict[str, str] = Field(default_factory=dict)
    auth: AuthSpec | None = None
    records: str | None = Field(None, description="Dotted path of the record list in the body (data.items); default: the body.")
    pagination: Pagination = Field(default_factory=lambda: NoPagination(type="none"))
    concurrency: int = Field(4, ge=1, le=64, description="Pages in flight when the total is known up front.")
    rate_limit: str | None = Field(None, description="At most this many requests to the host, e.g. 100/s or 600/min.")
    timeout_seconds: float = Field(30, gt=0)
    retry: HttpRetry = Field(default_factory=HttpRetry)
    nested: NestedOptions = Field(default_factory=NestedOptions)
    incremental: IncrementalSpec | None = Field(None, description="Load only records past the committed mark of `cursor`; pass the mark to the API with {{ high_water_mark }} in params.")
    records_per_batch: int = Field(10_000, ge=1, description="Records of several pages converted into one Arrow batch.")

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, rate: str | None) -> str | None:
        if rate is not None:
            parse_rate(rate)
        return rate

    @field_validator("params")
    @classmethod
    def _known_templates(cls, params: dict[str, Any]) -> dict[str, Any]:
        for key, value in params.items():
            for name in _TEMPLATE.findall(str(value)):
                if name != "high_water_mark":
                    raise ValueError(f"params.{key}: unknown template {{{{ {name} }}}}; the only one is {{{{ high_water_mark }}}}")
        return params


class PageBatcher:
    """Collects the records of pages and converts them into batches, remembering each record's page."""

    def __init__(self, source: str, options: NestedOptions, rows: int) -> None:
        self.source = source
        self.rows = rows
        self.converter = RecordsToArrow(options)
        self.rejected: list[tuple[dict[str, Any], str, Position]] = []
        self._records: list[Any] = []
        self._starts: list[int] = []
        self._origins: list[str] = []
        self._row = 1

    def add(self, records: list[Any], origin: str) -> Iterator[tuple[pa.RecordBatch, Position]]:
        self._starts.append(len(self._records))
        self._origins.append(origin)
        self._records.extend(records)
        if len(self._records) >= self.rows:
            yield from self.flush()

    def flush(self) -> Iterator[tuple[pa.RecordBatch, Position]]:
        if not self._records:
            return
        batch, rejected = self.converter.convert(self._records)
        for record, reason, index in rejected:
            page = bisect.bisect_right(self._starts, index) - 1
            self.rejected.append((record, reason, Position(origin=self._origins[page], row=self._row + index)))
        position = Position(origin=self._origins[0], row=self._row)
        self._row += len(self._records)
        self._records, self._starts, self._origins = [], [], []
        if batch is not None:
            yield batch, position


class RestSource(Source):
    spec_model = RestSourceSpec
    capabilities = SourceCapabilities(incremental=True)

    def __init__(self, name: str, spec: RestSourceSpec, *, batch_rows: int) -> None:
        super().__init__(name, spec, batch_rows=batch_rows)
        self.retries = 0
        self._rejected: list[tuple[dict[str, Any], str, Position]] = []

    def describe(self) -> str:
        return f"{self.spec.method} {self.spec.url}"

    def reread_cost(self) -> str | None:
        return f"each read repeats every request to {self.spec.url}, and the API may answer differently the second time"

    def partitions(self, window: Window | None = None) -> list[Partition]:
        """One partition; an incremental window travels in it (the task filters through it too)."""
        return [Partition(key="all", description=self.describe(), options={"window": window.as_dict()} if window else {})]

    def quarantined(self) -> Iterator[tuple[dict[str, Any], str, Position]]:
        rejected, self._rejected = self._rejected, []
        return iter(rejected)

    def read(self, partition: Partition) -> Iterator[tuple[pa.RecordBatch, Position]]:
        """Yield the records of every page; raises RetriableError subclasses once retries run out,
        AuthError, SourceNotFoundError, and DataError for a body that is not JSON."""
        batcher = PageBatcher(self.name, self.spec.nested, min(self.spec.records_per_batch, self.batch_rows))
        window = partition.options.get("window")
        mark = Window.from_dict(window).start if window else None
        for page in _run_async_iter(self._pages(mark)):
            yield from batcher.add(page.records, page.url)
        yield from batcher.flush()
        self._rejected += batcher.rejected

    def _params(self, mark: Any) -> dict[str, str]:
        params: dict[str, str] = {}
        for key, value in self.spec.params.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            if _TEMPLATE.search(text):
                if mark is None:
                    continue  # no mark yet: read everything
                text = _TEMPLATE.sub(lambda _: _as_text(mark), text)
            params[key] = text
        return params

    def _settings(self) -> ClientSettings:
        spec = self.spec

        def count_retry(attempt: int, error: BaseException, wait: float) -> None:
            self.retries += 1
            retry_notice(self, attempt, error, wait)

        return ClientSettings(
            headers=spec.headers,
            auth=spec.auth.build() if spec.auth else None,
            timeout_seconds=spec.timeout_seconds,
            rate_limit=spec.rate_limit,
            max_connections=max(spec.concurrency, 1),
            retry=spec.retry,
            on_retry=count_retry,
        )

    async def _pages(self, mark: Any) -> AsyncIterator[Page]:
        client = HttpClient(self._settings(), where=f"source {self.name}")
        base = self._params(mark)
        pager = self.spec.pagination
        try:
            first = pager.first()
            page = await self._fetch(client, first, base)
            yield page
            remaining = pager.remaining(page) if self.spec.concurrency > 1 else None
            if remaining is not None:
                calls = [lambda r=r: self._fetch(client, r, base) for r in remaining]  # type: ignore[misc]
                async for page in gather_ordered(calls, self.spec.concurrency):
                    yield page
                return
            seen = {first}
            while (request := pager.next(page)) is not None:
                if request in seen:
                    raise DataError(f"the server sent the same page twice ({request}); pagination would loop", where=f"source {self.name}: {page.url}", hint="check the pagination settings")
                seen.add(request)
                page = await self._fetch(client, request, base)
                yield page
        finally:
            await client.aclose()

    async def _fetch(self, client: HttpClient, request: PageRequest, base: dict[str, str]) -> Page:
        if request.url is not None:  # the server gave the whole URL, parameters included
            url, params = request.url, dict(request.params) or None
        else:
            url, params = self.spec.url, {**base, **dict(request.params)}
        response = await client.request(self.spec.method, url, params=params, json=self.spec.body)
        try:
            body = response.json()
        except ValueError as exc:
            raise DataError(f"the response is not JSON: {response.text[:200]!r}", where=f"source {self.name}: {response.url}", hint="check `url:`; the endpoint must answer JSON") from exc
        records = dig(body, self.spec.records)
        if records is None:
            records = []
        elif not isinstance(records, list):
            records = [records]
        return Page(request, str(response.url), dict(response.headers), body, records, _links(response))


def retry_notice(source: Source, attempt: int, error: BaseException, wait: float) -> None:
    """Tell the live view that a request failed and when it goes again."""
    if source.notice is not None:
        message = getattr(error, "message", None) or str(error)
        source.notice(f"attempt {attempt} failed ({message[:80]}); next in {wait:.1f}s")


def _links(response: httpx.Response) -> dict[str, str]:
    return {rel: link["url"] for rel, link in response.links.items() if "url" in link}


def _as_text(mark: Any) -> str:
    """A mark as an API expects it in a query: ISO 8601 for dates and times."""
    return mark.isoformat() if isinstance(mark, dt.date) else str(mark)


_DONE = object()


def _run_async_iter(pages: AsyncIterator[Any], *, ahead: int = 64) -> Iterator[Any]:
    """Drive an async iterator from synchronous code, on a loop in a thread of its own.

    A Source's read() runs in an agent's worker thread. The HTTP loop keeps
    running while that thread converts pages to Arrow, so rate-limit slots
    and timeouts stay on time, and fetching overlaps converting. At most
    ``ahead`` pages wait in the queue. A consumer that stops early cancels
    the loop, which closes the connections.
    """
    handoff: queue.Queue[Any] = queue.Queue()
    loop = asyncio.new_event_loop()
    room = threading.Semaphore(ahead)

    async def produce() -> None:
        try:
            async for item in pages:
                while not room.acquire(blocking=False):
                    await asyncio.sleep(0.002)
                handoff.put(item)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            handoff.put(exc)
        else:
            handoff.put(_DONE)

    task = loop.create_task(produce())
    thread = threading.Thread(target=loop.run_until_complete, args=(task,), name="http-loop", daemon=True)
    thread.start()
    try:
        while (item := handoff.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            room.release()
            yield item
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
