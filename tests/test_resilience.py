"""Retry waits and the circuit breaker's state machine, with an injected clock: no sleeping."""

from __future__ import annotations

import random

import pytest

from agent_orchestrated_etl.circuit_breaker import BreakerRegistry, CircuitBreaker
from agent_orchestrated_etl.connectors.http.ratelimit import RateLimiter, parse_rate, retry_after_seconds
from agent_orchestrated_etl.exceptions import CircuitOpenError, ConnectionFailedError, DataError, RateLimitedError
from agent_orchestrated_etl.model.vocabulary import BreakerState
from agent_orchestrated_etl.retry import Backoff, retry_call, wait_seconds


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_waits_grow_exponentially_with_jitter_and_a_cap() -> None:
    policy = Backoff(attempts=6, backoff_seconds=1.0, max_backoff_seconds=5.0)
    rng = random.Random(1)
    waits = [wait_seconds(policy, n, None, rng) for n in range(1, 6)]
    caps = [1, 2, 4, 5, 5]
    assert all(cap / 2 <= wait <= cap for wait, cap in zip(waits, caps, strict=True))


def test_retry_after_zero_still_backs_off_and_a_long_one_is_capped() -> None:
    policy = Backoff(attempts=3, backoff_seconds=0.5, max_backoff_seconds=10.0)
    assert wait_seconds(policy, 1, RateLimitedError("429", retry_after=0.0), random.Random(0)) >= 0.25
    assert wait_seconds(policy, 1, RateLimitedError("429", retry_after=7.0), random.Random(0)) == 7.0
    assert wait_seconds(policy, 1, RateLimitedError("429", retry_after=3600.0), random.Random(0)) == 10.0


def test_retry_call_retries_only_retriable_errors_and_reraises_the_last() -> None:
    slept: list[float] = []
    outcomes = iter([ConnectionFailedError("down"), RateLimitedError("busy", retry_after=2.0), "ok"])

    def flaky() -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert retry_call(flaky, Backoff(5, 0.1, 5), sleep=slept.append, rng=random.Random(0)) == "ok"
    assert len(slept) == 2 and 0.05 <= slept[0] <= 0.1 and slept[1] == 2.0

    calls = []

    def bad_data() -> None:
        calls.append(1)
        raise DataError("row 3 is broken")

    with pytest.raises(DataError):
        retry_call(bad_data, Backoff(5, 0.1, 5), sleep=slept.append)
    assert calls == [1]

    counter = iter(range(1, 10))

    def always_down() -> None:
        raise ConnectionFailedError(f"down {next(counter)}")

    with pytest.raises(ConnectionFailedError, match="down 3"):  # attempts include the first
        retry_call(always_down, Backoff(3, 0.1, 5), sleep=slept.append)


def test_breaker_opens_refuses_probes_once_and_closes() -> None:
    clock = Clock()
    changes: list[tuple[str, str]] = []
    breaker = CircuitBreaker(
        "http://api:80",
        failure_threshold=3,
        reset_seconds=10,
        clock=clock,
        listeners=[lambda c: changes.append((c.old.value, c.new.value))],
    )
    for _ in range(2):
        breaker.allow()
        breaker.record_failure("HTTP 503")
    breaker.allow()
    breaker.record_success()  # a success resets the count
    for _ in range(3):
        breaker.allow()
        breaker.record_failure("HTTP 503")
    assert breaker.state is BreakerState.OPEN
    clock.now += 4
    with pytest.raises(CircuitOpenError) as refused:
        breaker.allow()
    assert refused.value.retry_after == 6
    assert (
        str(refused.value)
        == "http://api:80: circuit breaker for http://api:80 is open after 3 consecutive failures (the system is failing; calls resume with a probe in 6.0s)"
    )
    clock.now += 6
    breaker.allow()  # the probe
    with pytest.raises(CircuitOpenError):
        breaker.allow()  # everyone else waits for the probe
    breaker.record_failure("HTTP 503")
    assert breaker.state is BreakerState.OPEN
    clock.now += 10
    breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert changes == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


def test_registry_shares_breakers_by_system_and_listeners_can_be_removed() -> None:
    registry = BreakerRegistry()
    seen: list[str] = []
    remove = registry.add_listener(lambda change: seen.append(change.as_dict()["new"]))
    assert registry.get("pg://db:5432", failure_threshold=1) is registry.get("pg://db:5432")
    registry.get("pg://db:5432").record_failure("refused")
    remove()
    registry.get("pg://db:5432").record_success()
    assert seen == ["open"]
    assert registry.states() == {"pg://db:5432": BreakerState.CLOSED}


def test_rate_limiter_spaces_slots_and_adapts_to_quota_headers() -> None:
    clock = Clock()
    limiter = RateLimiter(parse_rate("10/s"), burst=1, clock=clock)
    assert [round(limiter.reserve(), 3) for _ in range(4)] == [0.0, 0.1, 0.2, 0.3]
    catching_up = RateLimiter(parse_rate("10/s"), clock=clock)  # burst 2: one request of slack
    assert [round(catching_up.reserve(), 3) for _ in range(4)] == [0.0, 0.0, 0.1, 0.2]
    clock.now += 1
    limiter.observe({"x-ratelimit-remaining": "2", "x-ratelimit-reset": "1"})  # 2 left for 1 s: 2/s
    assert [round(limiter.reserve(), 3) for _ in range(3)] == [0.0, 0.5, 1.0]
    limiter.pause(5)
    assert limiter.reserve() >= 5
    assert (
        parse_rate("600/min") == 10
        and retry_after_seconds("0") == 0
        and retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0
    )
