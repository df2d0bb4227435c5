"""AgentRuntime: what the hot path holds for one agent (spec, client, breaker, limiter).

Lifecycle, one design for every change an admin can make while calls are in flight:

1. Built. The registry (runtime/registry.py) builds a runtime when an agent row is loaded, and
   rebuilds it when the row changes: an unchanged spec keeps its runtime; a rebuilt one keeps
   the old client when the transport fields are equal (`AgentSpec.transport_config`), the old
   breaker when the URL is equal (its state carries over), and always the old limiter (calls in
   flight keep counting against the limit).
2. Held. A call takes the runtime from the snapshot once and holds it to the end: every attempt,
   the backoff between them and the breaker outcome use that runtime, under a lease on its client
   (`AgentClient.lease`, runtime/calls.py). An edit saved meanwhile applies to the next call.
3. Replaced or deleted. The registry swaps in a snapshot without it. Its client, unless the new
   runtime shares it, is retired: it closes when its last lease ends, never under a waiting call.
   Its breaker, unless shared, is retired too: outcomes of calls still settling on it change
   nothing anyone sees (no log line, no metric).
4. Gone from every reading. The live gauges (in flight, breaker state, limit) are read from the
   current snapshot when /metrics is scraped (chat/metrics.py), so a replaced breaker
   or a deleted agent has no series to go stale; a worker that died stops being summed.
"""

from dataclasses import dataclass

from runtime.breaker import AsyncBreaker
from runtime.client import AgentClient
from runtime.specs import AgentSpec


class ConcurrencyLimiter:
    """Counts calls in flight and refuses one over the limit at once (no queue).

    Used from the event loop only, so a plain counter is enough. The same limiter (and breaker)
    survives a rebuild of its agent, so calls in flight keep counting against the limit.
    """

    __slots__ = ("inflight", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.inflight = 0

    def try_acquire(self) -> bool:
        if self.inflight >= self.limit:
            return False
        self.inflight += 1
        return True

    def release(self) -> None:
        self.inflight -= 1


@dataclass(frozen=True, slots=True)
class AgentRuntime:
    spec: AgentSpec
    client: AgentClient
    breaker: AsyncBreaker
    limiter: ConcurrencyLimiter

    @property
    def key(self) -> str:
        return self.spec.key
