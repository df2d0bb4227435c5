"""ConcurrencyLimiter: an agent's `max_concurrency` slots, with a fair share per empresa.

A call over the limit is refused at once (the contract's 503 + Retry-After: backpressure, no
queue), with one exception that keeps a flood from one empresa from starving the others: an
empresa below its share (TENANT_FAIR_SHARE of the slots, at least one) that finds the agent full
while another empresa holds more than its share waits for the next slot that frees up, within its
call's deadline; while anyone waits, an empresa at or above its share is refused at once. An
empresa alone on an agent may use every slot, so a deployment with one empresa sees no change.

Used from the event loop only: plain counters, no locks.
"""

import asyncio
from collections import deque
from collections.abc import Hashable

from gateway_project.conf import gateway_settings
from runtime.deadlines import deadline_at


class ConcurrencyLimiter:
    """The same limiter survives a rebuild of its agent (runtime/registry.py), so calls in flight
    keep counting against the limit."""

    __slots__ = ("_held", "_limit", "_waiters", "inflight")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self.inflight = 0
        self._held: dict[Hashable, int] = {}  # calls in flight per empresa
        self._waiters: deque[tuple[Hashable, asyncio.Future[None]]] = deque()

    @property
    def limit(self) -> int:
        return self._limit

    @limit.setter
    def limit(self, limit: int) -> None:
        self._limit = limit
        self._hand_over()  # a raised limit serves the waiters at once

    @property
    def share(self) -> int:
        """The slots one empresa may hold while others want some."""
        return max(1, int(self._limit * gateway_settings.tenant_fair_share))

    def held_by(self, tenant: Hashable) -> int:
        return self._held.get(tenant, 0)

    def holders(self) -> list[tuple[Hashable, int]]:
        """(empresa, calls in flight) for each empresa with calls in flight."""
        return list(self._held.items())

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def try_acquire(self, tenant: Hashable = None) -> bool:
        """A free slot now, or False. A freed slot goes to the waiters first (`release`), so
        there is none to take while anyone waits."""
        if self.inflight >= self._limit:
            return False
        self._take(tenant)
        return True

    async def wait_for_slot(self, tenant: Hashable, deadline: float) -> bool:
        """After `try_acquire` failed: for an empresa below its share facing a full agent of which
        another empresa holds more than its share, the next slot freed before `deadline` (loop
        time). False at once for everyone else (the contract's backpressure)."""
        if not self.may_wait(tenant):
            return False
        waiter = asyncio.get_running_loop().create_future()
        entry = (tenant, waiter)
        self._waiters.append(entry)
        try:
            with deadline_at(deadline):
                await waiter
        except (TimeoutError, asyncio.CancelledError) as exc:
            if waiter.done() and not waiter.cancelled():
                self.release(tenant)  # handed a slot as the deadline passed or the caller left
            if isinstance(exc, TimeoutError):
                return False
            raise
        finally:
            if not waiter.done():
                waiter.cancel()
            if entry in self._waiters:
                self._waiters.remove(entry)
        return True

    def release(self, tenant: Hashable = None) -> None:
        held = self._held.get(tenant, 0) - 1
        if held > 0:
            self._held[tenant] = held
        else:
            self._held.pop(tenant, None)
        self.inflight -= 1
        if self._waiters:
            self._hand_over()

    def _hand_over(self) -> None:
        """Free slots to the waiters, first come first served."""
        while self._waiters and self.inflight < self._limit:
            tenant, waiter = self._waiters.popleft()
            if waiter.done():  # timed out or cancelled meanwhile
                continue
            self._take(tenant)
            waiter.set_result(None)

    def _take(self, tenant: Hashable) -> None:
        self.inflight += 1
        self._held[tenant] = self._held.get(tenant, 0) + 1

    def may_wait(self, tenant: Hashable) -> bool:
        """Whether `wait_for_slot` would wait rather than refuse."""
        share = self.share
        if self.inflight < self._limit or self._held.get(tenant, 0) >= share:
            return False
        return any(held > share for holder, held in self._held.items() if holder != tenant)
