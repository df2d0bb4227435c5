"""Sliding-window counters in process memory: the rate limits of a gateway without Redis.

The same algorithm and arithmetic as `limits`' SlidingWindowCounterRateLimiter (which the
gateway keeps for Redis): per caller, a count for the current minute and one for the previous
minute, the previous one weighted by the share of it still inside the last 60 s. It exists
because `limits`' in-memory storage is built for coroutines that may interleave: every hit takes
an asyncio lock, starts a task, and that task walks every caller's counter, so a hit costs more
than the rest of a refused request, and grows with the number of callers (bench/README.md).
Here a hit is a few arithmetic steps with no await, which is atomic on the event loop, and
counters of callers gone quiet are dropped once a minute.

At most MAX_CALLERS callers are tracked: a flood from many addresses (an IPv6 range) would
otherwise grow a worker's memory with every address seen in two minutes. Past the cap a new
caller is let through uncounted until the next sweep frees room; callers already tracked keep
their limits. Each address of such a flood is under its limit anyway.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_CALLERS = 100_000  # ~26 MB of counters per worker at most (IPv6 addresses as identities)


@dataclass(slots=True)
class _Counter:
    window: int  # index of the current window: int(now // period)
    current: int = 0
    previous: int = 0


class SlidingWindowCounters:
    def __init__(
        self,
        period_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        *,
        max_callers: int | None = None,
        on_full: Callable[[], None] | None = None,
    ) -> None:
        """`max_callers`: MAX_CALLERS unless given. `on_full` is called for each caller let
        through uncounted because the table is full."""
        self.period_s = period_s
        self.clock = clock
        self.max_callers = MAX_CALLERS if max_callers is None else max_callers
        self.on_full = on_full
        self._counters: dict[tuple[str, int], _Counter] = {}
        self._swept_window = -1

    def hit(self, identity: str, limit: int) -> float | None:
        """Count one request for `identity` under `limit` per period. None when allowed; when
        refused, the seconds until a request would be allowed again (nothing is counted)."""
        now = self.clock()
        window = int(now // self.period_s)
        if window != self._swept_window:
            self._sweep(window)
        key = (identity, limit)
        counter = self._counters.get(key)
        if counter is None:
            if len(self._counters) >= self.max_callers:
                if self.on_full is not None:
                    self.on_full()
                return None
            counter = self._counters[key] = _Counter(window)
        elif counter.window != window:
            counter.previous = counter.current if counter.window == window - 1 else 0
            counter.current = 0
            counter.window = window
        left_in_window = self.period_s - now % self.period_s
        weighted = counter.previous * left_in_window / self.period_s + counter.current
        if math.floor(weighted) + 1 <= limit:
            counter.current += 1
            return None
        return self._reset_in(counter, left_in_window)

    def _reset_in(self, counter: _Counter, left_in_window: float) -> float:
        """When the weighted count next drops by one, as `limits` computes it (its WindowStats'
        reset_time): one previous-window request slides out, or the current window ends."""
        previous_reset_in = current_reset_in = math.inf
        if counter.previous:
            previous_reset_in = left_in_window % (self.period_s / counter.previous)
        if counter.current:
            current_reset_in = (left_in_window + self.period_s) % self.period_s
        return min(previous_reset_in, current_reset_in)

    def _sweep(self, window: int) -> None:
        """Drop counters that no longer count: nothing in this window or the previous one."""
        self._swept_window = window
        stale = [key for key, counter in self._counters.items() if counter.window < window - 1]
        for key in stale:
            del self._counters[key]

    def __len__(self) -> int:
        return len(self._counters)
