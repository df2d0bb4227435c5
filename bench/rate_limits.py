"""`python -m bench.rate_limits`: the cost of one rate-limit hit in process memory, `limits`'
async memory storage against the gateway's own counters (access/sliding_window.py),
as the number of callers with a live counter grows (one per API key; one per client IP when auth
is off). Prints microseconds per hit, each with one event-loop turn, and their ratio.
"""

import asyncio
import time

from limits import RateLimitItemPerMinute
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from access.sliding_window import SlidingWindowCounters

LIMIT = 1_000_000  # never refuses: every hit is counted
HITS = 2_000


async def _limits_us(callers: int) -> float:
    strategy = SlidingWindowCounterRateLimiter(storage_from_string("async+memory://"))
    item = RateLimitItemPerMinute(LIMIT, namespace="chat")
    for caller in range(callers):
        await strategy.hit(item, f"ip:{caller}")
    started = time.perf_counter()
    for _ in range(HITS):
        await strategy.hit(item, "ip:0")
        await asyncio.sleep(0)  # lets its expiry task run, as between requests
    return (time.perf_counter() - started) / HITS * 1e6


async def _in_process_us(callers: int) -> float:
    counters = SlidingWindowCounters()
    for caller in range(callers):
        counters.hit(f"ip:{caller}", LIMIT)
    started = time.perf_counter()
    for _ in range(HITS):
        counters.hit("ip:0", LIMIT)
        await asyncio.sleep(0)
    return (time.perf_counter() - started) / HITS * 1e6


async def _main() -> None:
    print("| callers | limits memory (µs/hit) | in process (µs/hit) | ratio |")
    print("|---:|---:|---:|---:|")
    for callers in (1, 1_000, 10_000):
        theirs, ours = await _limits_us(callers), await _in_process_us(callers)
        print(f"| {callers:,} | {theirs:.1f} | {ours:.1f} | {theirs / ours:.1f}× |")


if __name__ == "__main__":
    asyncio.run(_main())
