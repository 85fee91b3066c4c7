"""Driving an HTTP read's asyncio loop from a Source's synchronous ``read()``.

``run_async_iter`` runs the pages' coroutine on a loop in a thread of its
own, and ``gather_ordered`` keeps a window of requests in flight while
handing their pages on in request order.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


_DONE = object()


def run_async_iter(pages: AsyncIterator[Any], *, ahead: int = 64) -> Iterator[Any]:
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


async def gather_ordered(
    calls: Sequence[Callable[[], Awaitable[T]]], concurrency: int, *, ahead: int | None = None
) -> AsyncIterator[T]:
    """Run calls with at most ``concurrency`` in flight; yield results in call order.

    Up to ``ahead`` calls (default 8 x ``concurrency``, at most 64 more than
    ``concurrency``) are started or done but not yet yielded, so while the
    next result is slow the other connections go on with the calls after it
    instead of waiting with it; ``ahead`` bounds what is held in memory meanwhile.
    """
    ahead = max(ahead or min(8 * concurrency, concurrency + 64), concurrency)
    gate = asyncio.Semaphore(concurrency)

    async def run(call: Callable[[], Awaitable[T]]) -> T:
        async with gate:  # FIFO: calls start in their order
            return await call()

    window: deque[asyncio.Future[T]] = deque()
    try:
        for call in calls:
            window.append(asyncio.ensure_future(run(call)))
            if len(window) >= ahead:
                yield await window.popleft()
        while window:
            yield await window.popleft()
    finally:
        for task in window:
            task.cancel()
