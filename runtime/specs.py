"""AgentSpec and TenantSpec: immutable snapshots of an agent row and of a tenant row, the only
shapes the hot path sees.

Secrets (header values, the TLS client key) are decrypted when the spec is built, off the hot
path, and kept out of every repr.
"""

import logging
from dataclasses import dataclass, field

from agents.models import DEFAULT_FALLBACK_REPLY, Agent, Tenant, default_health_url
from agents.secrets import SecretUnreadable, secret_decrypt
from agents.tls import TlsSpec

logger = logging.getLogger("gateway.registry")

# What agent_spec_load needs prefetched on each Agent row.
AGENT_RELATIONS = ("routing_names", "endpoints", "headers", "failover_steps__target")


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """One replica of an agent (an agent with only `url` has one, of weight 1)."""

    url: str
    weight: int = 1
    enabled: bool = True


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
    endpoints: tuple[EndpointSpec, ...] = ()
    balance: str = "least_inflight"  # agents.models.Balance
    affinity: str = "none"  # agents.models.Affinity
    failover: tuple[str, ...] = ()  # agent keys, tried in order
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # decrypted values
    tls: TlsSpec = field(default_factory=TlsSpec)
    proxy_url: str = ""
    # Which of its secrets no configured key reads (sent empty), for the start-up log.
    secrets_unreadable: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_agent(
        cls,
        agent: Agent,
        routing_names: list[str],
        *,
        endpoints: list[EndpointSpec] | None = None,
        failover: list[str] | None = None,
        headers: list[tuple[str, str]] | None = None,
        tls: TlsSpec | None = None,
        secrets_unreadable: tuple[str, ...] = (),
    ) -> "AgentSpec":
        """`endpoints`: the agent's endpoint rows (none: its `url` is its one endpoint);
        `headers` and `tls` come with their secrets decrypted."""
        pool = tuple(endpoints) if endpoints else (EndpointSpec(agent.url),)
        url = pool[0].url  # endpoint rows replace the agent's url
        return cls(
            key=agent.key,
            name=agent.name,
            url=url,
            health_url=agent.health_url or default_health_url(url),
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
            endpoints=pool,
            balance=agent.balance,
            affinity=agent.affinity,
            failover=tuple(failover or ()),
            headers=tuple(headers or ()),
            tls=tls if tls is not None else TlsSpec(verify=agent.tls_verify),
            proxy_url=agent.proxy_url,
            secrets_unreadable=secrets_unreadable,
        )

    def transport_config(self) -> tuple[object, ...]:
        """The agent-wide fields its endpoints' HTTP clients are built from (with each endpoint's
        URL); a change in any of them needs new clients."""
        return (
            self.timeout_s,
            self.connect_timeout_s,
            self.max_connections,
            self.headers,
            self.tls,
            self.proxy_url,
        )


def agent_spec_load(agent: Agent) -> AgentSpec:
    """An agent row (with AGENT_RELATIONS prefetched) as its spec, secrets decrypted."""
    unreadable: list[str] = []
    return AgentSpec.from_agent(
        agent,
        [r.name for r in agent.routing_names.all()],
        endpoints=[EndpointSpec(e.url, int(e.weight), e.enabled) for e in agent.endpoints.all()],
        failover=[step.target.key for step in agent.failover_steps.all()],
        headers=[
            (h.name, _secret(agent, f"header {h.name}", h.value, unreadable))
            for h in agent.headers.all()
        ],
        tls=TlsSpec(
            verify=agent.tls_verify,
            ca_bundle=agent.tls_ca_bundle,
            client_cert=agent.tls_client_cert,
            client_key=_secret(agent, "TLS client key", agent.tls_client_key, unreadable),
        ),
        secrets_unreadable=tuple(unreadable),
    )


def _secret(agent: Agent, what: str, stored: str, unreadable: list[str]) -> str:
    """A stored secret decrypted; one no configured key reads is logged, added to
    `unreadable`, and sent empty (the agent then refuses the call: the caller gets the
    fallback)."""
    if not stored:
        return ""
    try:
        return secret_decrypt(stored)
    except SecretUnreadable as exc:
        logger.error(
            "a secret of this agent cannot be decrypted: %s",
            exc,
            extra={"event": "secret_unreadable", "agent": agent.key, "secret": what},
        )
        unreadable.append(f"{what}: {exc}")
        return ""


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
