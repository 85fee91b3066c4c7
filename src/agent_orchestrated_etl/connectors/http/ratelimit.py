"""A rate limiter per host, shared by every task of the process, that slows down on the server's word.

Hand-written rather than aiolimiter or pyrate-limiter: those take a fixed
rate, and this one must lower its rate while a server's
``X-RateLimit-Remaining``/``RateLimit-Remaining`` says the window is running
out, and stop every caller of the host until a 429's ``Retry-After`` has
passed. It schedules slots (generic cell rate algorithm) rather than counting
tokens, which keeps the observed rate exact at steady state.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_PER = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def parse_rate(text: str) -> float:
    """'100/s', '600/min' -> requests per second."""
    match = _RATE.match(text)
    if not match:
        raise ValueError(f"not a rate: {text!r} (use a count per unit, e.g. 100/s or 600/min)")
    return float(match.group(1)) / _PER[match.group(2)]


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header in seconds: delta seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - (now or time.time()))
        except (TypeError, ValueError):
            return None


class RateLimiter:
    """Spaces requests to at most ``rate`` per second, with ``burst`` requests of slack.

    ``rate=None`` means no limit of our own; the server's headers may still impose one.
    A burst of 2 lets a request that woke a little late (the GIL, a busy loop)
    be followed at once by the next, so lateness does not accumulate and the
    long-run rate stays at ``rate``; with 1, every late wake-up is lost time.
    """

    def __init__(self, rate: float | None, *, burst: int = 2, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._next = 0.0  # the earliest time the next request may start
        self._reserved = 0  # slots given out so far: a response's quota does not count those after its own
        self._server_rate: float | None = None
        self._reset_at = 0.0  # when the server's current quota window ends, as tight as its headers tell
        self._exhausted = False  # the last quota headers left nothing until _reset_at
        self._last_remaining: float | None = None
        self._window_start = 0.0  # when the server's quota window last began, as its headers show it
        self._window_seconds = 0.0  # how long its windows are; 0 until seen
        self._paused_until = 0.0
        self._lock = threading.Lock()  # shared by tasks whose coroutines may run on different loops

    def effective_rate(self) -> float | None:
        now = self._clock()
        rates = [r for r in (self.rate, self._server_rate if now < self._reset_at else None) if r]
        return min(rates) if rates else None

    def reserve(self) -> float:
        """Take the next slot; returns how many seconds to wait before sending."""
        return self._reserve()[0]

    def _reserve(self) -> tuple[float, int]:
        with self._lock:
            now = self._clock()
            start = max(now, self._paused_until)
            rate = self.effective_rate()
            self._reserved += 1
            if rate is None:
                return start - now, self._reserved
            interval = 1.0 / rate
            slot = max(start, self._next - (self.burst - 1) * interval)
            self._next = max(self._next, slot) + interval
            return slot - now, self._reserved

    async def acquire(self) -> int:
        """Wait for a slot; returns its number, to pass to ``observe`` with the answer's headers."""
        wait, slot = self._reserve()
        if wait > 0:
            await asyncio.sleep(wait)
        return slot

    def pause(self, seconds: float) -> float:
        """Hold every request to the host for ``seconds`` (a 429 or 503 with Retry-After); returns the pause.

        When the quota headers said the window is used up, its end as they
        bound it is the same moment told more exactly than a Retry-After in
        whole seconds, so the pause ends there if that is sooner.
        """
        with self._lock:
            now = self._clock()
            until = now + seconds
            if self._exhausted and now < self._reset_at < until:
                until = self._reset_at
            self._paused_until = max(self._paused_until, until)
            return until - now

    def observe(self, headers: Mapping[str, str], slot: int | None = None) -> None:
        """Adapt to the server's quota headers (lower-case names) before it starts answering 429.

        With R requests left in a window that ends in T seconds, the R, less
        the slots given out after ``slot`` (the request these headers
        answer, which the server had not counted yet), are spread over what
        is left of the T after those slots.

        Servers round T up to whole seconds, so one header alone says only
        that the window ends within the second after T - 1; with one-second
        windows T is always 1. Reading it as T (the old way) spread each
        window's quota over more than the window and used about half of it.
        So the limiter also watches R: when it jumps up, a window began
        between the answer before and this one, and windows of T seconds
        (T as it reads just after the jump) end every T seconds from then.
        The earlier of the two bounds is the window's end. Headers without
        both values are ignored.
        """
        remaining, reset = _quota(headers)
        if remaining is None or reset is None:
            return
        seconds = reset - time.time() if reset > 1e9 else reset  # an epoch time or a delta
        with self._lock:
            now = self._clock()
            ends = now + max(seconds, 0.0)
            if self._window_seconds and now - self._window_start >= self._window_seconds / 2:
                # past the middle of a window: a rise of R is a new one, not answers overtaking each other
                began = self._last_remaining is not None and remaining > self._last_remaining
            else:
                began = self._last_remaining is None or remaining > self._last_remaining + max(1, remaining // 4)
            if began and reset.is_integer() and seconds >= 1:
                self._window_start, self._window_seconds = now, seconds
            self._last_remaining = remaining
            if self._window_seconds:
                cycles = math.floor((now - self._window_start) / self._window_seconds) + 1
                ends = min(ends, self._window_start + cycles * self._window_seconds)
            self._reset_at = ends
            left = ends - now
            budget = remaining - (self._reserved - slot if slot is not None else 0)
            self._exhausted = budget <= 0
            if left <= 0:
                return
            if self._exhausted:
                self._paused_until = max(self._paused_until, self._reset_at)
                return
            # the slots already given out fill the time up to _next; the budget goes in what is left after them
            self._server_rate = budget / max(ends - max(now, self._next), 1e-3)


_QUOTA_FIELD = re.compile(r"(?:^|[;,\s])(remaining|r|reset|t)\s*=\s*(\d+(?:\.\d+)?)")


def _quota(headers: Mapping[str, str]) -> tuple[float | None, float | None]:
    """(requests left, reset) from ``X-RateLimit-*``, ``RateLimit-*`` or the structured ``RateLimit`` header."""
    remaining = _number(headers.get("x-ratelimit-remaining", headers.get("ratelimit-remaining")))
    reset = _number(headers.get("x-ratelimit-reset", headers.get("ratelimit-reset")))
    if (remaining is None or reset is None) and "ratelimit" in headers:
        # draft-ietf-httpapi-ratelimit-headers: `limit=100, remaining=50, reset=5` or `"default";r=50;t=5`
        found = {name[0]: float(value) for name, value in _QUOTA_FIELD.findall(headers["ratelimit"])}
        remaining, reset = found.get("r", remaining), found.get("t", reset)
    return remaining, reset


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class LimiterRegistry:
    """One limiter per host for the whole process; the strictest configured rate wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._limiters: dict[str, RateLimiter] = {}

    def get(self, host: str, rate: float | None) -> RateLimiter:
        with self._lock:
            limiter = self._limiters.get(host)
            if limiter is None:
                limiter = self._limiters[host] = RateLimiter(rate)
            elif rate is not None and (limiter.rate is None or rate < limiter.rate):
                limiter.rate = rate
            return limiter

    def reset(self) -> None:
        with self._lock:
            self._limiters.clear()


limiters = LimiterRegistry()
