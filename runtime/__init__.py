"""The upstream runtime: a pooled HTTP client per agent endpoint, and per agent a balancer over
them, a breaker and a concurrency limit, held in a registry the hot path reads without I/O, and
the policy of one call (deadline, endpoint, retry, breaker).

Other rooms use these names only; the modules behind them are the runtime's own.
"""

from runtime.agent_runtime import AgentRuntime, TenantRuntime
from runtime.breaker import OPEN, STATE_VALUES
from runtime.calls import agent_call
from runtime.client import AgentClient, AgentReply
from runtime.deadlines import deadline_at, deadline_in
from runtime.drain_budget import drain_problems
from runtime.draining import draining
from runtime.errors import AgentBadStatusError, AgentBusyError, AgentError
from runtime.limiter import ConcurrencyLimiter
from runtime.registry import AgentRegistry, registry
from runtime.specs import AGENT_RELATIONS, AgentSpec, EndpointSpec, TenantSpec, agent_spec_load
from runtime.streams import AgentStream
from runtime.tls import TlsConfigError, TlsSpec, egress_proxy, ssl_context

__all__ = [
    "AGENT_RELATIONS",
    "OPEN",
    "STATE_VALUES",
    "AgentBadStatusError",
    "AgentBusyError",
    "AgentClient",
    "AgentError",
    "AgentRegistry",
    "AgentReply",
    "AgentRuntime",
    "AgentSpec",
    "AgentStream",
    "ConcurrencyLimiter",
    "EndpointSpec",
    "TenantRuntime",
    "TenantSpec",
    "TlsConfigError",
    "TlsSpec",
    "agent_call",
    "agent_spec_load",
    "deadline_at",
    "deadline_in",
    "drain_problems",
    "draining",
    "egress_proxy",
    "registry",
    "ssl_context",
]
