"""Retries with exponential backoff and full jitter, on tenacity, for sync and async callers.

Which errors are worth retrying is the exception tree's business
(``RetriableError``); this module only decides how long to wait. A server's
``Retry-After`` is honoured as a lower bound on the wait, never as the whole
wait: ``Retry-After: 0`` from a struggling server would otherwise turn the
retries into a tight loop that burns every attempt within milliseconds.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import tenacity

from agent_orchestrated_etl.exceptions import RateLimitedError, RetriableError

T = TypeVar("T")


class RetrySettings(Protocol):
    """What a retry needs; spec.RetryPolicy and Backoff both fit."""

    attempts: int
    backoff_seconds: float
    max_backoff_seconds: float


@dataclass(frozen=True)
class Backoff:
    attempts: int = 5
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0


def wait_seconds(
    settings: RetrySettings, attempt: int, error: BaseException | None, rng: random.Random | None = None
) -> float:
    """How long to wait after failed attempt number ``attempt`` (1-based).

    Full jitter (a uniform draw up to the exponential cap) spreads the retries
    of many tasks hitting one server. ``Retry-After`` raises the wait to at
    least what the server asked for, capped by ``max_backoff_seconds``.
    """
    cap = min(settings.max_backoff_seconds, settings.backoff_seconds * 2 ** (attempt - 1))
    # Half fixed, half random: never zero, so Retry-After: 0 still backs off.
    wait = cap / 2 + (rng or random).uniform(0, cap / 2)
    if isinstance(error, RateLimitedError) and error.retry_after is not None:
        wait = max(wait, min(error.retry_after, settings.max_backoff_seconds))
    return wait


def _tenacity_kwargs(
    settings: RetrySettings,
    retry_on: tuple[type[BaseException], ...],
    rng: random.Random | None,
    on_retry: Callable[[int, BaseException, float], None] | None,
) -> dict[str, Any]:
    def wait(state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        return wait_seconds(settings, state.attempt_number, error, rng)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if on_retry and error is not None and state.next_action:
            on_retry(state.attempt_number, error, state.next_action.sleep)

    return {
        "stop": tenacity.stop_after_attempt(settings.attempts),
        "wait": wait,
        "retry": tenacity.retry_if_exception_type(retry_on),
        "reraise": True,
        "before_sleep": before_sleep,
    }


def retry_call(
    fn: Callable[[], T],
    settings: RetrySettings,
    *,
    retry_on: tuple[type[BaseException], ...] = (RetriableError,),
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Call ``fn`` until it succeeds or the attempts run out; the last error is re-raised.

    ``sleep`` and ``rng`` are injectable so tests check the waits without waiting.
    """
    retrying = tenacity.Retrying(sleep=sleep, **_tenacity_kwargs(settings, retry_on, rng, on_retry))
    return retrying(fn)


async def retry_async(
    fn: Callable[[], Awaitable[T]],
    settings: RetrySettings,
    *,
    retry_on: tuple[type[BaseException], ...] = (RetriableError,),
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """The async twin of ``retry_call``."""
    retrying = tenacity.AsyncRetrying(sleep=sleep, **_tenacity_kwargs(settings, retry_on, rng, on_retry))
    return await retrying(fn)
