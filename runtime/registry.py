"""AgentRegistry: key -> AgentRuntime, per process, read by the hot path with no I/O.

The registry holds an immutable RegistrySnapshot and replaces it whole, so a request reads one
consistent view with a single attribute access. Snapshots are built and swapped on the event loop
thread (`apply` hops there when called from another thread), which is also where replaced
runtimes are retired (runtime/agent_runtime.py describes the lifecycle). The live gauges (calls in
flight, breaker state, limits) are read from the current snapshot at scrape time
(fleet/live_gauges.py), so a replaced or deleted runtime is simply no longer seen.
"""

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from agents.models import normalize_routing_name
from gateway_project.conf import gateway_settings
from observability.logs import log_secrets_add
from runtime.agent_runtime import AgentRuntime, Replica, TenantRuntime
from runtime.balancer import Balancer, Endpoint, OutlierPolicy
from runtime.breaker import AsyncBreaker
from runtime.client import AgentClient
from runtime.drain_budget import DrainWatch
from runtime.limiter import ConcurrencyLimiter
from runtime.specs import AgentSpec, TenantSpec

logger = logging.getLogger("gateway.registry")


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    version: int = -1
    agents: Mapping[str, AgentRuntime] = field(default_factory=lambda: MappingProxyType({}))
    routes: Mapping[str, AgentRuntime] = field(default_factory=lambda: MappingProxyType({}))
    fallback: AgentRuntime | None = None
    tenants: Mapping[int, TenantRuntime] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def loaded(self) -> bool:
        return self.version >= 0


def _on_breaker_state_change(key: str, old: str, new: str) -> None:
    logger.warning(
        "circuit breaker %s -> %s",
        old,
        new,
        extra={"event": "breaker_state_change", "agent": key, "from": old, "to": new},
    )


class AgentRegistry:
    def __init__(self) -> None:
        self._snapshot = RegistrySnapshot()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_watch = DrainWatch()

    @property
    def snapshot(self) -> RegistrySnapshot:
        return self._snapshot

    def route(self, modalidad: str, tenant: TenantRuntime | None = None) -> AgentRuntime | None:
        """The agent for `modalidad`: the empresa's own route when its tenant row has one."""
        name = normalize_routing_name(modalidad)
        if tenant is not None and tenant.routes:
            own = tenant.routes.get(name)
            if own is not None:
                return own
        return self._snapshot.routes.get(name)

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def apply(
        self, version: int, specs: Iterable[AgentSpec], tenants: Iterable[TenantSpec] = ()
    ) -> None:
        """Install the agents and tenants read at `version`; callable from any thread."""
        specs, tenant_specs = tuple(specs), tuple(tenants)
        loop = self._loop
        if loop is not None and not loop.is_closed() and not _running_on(loop):
            loop.call_soon_threadsafe(self._install, version, specs, tenant_specs)
        else:
            self._install(version, specs, tenant_specs)

    def breakers_reset(self, keys: Iterable[str]) -> None:
        """Close these agents' breakers (the admin's "reset breaker"); callable from any thread."""
        keys = frozenset(keys)
        loop = self._loop
        if loop is not None and not loop.is_closed() and not _running_on(loop):
            loop.call_soon_threadsafe(self._reset_breakers, keys)
        else:
            self._reset_breakers(keys)

    def _reset_breakers(self, keys: frozenset[str]) -> None:
        for key in keys:
            runtime = self._snapshot.agents.get(key)
            if runtime is not None and runtime.breaker.state != "closed":
                runtime.breaker.reset()
                logger.warning(
                    "circuit breaker reset from the admin",
                    extra={"event": "breaker_reset", "agent": key},
                )

    def _install(
        self, version: int, specs: tuple[AgentSpec, ...], tenant_specs: tuple[TenantSpec, ...] = ()
    ) -> None:
        current = self._snapshot
        if version < current.version:
            return  # a slower reader finished after a newer snapshot was installed
        log_secrets_add(secret for spec in specs for secret in _secrets(spec))
        agents: dict[str, AgentRuntime] = {}
        for spec in specs:
            agents[spec.key] = self._build(spec, current.agents.get(spec.key))
        routes = {
            name: runtime for runtime in agents.values() for name in runtime.spec.routing_names
        }
        fallback = next((r for r in agents.values() if r.spec.is_fallback_route), None)
        tenants = {
            spec.id_empresa: _tenant_build(spec, agents, current.tenants.get(spec.id_empresa))
            for spec in tenant_specs
        }
        self._snapshot = RegistrySnapshot(
            version=version,
            agents=MappingProxyType(agents),
            routes=MappingProxyType(routes),
            fallback=fallback,
            tenants=MappingProxyType(tenants),
        )
        live_clients = {id(p.client) for r in agents.values() for p in r.replicas}
        live_breakers = {id(r.breaker) for r in agents.values()}
        for old in current.agents.values():
            for replica in old.replicas:
                if id(replica.client) not in live_clients:
                    self._retire(replica.client)
            if id(old.breaker) not in live_breakers:
                old.breaker.retire()
        if current.version != version:
            logger.info(
                "registry loaded",
                extra={"event": "registry_loaded", "version": version, "agents": sorted(agents)},
            )
            self._drain_watch.check(r.spec for r in agents.values())

    def _build(self, spec: AgentSpec, old: AgentRuntime | None) -> AgentRuntime:
        if old is not None and old.spec == spec:
            return old
        replicas = _replicas_build(spec, old)
        urls = {e.url for e in spec.endpoints}
        if old is not None and urls & {e.url for e in old.spec.endpoints}:
            breaker = old.breaker
            breaker.configure(fail_max=spec.breaker_fail_max, reset_s=spec.breaker_reset_s)
        else:
            breaker = AsyncBreaker(
                key=spec.key,
                fail_max=spec.breaker_fail_max,
                reset_s=spec.breaker_reset_s,
                on_state_change=_on_breaker_state_change,
            )
        limiter = old.limiter if old is not None else ConcurrencyLimiter(spec.max_concurrency)
        limiter.limit = spec.max_concurrency
        balancer = None
        if len(replicas) > 1:
            balancer = Balancer(
                [r.state for r in replicas],
                balance=spec.balance,
                affinity=spec.affinity,
                policy=OutlierPolicy(base_s=gateway_settings.endpoint_ejection_base_s),
            )
        return AgentRuntime(
            spec=spec,
            replicas=replicas,
            breaker=breaker,
            limiter=limiter,
            balancer=balancer,
            _by_state={r.state: r for r in replicas},
        )

    def _retire(self, client: AgentClient) -> None:
        # No running loop (a management command): nothing was ever sent on it.
        with contextlib.suppress(RuntimeError):
            client.retire()

    async def aclose(self) -> None:
        """Close every client (shutdown, after the server drained its requests)."""
        snapshot, self._snapshot = self._snapshot, RegistrySnapshot()
        await asyncio.gather(
            *(p.client.aclose() for r in snapshot.agents.values() for p in r.replicas)
        )

    def clear(self) -> None:
        """Forget everything (tests)."""
        self._snapshot = RegistrySnapshot()
        self._loop = None
        self._drain_watch = DrainWatch()


def _secrets(spec: AgentSpec) -> list[str]:
    return [value for _, value in spec.headers] + [spec.tls.client_key]


def _replicas_build(spec: AgentSpec, old: AgentRuntime | None) -> tuple[Replica, ...]:
    """The enabled endpoints, each keeping its old client and live state (in flight, ejection
    record) when its URL and the agent's transport fields are unchanged."""
    kept: dict[str, Replica] = {}
    if old is not None and old.spec.transport_config() == spec.transport_config():
        kept = {r.url: r for r in old.replicas}
    replicas = []
    for index, endpoint in enumerate(spec.endpoints):
        if not endpoint.enabled:
            continue
        previous = kept.get(endpoint.url)
        if previous is not None:
            client, state = previous.client, previous.state
            state.index, state.weight = index, endpoint.weight
        else:
            client = AgentClient(
                spec,
                endpoint.url,
                user_agent=gateway_settings.user_agent,
                max_response_bytes=gateway_settings.agent_max_response_bytes,
            )
            state = Endpoint(index, endpoint.url, endpoint.weight)
        replicas.append(Replica(spec=endpoint, client=client, state=state))
    return tuple(replicas)


def _tenant_build(
    spec: TenantSpec, agents: Mapping[str, AgentRuntime], old: TenantRuntime | None
) -> TenantRuntime:
    routes = {name: agents[key] for name, key in spec.routes if key in agents}
    slots = None
    if spec.max_concurrency is not None:
        slots = _slots_kept(old.slots if old is not None else None, spec.max_concurrency)
    agent_slots = {
        key: _slots_kept(old.agent_slots.get(key) if old is not None else None, limit)
        for key, limit in spec.agent_limits
    }
    return TenantRuntime(
        spec=spec,
        routes=MappingProxyType(routes),
        slots=slots,
        agent_slots=MappingProxyType(agent_slots),
        rate_identity=f"empresa:{spec.id_empresa}",
    )


def _slots_kept(old: ConcurrencyLimiter | None, limit: int) -> ConcurrencyLimiter:
    """The old count of calls in flight with the new limit (calls in flight keep counting)."""
    slots = old if old is not None else ConcurrencyLimiter(limit)
    slots.limit = limit
    return slots


def _running_on(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


registry = AgentRegistry()
