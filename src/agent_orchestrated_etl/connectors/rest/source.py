"""The REST source: pages of JSON from one endpoint, as Arrow batches.

Pages are fetched concurrently when the paginator knows the total up front
(``remaining``: page numbers and offsets), ahead of the page being handed on
and handed on in order, so one slow page holds up only its own turn (loop.py).
Cursor, next-URL and Link-header pages are known only from the page before,
so they are fetched one after the other (``PageSequence``, which refuses a
page it has read). The records of each page are at the spec's ``records:``
path; a page where that path is absent fails the read (http/records.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from agent_orchestrated_etl.connectors.base import Partition, SourceCapabilities
from agent_orchestrated_etl.connectors.http.client import HttpClient
from agent_orchestrated_etl.connectors.http.loop import gather_ordered
from agent_orchestrated_etl.connectors.http.paginators import Page, PageRequest, PageSequence
from agent_orchestrated_etl.connectors.http.records import dig, records_at, shown_url
from agent_orchestrated_etl.connectors.http.source import HttpSource
from agent_orchestrated_etl.connectors.incremental import Window
from agent_orchestrated_etl.connectors.rest.spec import TEMPLATE, RestSourceSpec
from agent_orchestrated_etl.exceptions import DataError


class RestSource(HttpSource[RestSourceSpec]):
    spec_model = RestSourceSpec
    capabilities = SourceCapabilities(incremental=True)

    def describe(self) -> str:
        return f"{self.spec.method} {self.spec.url}"

    def partitions(self, window: Window | None = None) -> list[Partition]:
        """One partition; an incremental window travels in it (the task filters through it too)."""
        options = {"window": window.as_dict()} if window else {}
        return [Partition(key="all", description=self.describe(), options=options)]

    async def pages(self, partition: Partition) -> AsyncIterator[tuple[list[Any], str]]:
        window = partition.options.get("window")
        mark = Window.from_dict(window).start if window else None
        async for page in self._pages(mark):
            yield page.records, page.url

    def _params(self, mark: Any) -> dict[str, str]:
        params: dict[str, str] = {}
        for key, value in self.spec.params.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            if TEMPLATE.search(text):
                if mark is None:
                    continue  # no mark yet: read everything
                text = TEMPLATE.sub(lambda _: _as_text(mark), text)
            params[key] = text
        return params

    async def _pages(self, mark: Any) -> AsyncIterator[Page]:
        client = self.client(max_connections=max(self.spec.concurrency, 1))
        base = self._params(mark)
        pager = self.spec.pagination
        sequence = PageSequence(pager, where=f"source {self.name}")
        try:
            page = await self._fetch(client, sequence.first, base, 1)
            yield page
            remaining = pager.remaining(page) if self.spec.concurrency > 1 else None
            if remaining is not None:
                calls = [partial(self._fetch, client, r, base, n) for n, r in enumerate(remaining, 2)]
                async for page in gather_ordered(calls, self.spec.concurrency):
                    yield page
                return
            while (request := sequence.advance(page)) is not None:
                page = await self._fetch(client, request, base, page.number + 1)
                yield page
        finally:
            await client.aclose()

    async def _fetch(self, client: HttpClient, request: PageRequest, base: dict[str, str], number: int) -> Page:
        if request.url is not None:  # the server gave the whole URL, parameters included
            url, params = request.url, dict(request.params) or None
        else:
            url, params = self.spec.url, {**base, **dict(request.params)}
        response = await client.request(self.spec.method, url, params=params, json=self.spec.body)
        try:
            body = response.json()
        except ValueError as exc:
            raise DataError(
                f"the response is not JSON: {response.text[:200]!r}",
                where=f"source {self.name}: {response.url}",
                hint="check `url:`; the endpoint must answer JSON",
            ) from exc
        records = dig(body, self.spec.records) if self.spec.records else None
        if not isinstance(records, list):  # else the common page, without building the message's masked URL
            where = f"source {self.name}: {self.spec.method} {shown_url(response.url)}"
            records = records_at(body, self.spec.records, key="records", where=where, page=number)
        return Page(request, response.url, response.headers, body, records, response.links, number)


def _as_text(mark: Any) -> str:
    """A mark as an API expects it in a query: ISO 8601 for dates and times."""
    return mark.isoformat() if isinstance(mark, dt.date) else str(mark)
