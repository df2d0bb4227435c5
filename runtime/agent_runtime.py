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
   current snapshot when /metrics is scraped (fleet/live_gauges.py), so a replaced breaker
   or a deleted agent has no series to go stale; a worker that died stops being summed.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from runtime.breaker import AsyncBreaker
from runtime.client import AgentClient
from runtime.limiter import ConcurrencyLimiter
from runtime.specs import AgentSpec, TenantSpec


@dataclass(frozen=True, slots=True)
class AgentRuntime:
    spec: AgentSpec
    client: AgentClient
    breaker: AsyncBreaker
    limiter: ConcurrencyLimiter

    @property
    def key(self) -> str:
        return self.spec.key


@dataclass(frozen=True, slots=True)
class TenantRuntime:
    """What the hot path holds for one empresa with a tenant row: its spec, its routes resolved
    to agents, and the count of its calls in flight (kept across rebuilds, like an agent's)."""

    spec: TenantSpec
    routes: Mapping[str, AgentRuntime]
    slots: ConcurrencyLimiter | None  # None: no max_concurrency of its own
    agent_slots: Mapping[str, ConcurrencyLimiter]  # agent key -> its cap for this empresa
    rate_identity: str = ""  # its rate limit's counter: "empresa:<id_empresa>"
