"""AsyncBreaker over pybreaker: consecutive failures open it, a success in between resets the
count (also on the fast path that skips pybreaker for a success with nothing to reset), and a
probe's success closes it."""

import pytest

from runtime.breaker import CLOSED, HALF_OPEN, OPEN, AsyncBreaker
from runtime.errors import BreakerOpenError


def breaker(changes: list[tuple[str, str]] | None = None) -> AsyncBreaker:
    seen = changes if changes is not None else []
    return AsyncBreaker(
        key="cita", fail_max=3, reset_s=30, on_state_change=lambda _k, a, b: seen.append((a, b))
    )


def fail(cb: AsyncBreaker, times: int = 1) -> None:
    for _ in range(times):
        cb.record_failure(cb.acquire())


def test_a_success_between_failures_resets_the_count() -> None:
    cb = breaker()
    fail(cb, 2)
    assert cb.fail_counter == 2
    cb.record_success(cb.acquire())
    assert cb.fail_counter == 0
    fail(cb, 2)
    assert cb.state == CLOSED
    fail(cb)
    assert cb.state == OPEN
    with pytest.raises(BreakerOpenError):
        cb.acquire()


def test_successes_with_nothing_to_reset_change_nothing() -> None:
    changes: list[tuple[str, str]] = []
    cb = breaker(changes)
    for _ in range(5):
        cb.record_success(cb.acquire())
    assert (cb.state, cb.fail_counter, changes) == (CLOSED, 0, [])


def test_a_probes_success_closes_the_circuit() -> None:
    changes: list[tuple[str, str]] = []
    cb = breaker(changes)
    fail(cb, 3)
    cb.configure(fail_max=3, reset_s=0)  # the reset time has passed
    permit = cb.acquire()
    assert permit.probe and cb.state == HALF_OPEN
    cb.record_success(permit)
    assert cb.state == CLOSED
    assert changes == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
