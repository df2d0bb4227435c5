"""The agents app's tables: configuration (what admins edit: agents, routing names, tenants)
apart from operational state (what the gateway writes). API keys are the access app's
(access/models.py)."""

from agents.models.configuration import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_FALLBACK_REPLY,
    RESERVED_HEADERS,
    Affinity,
    Agent,
    AgentEndpoint,
    AgentHeader,
    AgentURLValidator,
    Balance,
    FailoverStep,
    PayloadFormat,
    RetryOn,
    RoutingName,
    Tenant,
    TenantAgentLimit,
    TenantRoute,
    default_health_url,
    default_timeout_s,
    header_value_validate,
    normalize_routing_name,
)
from agents.models.operational import BreakerReset, ConfigVersion, HealthResult, WorkerStatus

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_FALLBACK_REPLY",
    "RESERVED_HEADERS",
    "Affinity",
    "Agent",
    "AgentEndpoint",
    "AgentHeader",
    "AgentURLValidator",
    "Balance",
    "BreakerReset",
    "ConfigVersion",
    "FailoverStep",
    "HealthResult",
    "PayloadFormat",
    "RetryOn",
    "RoutingName",
    "Tenant",
    "TenantAgentLimit",
    "TenantRoute",
    "WorkerStatus",
    "default_health_url",
    "default_timeout_s",
    "header_value_validate",
    "normalize_routing_name",
]
