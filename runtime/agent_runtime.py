"""AgentRuntime: what the hot path holds for one agent (spec, its endpoints' clients and their
balancer, breaker, limiter).

Lifecycle, one design for every change an admin can make while calls are in flight:

1. Built. The registry (runtime/registry.py) builds a runtime when an agent row is loaded, and
   rebuilds it when the row changes: an unchanged spec keeps its runtime; a rebuilt one keeps
   an endpoint's client and live state (in flight, ejection record) when its URL and the agent's
   transport fields (`AgentSpec.transport_config`) are equal, the old breaker when an endpoint
   URL is shared (its state carries over), and always the old limiter (calls in flight keep
   counting against the limit).
2. Held. A call takes the runtime from the snapshot once and holds it to the end: every attempt,
   the backoff between them and the breaker outcome use that runtime, under a lease on its
   clients (`AgentRuntime.lease`, runtime/calls.py). An edit saved meanwhile applies to the next
   call.
3. Replaced or deleted. The registry swaps in a snapshot without it. Each of its clients, unless
   the new runtime shares it, is retired: it closes when its last lease ends, never under a waiting call.
   Its breaker, unless shared, is retired too: outcomes of calls still settling on it change
   nothing anyone sees (no log line, no metric).
4. Gone from every reading. The live gauges (in flight, breaker state, limit) are read from the
   current snapshot when /metrics is scraped (fleet/live_gauges.py), so a replaced breaker
   or a deleted agent has no series to go stale; a worker that died stops being summed.
"""

from collections.abc import Collection, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from runtime.balancer import Balancer, Endpoint
from runtime.breaker import AsyncBreaker
from runtime.client import AgentClient, ClientsLease
from runtime.limiter import ConcurrencyLimiter
from runtime.specs import AgentSpec, EndpointSpec, TenantSpec


@dataclass(frozen=True, slots=True)
class Replica:
    """One enabled endpoint: its client (own connection pool) and its live state (`state.index`
    is its position among the agent's endpoints, the `endpoint` label of its metrics)."""

    spec: EndpointSpec
    client: AgentClient
    state: Endpoint

    @property
    def url(self) -> str:
        return self.spec.url


@dataclass(frozen=True, slots=True)
class AgentRuntime:
    spec: AgentSpec
    replicas: tuple[Replica, ...]  # the enabled endpoints, in order; may be empty
    breaker: AsyncBreaker
    limiter: ConcurrencyLimiter
    balancer: Balancer | None = None  # None with one replica: the fast path
    _by_state: Mapping[Endpoint, Replica] = field(default_factory=dict, repr=False)

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def client(self) -> AgentClient:
        """The first endpoint's client (an agent with one URL has only this one)."""
        return self.replicas[0].client

    def pick(self, session_id: int | None, exclude: Collection[Replica] = ()) -> Replica:
        """The replica for the next attempt (`exclude`: the ones this call already tried)."""
        balancer = self.balancer
        if balancer is None:
            return self.replicas[0]
        state = balancer.pick(session_id, [r.state for r in exclude] if exclude else ())
        return self._by_state[state]

    def failing_as_a_whole(self) -> bool:
        """Whether a failed call counts for the agent's breaker: always with one endpoint; in a
        pool, only when every endpoint is ejected or failed its latest attempt (one bad replica
        is the outlier ejection's business, not the breaker's)."""
        balancer = self.balancer
        if balancer is None:
            return True
        now = balancer.clock()
        return all(e.failures or e.ejected(now) for e in balancer.endpoints)

    def lease(self) -> AbstractContextManager[object]:
        """Hold every replica's client open for one whole call, retries and backoff included."""
        if len(self.replicas) == 1:
            return self.replicas[0].client.lease()
        return ClientsLease(tuple(r.client for r in self.replicas))


@dataclass(frozen=True, slots=True)
class TenantRuntime:
    """What the hot path holds for one empresa with a tenant row: its spec, its routes resolved
    to agents, and the count of its calls in flight (kept across rebuilds, like an agent's)."""

    spec: TenantSpec
    routes: Mapping[str, AgentRuntime]
    slots: ConcurrencyLimiter | None  # None: no max_concurrency of its own
    agent_slots: Mapping[str, ConcurrencyLimiter]  # agent key -> its cap for this empresa
    rate_identity: str = ""  # its rate limit's counter: "empresa:<id_empresa>"
