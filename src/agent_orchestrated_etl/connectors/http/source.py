"""What every HTTP source shares: the spec's connection settings, the client built from them, and the read loop.

A subclass says only how to walk its API: ``pages()`` yields each page's
records with the place they came from. ``read()`` drives that coroutine on a
loop of its own (loop.py) and converts the records of several pages together
(``records_per_batch``), which keeps batches large and schema inference wide.
"""

from __future__ import annotations

import bisect
from abc import abstractmethod
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import Field, field_validator
from typing_extensions import TypeVar  # default= (PEP 696) before Python 3.13

from agent_orchestrated_etl.connectors.base import ConnectorSpec, Partition, Position, Source
from agent_orchestrated_etl.connectors.http.auth import AuthSpec
from agent_orchestrated_etl.connectors.http.client import ClientSettings, HttpClient, HttpRetry
from agent_orchestrated_etl.connectors.http.loop import run_async_iter
from agent_orchestrated_etl.connectors.http.ratelimit import parse_rate
from agent_orchestrated_etl.connectors.http.responses import ResponseValidator
from agent_orchestrated_etl.connectors.nested import NestedOptions, RecordsToArrow


class HttpSourceSpec(ConnectorSpec):
    """The settings every HTTP source has."""

    url: str = Field(description="The endpoint, e.g. https://api.example.com/v1/orders.")
    headers: dict[str, str] = Field(default_factory=dict)
    auth: AuthSpec | None = None
    rate_limit: str | None = Field(None, description="At most this many requests to the host, e.g. 100/s or 600/min.")
    timeout_seconds: float = Field(30, gt=0)
    retry: HttpRetry = Field(default_factory=HttpRetry)
    nested: NestedOptions = Field(default_factory=NestedOptions)
    records_per_batch: int = Field(10_000, ge=1, description="Records of several pages converted into one Arrow batch.")

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, rate: str | None) -> str | None:
        if rate is not None:
            parse_rate(rate)
        return rate


class PageBatcher:
    """Collects the records of pages and converts them into batches, remembering each record's page."""

    def __init__(self, options: NestedOptions, rows: int) -> None:
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


H = TypeVar("H", bound=HttpSourceSpec, default=HttpSourceSpec)


class HttpSource(Source[H]):
    """A source that reads pages of JSON over HTTP; subclasses implement ``pages()``."""

    #: What one call to the API is called in messages ("request", "query").
    call: ClassVar[str] = "request"

    def __init__(self, name: str, spec: H, *, batch_rows: int) -> None:
        super().__init__(name, spec, batch_rows=batch_rows)
        self.retries = 0
        self._rejected: list[tuple[dict[str, Any], str, Position]] = []

    def reread_cost(self) -> str | None:
        url = self.spec.url
        return f"each read repeats every {self.call} to {url}, and the API may answer differently the second time"

    def quarantined(self) -> Iterator[tuple[dict[str, Any], str, Position]]:
        rejected, self._rejected = self._rejected, []
        return iter(rejected)

    def read(self, partition: Partition) -> Iterator[tuple[pa.RecordBatch, Position]]:
        """Yield the records of every page; raises RetriableError subclasses once retries run out,
        AuthError, SourceNotFoundError, ConfigurationError (a records path not in a response), and
        DataError for a body that is not JSON."""
        batcher = PageBatcher(self.spec.nested, min(self.spec.records_per_batch, self.batch_rows))
        for records, origin in run_async_iter(self.pages(partition)):
            yield from batcher.add(records, origin)
        yield from batcher.flush()
        self._rejected += batcher.rejected

    @abstractmethod
    def pages(self, partition: Partition) -> AsyncIterator[tuple[list[Any], str]]:
        """Each page's records and its origin (the URL, or the page and cursor), in order."""

    def validator(self) -> ResponseValidator:
        """The ``validate_response`` hook: what a response's status means for this source."""
        return ResponseValidator()

    def client(self, *, max_connections: int) -> HttpClient:
        """A client for one read, with this spec's auth, limits and retries."""
        spec = self.spec
        settings = ClientSettings(
            headers=spec.headers,
            auth=spec.auth.build() if spec.auth else None,
            timeout_seconds=spec.timeout_seconds,
            rate_limit=spec.rate_limit,
            max_connections=max_connections,
            retry=spec.retry,
            on_retry=self._retried,
            validator=self.validator(),
        )
        return HttpClient(settings, where=f"source {self.name}")

    def _retried(self, attempt: int, error: BaseException, wait: float) -> None:
        """Count a retry and tell the live view that a request failed and when it goes again."""
        self.retries += 1
        if self.notice is not None:
            message = getattr(error, "message", None) or str(error)
            self.notice(f"attempt {attempt} failed ({message[:80]}); next in {wait:.1f}s")
