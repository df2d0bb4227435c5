"""AgentSpec and TenantSpec: immutable snapshots of an agent row and of a tenant row, the only
shapes the hot path sees."""

from dataclasses import dataclass

from agents.models import DEFAULT_FALLBACK_REPLY, Agent, Tenant, default_health_url


@dataclass(frozen=True, slots=True)
class AgentSpec:
    key: str
    name: str
    url: str
    health_url: str
    enabled: bool
    payload_format: str
    timeout_s: float
    connect_timeout_s: float
    max_concurrency: int
    max_connections: int
    breaker_fail_max: int
    breaker_reset_s: float
    retries: int
    retry_on: str  # agents.models.RetryOn
    stream_idle_timeout_s: float
    stream_max_s: float
    fallback_reply: str
    is_fallback_route: bool
    routing_names: tuple[str, ...]

    @classmethod
    def from_agent(cls, agent: Agent, routing_names: list[str]) -> "AgentSpec":
        return cls(
            key=agent.key,
            name=agent.name,
            url=agent.url,
            health_url=agent.health_url or default_health_url(agent.url),
            enabled=agent.enabled,
            payload_format=agent.payload_format,
            timeout_s=float(agent.timeout_s),
            connect_timeout_s=agent.effective_connect_timeout_s,
            max_concurrency=int(agent.max_concurrency),
            max_connections=int(agent.max_connections),
            breaker_fail_max=int(agent.breaker_fail_max),
            breaker_reset_s=float(agent.breaker_reset_s),
            retries=int(agent.retries),
            retry_on=agent.retry_on,
            stream_idle_timeout_s=float(agent.stream_idle_timeout_s),
            stream_max_s=float(agent.stream_max_s),
            fallback_reply=agent.fallback_reply or DEFAULT_FALLBACK_REPLY,
            is_fallback_route=agent.is_fallback_route,
            routing_names=tuple(sorted(routing_names)),
        )

    def transport_config(self) -> tuple[object, ...]:
        """The fields the HTTP client is built from; a change in any of them needs a new client."""
        return (self.url, self.timeout_s, self.connect_timeout_s, self.max_connections)


@dataclass(frozen=True, slots=True)
class TenantSpec:
    id_empresa: int
    name: str
    enabled: bool
    max_concurrency: int | None
    requests_per_minute: int | None
    routes: tuple[tuple[str, str], ...]  # (routing name, agent key), sorted
    agent_limits: tuple[tuple[str, int], ...] = ()  # (agent key, max_concurrency), sorted

    @classmethod
    def from_tenant(
        cls,
        tenant: Tenant,
        routes: list[tuple[str, str]],
        agent_limits: list[tuple[str, int]] | None = None,
    ) -> "TenantSpec":
        return cls(
            id_empresa=int(tenant.id_empresa),
            name=tenant.name,
            enabled=tenant.enabled,
            max_concurrency=tenant.max_concurrency,
            requests_per_minute=tenant.requests_per_minute,
            routes=tuple(sorted(routes)),
            agent_limits=tuple(sorted(agent_limits or ())),
        )
