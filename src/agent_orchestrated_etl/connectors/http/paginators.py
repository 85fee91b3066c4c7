"""Pagination styles, an open set. Each is a spec model that maps the last page to the next request.

Paginators hold no state, as the Singer SDK's ``get_next(response)``:
``first()`` gives the first request, ``get_next(page)`` the one after a page
(None to stop), and ``remaining(page)`` every other request at once when the
first page tells the total, so pages can be fetched concurrently.
``PageSequence.advance`` refuses a request it has already made, which turns
a server that repeats its cursor into an error instead of an endless loop.

A new style is one ``Paginator`` subclass with a ``type`` literal, and one
line in ``PAGINATORS``: the specs' ``pagination:`` union is built from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union
from urllib.parse import urljoin

from pydantic import BaseModel, ConfigDict, Field

from agent_orchestrated_etl.connectors.http.records import dig
from agent_orchestrated_etl.exceptions import DataError


@dataclass(frozen=True)
class PageRequest:
    """A page to fetch: extra query parameters, or a whole URL given by the server."""

    params: tuple[tuple[str, str], ...] = ()
    url: str | None = None

    def with_params(self, **params: Any) -> PageRequest:
        return PageRequest(
            params=tuple(sorted({**dict(self.params), **{k: str(v) for k, v in params.items()}}.items())), url=self.url
        )


@dataclass
class Page:
    """A fetched page: its request, where it came from (``url``, 1-based ``number``) and its body."""

    request: PageRequest
    url: str
    headers: dict[str, str]
    body: Any
    records: list[Any]
    links: dict[str, str] = field(default_factory=dict)
    number: int = 1


class Paginator(BaseModel):
    """The base of every pagination style: one page, unless a subclass says how to get the next."""

    model_config = ConfigDict(extra="forbid")

    type: str

    def first(self) -> PageRequest:
        """The first request."""
        return PageRequest()

    def get_next(self, page: Page) -> PageRequest | None:  # noqa: ARG002 - one page only
        """The request after ``page``, or None when ``page`` is the last."""
        return None

    def remaining(self, page: Page) -> list[PageRequest] | None:  # noqa: ARG002 - not known up front
        """Every request after the first ``page`` when it tells the total (fetched concurrently), else None."""
        return None


class PageSequence:
    """Walks a paginator page by page, refusing a request it has already made."""

    def __init__(self, paginator: Paginator, *, where: str) -> None:
        self.paginator = paginator
        self.where = where
        self.first = paginator.first()
        self._seen = {self.first}

    def advance(self, page: Page) -> PageRequest | None:
        """The request after ``page``; raises DataError when the server would send us back to a page we read."""
        request = self.paginator.get_next(page)
        if request is None:
            return None
        if request in self._seen:
            raise DataError(
                f"the server sent the same page twice ({request}); pagination would loop",
                where=f"{self.where}: {page.url}",
                hint="check the pagination settings",
            )
        self._seen.add(request)
        return request


class NoPagination(Paginator):
    type: Literal["none"]


class _Counted(Paginator):
    """Shared by page-number and offset styles: a page size and an optional total."""

    size_param: str | None = Field(None, description="Query parameter for the page size (per_page, limit, _limit).")
    page_size: int = Field(100, ge=1)
    total_path: str | None = Field(None, description="Dotted path of the total record count in the body.")
    total_header: str | None = Field("X-Total-Count", description="Header with the total record count.")
    stop_on_short_page: bool = Field(True, description="A page with fewer than page_size records is the last.")

    def _total(self, page: Page) -> int | None:
        value = dig(page.body, self.total_path) if self.total_path else None
        if value is None and self.total_header:
            value = page.headers.get(self.total_header.lower())
        try:
            return int(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    def _size(self) -> dict[str, int]:
        return {self.size_param: self.page_size} if self.size_param else {}

    def _last(self, page: Page, fetched: int) -> bool:
        total = self._total(page)
        return (
            not page.records
            or (self.stop_on_short_page and len(page.records) < self.page_size)
            or (total is not None and fetched >= total)
        )


class PageNumberPagination(_Counted):
    type: Literal["page"]
    page_param: str = "page"
    start: int = Field(1, description="The number of the first page (0 or 1).")

    def first(self) -> PageRequest:
        return PageRequest().with_params(**{self.page_param: self.start}, **self._size())

    def _number(self, request: PageRequest) -> int:
        return int(dict(request.params)[self.page_param])

    def get_next(self, page: Page) -> PageRequest | None:
        number = self._number(page.request)
        if self._last(page, (number - self.start + 1) * self.page_size):
            return None
        return page.request.with_params(**{self.page_param: number + 1})

    def remaining(self, page: Page) -> list[PageRequest] | None:
        total = self._total(page)
        if total is None or not page.records:
            return None
        pages = math.ceil(total / self.page_size)
        return [page.request.with_params(**{self.page_param: self.start + n}) for n in range(1, pages)]


class OffsetPagination(_Counted):
    type: Literal["offset"]
    offset_param: str = "offset"
    size_param: str | None = "limit"

    def first(self) -> PageRequest:
        return PageRequest().with_params(**{self.offset_param: 0}, **self._size())

    def get_next(self, page: Page) -> PageRequest | None:
        offset = int(dict(page.request.params)[self.offset_param]) + len(page.records)
        if self._last(page, offset):
            return None
        return page.request.with_params(**{self.offset_param: offset})

    def remaining(self, page: Page) -> list[PageRequest] | None:
        total = self._total(page)
        if total is None or not page.records:
            return None
        return [
            page.request.with_params(**{self.offset_param: o}) for o in range(self.page_size, total, self.page_size)
        ]


class CursorPagination(Paginator):
    type: Literal["cursor"]
    cursor_path: str = Field(description="Dotted path of the next cursor in the body (meta.next_cursor).")
    cursor_param: str = Field("cursor", description="Query parameter that sends the cursor back.")

    def get_next(self, page: Page) -> PageRequest | None:
        cursor = dig(page.body, self.cursor_path)
        if cursor in (None, "") or not page.records:
            return None
        return page.request.with_params(**{self.cursor_param: cursor})


class NextUrlPagination(Paginator):
    type: Literal["next_url"]
    next_url_path: str = Field(description="Dotted path of the next page's URL in the body (links.next).")

    def get_next(self, page: Page) -> PageRequest | None:
        url = dig(page.body, self.next_url_path)
        return PageRequest(url=urljoin(page.url, str(url))) if url and page.records else None


class LinkHeaderPagination(Paginator):
    """RFC 8288 ``Link: <...>; rel="next"``, as GitHub and json-server send it."""

    type: Literal["link_header"]
    rel: str = "next"

    def get_next(self, page: Page) -> PageRequest | None:
        url = page.links.get(self.rel)
        return PageRequest(url=urljoin(page.url, url)) if url and page.records else None


PAGINATORS: tuple[type[Paginator], ...] = (
    NoPagination,
    PageNumberPagination,
    OffsetPagination,
    CursorPagination,
    NextUrlPagination,
    LinkHeaderPagination,
)

if TYPE_CHECKING:
    Pagination = Paginator
else:  # the spec union, discriminated by `type`, of every registered style
    Pagination = Annotated[Union[PAGINATORS], Field(discriminator="type")]  # noqa: UP007 - built from a tuple
