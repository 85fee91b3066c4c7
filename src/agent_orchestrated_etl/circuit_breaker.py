"""Circuit breakers, one per external system, shared by every task of the process.

A breaker opens after ``failure_threshold`` consecutive failures and then
refuses calls at once (``CircuitOpenError``, retriable after the remaining
wait) instead of piling more load on a system that is down. After
``reset_seconds`` it lets one probe through (half-open): success closes it,
failure opens it again.

Every state change goes to the listeners, so it can become a hub event.
Listeners run in the thread that recorded the outcome (a task's worker
thread, an HTTP source's loop thread), so hand the event to the hub's loop::

    breakers.add_listener(lambda change: loop.call_soon_threadsafe(
        hub.publish, "breaker.changed", BreakerChanged(**change.as_dict())))

Hand-written rather than taken from pybreaker, purgatory or aiobreaker: the
same breaker is used from sync worker threads and from the HTTP event loop,
its clock must be injectable for exact state-machine tests, and callers
record outcomes themselves (a 404 is not a failure of the system, a 503 is)
instead of wrapping a call. pybreaker is sync only (async needs tornado),
purgatory and aiobreaker are async only, and none takes a clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from agent_orchestrated_etl.exceptions import CircuitOpenError
from agent_orchestrated_etl.model.vocabulary import BreakerState


@dataclass(frozen=True)
class StateChange:
    system: str
    old: BreakerState
    new: BreakerState
    consecutive_failures: int
    reason: str

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["old"], data["new"] = self.old.value, self.new.value
        return data


Listener = Callable[[StateChange], None]


class CircuitBreaker:
    def __init__(
        self,
        system: str,
        *,
        failure_threshold: int = 5,
        reset_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        listeners: list[Listener] | None = None,
    ) -> None:
        self.system = system
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._listeners = listeners if listeners is not None else []
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> BreakerState:
        return self._state

    def allow(self) -> None:
        """Raise CircuitOpenError unless a call may go to the system now.

        In half-open state exactly one caller gets through as the probe; the
        others are refused until its outcome is recorded.
        """
        change = None
        with self._lock:
            if self._state is BreakerState.OPEN:
                remaining = self._opened_at + self.reset_seconds - self._clock()
                if remaining > 0:
                    raise self._refusal(remaining)
                change = self._move(BreakerState.HALF_OPEN, "reset timeout elapsed; probing")
            if self._state is BreakerState.HALF_OPEN:
                if self._probing:
                    raise self._refusal(min(self.reset_seconds, 1.0))
                self._probing = True
        self._notify(change)

    def record_success(self) -> None:
        change = None
        with self._lock:
            self._failures = 0
            self._probing = False
            if self._state is not BreakerState.CLOSED:
                change = self._move(BreakerState.CLOSED, "probe succeeded")
        self._notify(change)

    def record_failure(self, reason: str) -> None:
        change = None
        with self._lock:
            self._failures += 1
            was_probe, self._probing = self._probing, False
            if self._state is BreakerState.HALF_OPEN and was_probe:
                change = self._open(f"probe failed: {reason}")
            elif self._state is BreakerState.CLOSED and self._failures >= self.failure_threshold:
                change = self._open(f"{self._failures} consecutive failures, the last: {reason}")
        self._notify(change)

    def _open(self, reason: str) -> StateChange:
        self._opened_at = self._clock()
        return self._move(BreakerState.OPEN, reason)

    def _move(self, new: BreakerState, reason: str) -> StateChange:
        change = StateChange(self.system, self._state, new, self._failures, reason)
        self._state = new
        return change

    def _refusal(self, retry_after: float) -> CircuitOpenError:
        return CircuitOpenError(
            f"circuit breaker for {self.system} is open after {self._failures} consecutive failures",
            retry_after=retry_after,
            where=self.system,
            hint=f"the system is failing; calls resume with a probe in {retry_after:.1f}s",
        )

    def _notify(self, change: StateChange | None) -> None:
        # Outside the lock: a listener may be slow or call back into the breaker.
        if change is not None:
            for listener in list(self._listeners):
                listener(change)


class BreakerRegistry:
    """The process-wide breakers, by system name (``http://api.example.com:443``, ``postgres://db:5432``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}
        self._listeners: list[Listener] = []

    def get(self, system: str, *, failure_threshold: int = 5, reset_seconds: float = 30.0) -> CircuitBreaker:
        """The breaker of ``system``, created with these settings on first use."""
        with self._lock:
            if system not in self._breakers:
                self._breakers[system] = CircuitBreaker(
                    system, failure_threshold=failure_threshold, reset_seconds=reset_seconds, listeners=self._listeners
                )
            return self._breakers[system]

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` on every state change of every breaker; returns a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def states(self) -> dict[str, BreakerState]:
        with self._lock:
            return {name: breaker.state for name, breaker in self._breakers.items()}

    def reset(self) -> None:
        """Forget every breaker (tests; a long-lived server after a config reload)."""
        with self._lock:
            self._breakers.clear()


breakers = BreakerRegistry()
