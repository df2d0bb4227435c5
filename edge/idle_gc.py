"""A full garbage-collection pass once the gateway falls idle after a busy spell.

Why: while many requests overlap, CPython's free lists (tuples above all, up to 2,000 of each
length) fill to their caps, and only a full collection empties them. An idle process never
triggers one, so after 1,000 calls at once a worker kept about 5 MB of cached objects for good.
One pass when nothing is in flight any more hands them back, and jemalloc
(deploy/with-allocator.sh) returns the pages to the system within its decay time: RSS after the
burst went from 11.5 MB to about 6 MB over idle (bench/README.md, "Memory after a burst").

A pass costs about 2 ms, as everything loaded at startup is frozen out of the collector
(edge/application.py). It starts only while no request is in flight: at most a request arriving
during those 2 ms waits for it.
"""

import asyncio
import gc
import logging
import time
from collections.abc import Callable

logger = logging.getLogger("gateway.memory")

# A spell is busy when this many requests were in flight at once: fewer do not fill the free
# lists enough to matter.
BUSY_INFLIGHT = 32
# How long nothing must be in flight before the pass runs.
IDLE_SECONDS = 1.0


class IdleCollector:
    """Counts requests in flight (`enter`/`leave`); after a busy spell, once none has been in
    flight for `idle_seconds`, runs one full collection."""

    def __init__(
        self,
        *,
        busy_inflight: int = BUSY_INFLIGHT,
        idle_seconds: float = IDLE_SECONDS,
        collect: Callable[[], int] = gc.collect,
    ) -> None:
        self.busy_inflight = busy_inflight
        self.idle_seconds = idle_seconds
        self.collect = collect
        self.inflight = 0
        self.peak = 0  # most requests in flight at once since the last pass
        self.pending: asyncio.TimerHandle | None = None

    def enter(self) -> None:
        self.cancel()  # not idle any more; the next `leave` down to zero starts the wait again
        self.inflight += 1
        if self.inflight > self.peak:
            self.peak = self.inflight

    def leave(self) -> None:
        self.inflight -= 1
        if self.inflight == 0 and self.peak >= self.busy_inflight:
            self.pending = asyncio.get_running_loop().call_later(self.idle_seconds, self._run)

    def cancel(self) -> None:
        """Drop the pass waiting for idle time, if any."""
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None

    def _run(self) -> None:
        self.pending = None
        started = time.perf_counter()
        found = self.collect()
        logger.debug(
            "idle collection",
            extra={
                "event": "idle_gc",
                "peak_inflight": self.peak,
                "unreachable": found,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        self.peak = 0
