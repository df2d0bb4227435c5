"""ConcurrencyLimiter's fair share per empresa (runtime/limiter.py), driven on the event loop."""

import asyncio

import pytest

from runtime.limiter import ConcurrencyLimiter

E1, E2, E3 = 1, 2, 3


def far() -> float:
    return asyncio.get_running_loop().time() + 30


def soon() -> float:
    return asyncio.get_running_loop().time() + 0.05


def filled(limit: int, by: object) -> ConcurrencyLimiter:
    limiter = ConcurrencyLimiter(limit)
    for _ in range(limit):
        assert limiter.try_acquire(by)
    return limiter


async def test_an_empresa_alone_may_use_every_slot_and_the_next_call_is_refused_at_once():
    limiter = filled(20, E1)
    assert not limiter.try_acquire(E1)
    assert not limiter.may_wait(E1)
    assert await limiter.wait_for_slot(E1, far()) is False
    assert (limiter.inflight, limiter.waiting) == (20, 0)


async def test_calls_without_a_tenant_count_as_one_and_see_no_change():
    limiter = filled(4, None)
    assert not limiter.try_acquire(None)
    assert not limiter.may_wait(None)


async def test_another_empresa_waits_for_the_next_slot_the_flooding_one_frees():
    limiter = filled(20, E1)
    assert not limiter.try_acquire(E2)
    assert limiter.may_wait(E2)
    waiting = asyncio.create_task(limiter.wait_for_slot(E2, far()))
    await asyncio.sleep(0)
    assert limiter.waiting == 1
    # The slot E1 frees goes to E2, not to E1's next call...
    limiter.release(E1)
    assert await waiting is True
    assert (limiter.held_by(E1), limiter.held_by(E2), limiter.inflight) == (19, 1, 20)
    # ...and E1 keeps being refused at once, never queued.
    assert not limiter.try_acquire(E1) and not limiter.may_wait(E1)


async def test_waiters_are_served_first_come_first_served():
    limiter = filled(4, E1)
    first = asyncio.create_task(limiter.wait_for_slot(E2, far()))
    second = asyncio.create_task(limiter.wait_for_slot(E3, far()))
    await asyncio.sleep(0)
    limiter.limit = 5  # a raised limit hands its slot to the first waiter at once
    assert await first is True
    assert limiter.waiting == 1
    assert not limiter.try_acquire(E1)
    limiter.release(E1)
    assert await second is True
    assert [limiter.held_by(e) for e in (E1, E2, E3)] == [3, 1, 1]


async def test_an_empresa_at_its_share_does_not_wait():
    limiter = ConcurrencyLimiter(4)
    for tenant in (E1, E1, E1, E2):
        assert limiter.try_acquire(tenant)
    assert limiter.may_wait(E2)  # E2 holds 1 of its 2; E1 holds 3, over its share
    assert limiter.try_acquire(E2) is False
    assert not limiter.may_wait(E1)
    limiter.release(E1)
    assert limiter.try_acquire(E2)  # a free slot with nobody waiting: taken
    assert not limiter.may_wait(E2)  # at its share now


async def test_no_wait_when_nobody_is_over_their_share():
    limiter = ConcurrencyLimiter(4)
    for tenant in (E1, E1, E2, E2):
        assert limiter.try_acquire(tenant)
    assert not limiter.may_wait(E3)
    assert await limiter.wait_for_slot(E3, far()) is False


async def test_a_wait_ends_at_the_deadline_without_a_slot():
    limiter = filled(2, E1)
    assert await limiter.wait_for_slot(E2, soon()) is False
    assert (limiter.waiting, limiter.inflight, limiter.held_by(E2)) == (0, 2, 0)
    limiter.release(E1)
    assert limiter.inflight == 1  # the slot went to nobody


async def test_a_cancelled_waiter_takes_no_slot():
    limiter = filled(2, E1)
    waiting = asyncio.create_task(limiter.wait_for_slot(E2, far()))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert limiter.waiting == 0
    limiter.release(E1)
    assert (limiter.inflight, limiter.held_by(E2)) == (1, 0)


async def test_a_waiter_cancelled_just_after_it_was_handed_a_slot_gives_it_back():
    limiter = filled(2, E1)
    waiting = asyncio.create_task(limiter.wait_for_slot(E2, far()))
    await asyncio.sleep(0)
    limiter.release(E1)  # hands the slot over; the waiter has not run yet
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert (limiter.inflight, limiter.held_by(E2), limiter.held_by(E1)) == (1, 0, 1)


async def test_the_share_is_at_least_one_slot_and_follows_the_setting(settings):
    assert ConcurrencyLimiter(1).share == 1
    assert ConcurrencyLimiter(20).share == 10
    settings.TENANT_FAIR_SHARE = 1.0
    limiter = filled(4, E1)
    assert limiter.share == 4 and not limiter.may_wait(E2)  # fair sharing off


async def test_a_slot_handed_over_as_the_deadline_passes_is_given_back():
    limiter = filled(2, E1)
    # A deadline already passed: the timeout is queued the moment the waiter starts waiting.
    waiting = asyncio.create_task(limiter.wait_for_slot(E2, asyncio.get_running_loop().time()))
    await asyncio.sleep(0)
    assert limiter.waiting == 1
    limiter.release(E1)  # hands the slot over before the queued timeout runs
    assert limiter.held_by(E2) == 1
    assert await waiting is False  # the timeout won: the caller gets its 503...
    assert (limiter.held_by(E2), limiter.inflight) == (0, 1)  # ...and the slot is free again
