import logging
import random
import time

import pytest
from limits import RateLimitItemPerMinute
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from access import sliding_window
from access.ratelimit import RateLimiter
from access.sliding_window import SlidingWindowCounters


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_same_decisions_and_retry_times_as_limits(monkeypatch) -> None:
    """Random hits over five minutes, three callers, several limits: every decision and every
    refusal's wait equal those of `limits`' own sliding-window counter (the Redis path)."""
    clock = Clock(1_700_000_000.0)
    monkeypatch.setattr(time, "time", clock)  # what `limits` reads
    reference = SlidingWindowCounterRateLimiter(storage_from_string("async+memory://"))
    counters = SlidingWindowCounters(clock=clock)
    rng = random.Random(7)
    refused = 0
    for _ in range(600):
        clock.now += rng.expovariate(1 / 0.5)
        identity, limit = rng.choice(["a", "b", "c"]), rng.choice([1, 3, 7])
        item = RateLimitItemPerMinute(limit, namespace="chat")
        retry_in = counters.hit(identity, limit)
        allowed = await reference.hit(item, identity)
        assert (retry_in is None) == allowed, (clock.now, identity, limit)
        if not allowed:
            refused += 1
            stats = await reference.get_window_stats(item, identity)
            assert retry_in == pytest.approx(stats.reset_time - clock.now, abs=1e-6)
    assert 100 < refused < 500  # both outcomes were exercised


def test_refused_hits_are_not_counted() -> None:
    clock = Clock(60_000.5)  # half a second into a window
    counters = SlidingWindowCounters(clock=clock)
    assert [counters.hit("a", 2) for _ in range(2)] == [None, None]
    assert counters.hit("a", 2) == pytest.approx(59.5)  # when this window ends
    clock.now += 60
    # The previous window weighs 59.5/60: 2 hits count 1.98 (3 would have counted 2.98).
    assert counters.hit("a", 2) is None
    # 1.98 + 1: full until one previous hit slides out, 59.5 % (60 / 2) s from now.
    assert counters.hit("a", 2) == pytest.approx(29.5)


def test_callers_gone_quiet_are_forgotten() -> None:
    clock = Clock(60_000.0)
    counters = SlidingWindowCounters(clock=clock)
    for caller in range(100):
        counters.hit(f"ip:{caller}", 5)
    clock.now += 60
    counters.hit("ip:0", 5)
    assert len(counters) == 100  # last window's counts still weigh on this one
    clock.now += 60
    counters.hit("ip:0", 5)
    assert len(counters) == 1


def test_past_the_cap_new_callers_pass_uncounted_and_tracked_ones_keep_their_limit() -> None:
    """A flood from many addresses cannot grow the table past `max_callers`."""
    clock = Clock(60_000.0)
    full: list[None] = []
    counters = SlidingWindowCounters(clock=clock, max_callers=3, on_full=lambda: full.append(None))
    for caller in ("a", "b", "c"):
        assert counters.hit(caller, 1) is None
    assert counters.hit("a", 1) is not None  # tracked: still limited
    assert [counters.hit("d", 1) for _ in range(3)] == [
        None,
        None,
        None,
    ]  # over its limit, uncounted
    assert (len(counters), len(full)) == (3, 3)
    clock.now += 120  # two windows later the sweep frees the quiet callers' room
    assert counters.hit("d", 1) is None
    assert counters.hit("d", 1) is not None  # counted again
    assert len(counters) == 1


def test_the_gateway_logs_a_full_table_once_a_minute(monkeypatch, caplog) -> None:
    monkeypatch.setattr(sliding_window, "MAX_CALLERS", 2)
    limiter = RateLimiter()
    with caplog.at_level(logging.WARNING, logger="gateway.ratelimit"):
        assert all(limiter.check_nowait(f"ip:{caller}", 1) for caller in range(5))
    full = [
        record for record in caplog.records if getattr(record, "event", "") == "rate_limit_full"
    ]
    assert len(full) == 1 and full[0].max_callers == 2
