import asyncio

from edge.idle_gc import IdleCollector


class Passes:
    """Stands in for gc.collect: counts the passes and wakes the test on each."""

    def __init__(self) -> None:
        self.count = 0
        self.ran = asyncio.Event()

    def __call__(self) -> int:
        self.count += 1
        self.ran.set()
        return 0


def collector(passes: Passes, busy_inflight: int) -> IdleCollector:
    return IdleCollector(busy_inflight=busy_inflight, idle_seconds=0.01, collect=passes)


def spell(idle_gc: IdleCollector, overlapping: int) -> None:
    for _ in range(overlapping):
        idle_gc.enter()
    for _ in range(overlapping):
        idle_gc.leave()


async def test_one_pass_once_idle_after_a_busy_spell() -> None:
    passes = Passes()
    idle_gc = collector(passes, busy_inflight=3)
    spell(idle_gc, overlapping=3)
    await asyncio.wait_for(passes.ran.wait(), timeout=5)
    assert passes.count == 1
    assert idle_gc.pending is None
    assert idle_gc.peak == 0  # the next pass needs a new busy spell


async def test_no_pass_after_a_quiet_spell() -> None:
    passes = Passes()
    idle_gc = collector(passes, busy_inflight=3)
    for _ in range(10):
        spell(idle_gc, overlapping=2)  # many requests, never three at once
    assert idle_gc.pending is None
    assert passes.count == 0


async def test_no_pass_while_a_request_is_in_flight() -> None:
    passes = Passes()
    idle_gc = collector(passes, busy_inflight=2)
    spell(idle_gc, overlapping=2)
    assert idle_gc.pending is not None
    idle_gc.enter()  # arrives during the idle wait
    assert idle_gc.pending is None
    assert passes.count == 0
    idle_gc.leave()
    await asyncio.wait_for(passes.ran.wait(), timeout=5)
    assert passes.count == 1


async def test_cancel_drops_the_waiting_pass() -> None:
    passes = Passes()
    idle_gc = collector(passes, busy_inflight=1)
    spell(idle_gc, overlapping=1)
    handle = idle_gc.pending
    assert handle is not None
    idle_gc.cancel()
    assert handle.cancelled()
    assert idle_gc.pending is None
