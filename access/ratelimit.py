"""Per-caller rate limits for the chat endpoint (the contract's 429 + Retry-After).

The strategy is a sliding-window counter: two counters per caller, no burst of twice the limit at
a window edge. When REDIS_URL is set the counters live in Redis, through `limits` (the library
behind Flask-Limiter and SlowAPI) and its natively async redis-py storage, so every worker of
every instance shares one budget per caller without a thread hop or a blocking call on the event
loop. Otherwise (`async+memory://`) they live in this process (sliding_window.py: the same
arithmetic, without the lock, task and walk over every caller that `limits`' memory storage
pays on each hit).

When the storage fails (Redis down), requests are allowed and a warning is logged at most once a
minute: chat keeps working, the storage is not tried again for STORAGE_RETRY_S (no request pays
a connect timeout during an outage), and rate limiting resumes when Redis is back.
"""

import asyncio
import logging
import math
import time
from typing import Any

import redis.asyncio
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from access.sliding_window import SlidingWindowCounters
from gateway_project.conf import gateway_settings

logger = logging.getLogger("gateway.ratelimit")

_WARN_INTERVAL_S = 60.0
STORAGE_RETRY_S = 2.0
_NAMESPACE = "chat"
IN_PROCESS_URIS = frozenset({"async+memory://", "memory://"})
REDIS_POOL_SIZE = 16  # connections per worker; a request waits up to 0.5 s for one


class RateLimited(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"rate limited; retry after {retry_after_s}s")
        self.retry_after_s = retry_after_s


class RateLimiter:
    def __init__(self) -> None:
        self._in_process: SlidingWindowCounters | None = None
        # The async storages bind to the event loop they are first used on.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._strategy: SlidingWindowCounterRateLimiter | None = None
        self._items: dict[int, RateLimitItem] = {}
        self._warned_at: dict[str, float] = {}  # event -> when last logged (monotonic)
        self._storage_down_until = -math.inf

    def _strategy_for_loop(self) -> SlidingWindowCounterRateLimiter:
        loop = asyncio.get_running_loop()
        if self._strategy is None or self._loop is not loop:
            options: dict[str, Any] = {}
            uri = gateway_settings.rate_limit_storage_uri
            if uri.startswith("async+redis"):
                # A bounded pool (limits' default is unbounded: a burst would keep one
                # connection per concurrent request), its connections checked before reuse so
                # those a Redis restart broke are replaced instead of piling up.
                pool = redis.asyncio.BlockingConnectionPool.from_url(
                    uri.removeprefix("async+"),
                    max_connections=REDIS_POOL_SIZE,
                    timeout=0.5,
                    socket_timeout=0.5,
                    socket_connect_timeout=0.5,
                    health_check_interval=30,
                )
                options = {"implementation": "redispy", "connection_pool": pool}
            self._strategy = SlidingWindowCounterRateLimiter(storage_from_string(uri, **options))
            self._loop = loop
        return self._strategy

    def _item(self, per_minute: int) -> RateLimitItem:
        item = self._items.get(per_minute)
        if item is None:
            item = self._items[per_minute] = RateLimitItemPerMinute(
                per_minute, namespace=_NAMESPACE
            )
        return item

    def check_nowait(self, identity: str, per_minute: int) -> bool:
        """Count one request for `identity` when the counters live in this process (True; raise
        RateLimited when its budget is spent). False: they are shared, and the caller awaits
        `check`. Callers on the hot path try this first: no coroutine for the common case."""
        if per_minute <= 0:
            return True
        counters = self._in_process
        if counters is None:
            if gateway_settings.rate_limit_storage_uri not in IN_PROCESS_URIS:
                return False
            counters = self._in_process = SlidingWindowCounters(on_full=self._log_full)
        retry_in = counters.hit(identity, per_minute)
        if retry_in is not None:
            raise RateLimited(max(1, math.ceil(retry_in)))
        return True

    async def check(self, identity: str, per_minute: int) -> None:
        """Count one request for `identity`; raise RateLimited when its budget is spent."""
        if not self.check_nowait(identity, per_minute):
            await self._check_shared(identity, per_minute)

    async def _check_shared(self, identity: str, per_minute: int) -> None:
        if time.monotonic() < self._storage_down_until:
            return
        item = self._item(per_minute)
        try:
            strategy = self._strategy_for_loop()
            if await strategy.hit(item, identity):
                return
            stats = await strategy.get_window_stats(item, identity)
        except Exception:
            self._storage_down_until = time.monotonic() + STORAGE_RETRY_S
            self._warn_once_a_minute(
                "rate_limit_degraded", "rate limit storage unreachable; allowing requests", True
            )
            return
        raise RateLimited(max(1, math.ceil(stats.reset_time - time.time())))

    def _log_full(self) -> None:
        assert self._in_process is not None
        self._warn_once_a_minute(
            "rate_limit_full",
            "rate limit counters full; new callers are let through uncounted",
            max_callers=self._in_process.max_callers,
        )

    def _warn_once_a_minute(
        self, event: str, message: str, exc_info: bool = False, **fields: object
    ) -> None:
        now = time.monotonic()
        if now - self._warned_at.get(event, -math.inf) >= _WARN_INTERVAL_S:
            self._warned_at[event] = now
            logger.warning(message, exc_info=exc_info, extra={"event": event, **fields})

    def reset(self) -> None:
        """Forget every counter and the storage (tests: a new budget, or a new storage URI)."""
        self._in_process = None
        self._strategy = None
        self._loop = None
        self._storage_down_until = -math.inf


rate_limiter = RateLimiter()
