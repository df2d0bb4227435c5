"""The chat answers' Prometheus series (the contract's sections 3 and 5): requests by agent and
status, their duration, agents' HTTP statuses and errors, unrouted requests, requests by empresa,
streamed replies (time to the first event, duration, events relayed), and failover agents tried.

Label values are bounded: agent keys come from the registry; a chat answer given before any
agent was chosen is counted under NONE, one whose modalidad routes nowhere under UNROUTED, never
as the raw string; an empresa is its id when it has a tenant row, else OTHER_TENANT. These are
ordinary prometheus_client metrics, summed across workers by its multiprocess mode; the live
gauges (in flight, breaker, limit) are fleet/live_gauges.py.
"""

from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase

from runtime import AgentBadStatusError, registry

NONE = "_none"
UNROUTED = "_unrouted"
OTHER_TENANT = "_other"
CLIENT_LEFT = 499  # the status a chat request is counted with when its caller left first


# Agent calls take 0.1-30 s; finer steps below 1 s for the fast paths (fallbacks, 503s).
LATENCY_BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 12, 16, 20, 25, 30, 45, 60)

requests_total = Counter(
    "gateway_requests", "Chat requests answered, by agent and HTTP status.", ["agent", "status"]
)
request_duration = Histogram(
    "gateway_request_duration_seconds",
    "Chat request duration, by agent.",
    ["agent"],
    buckets=LATENCY_BUCKETS,
)
upstream_status = Counter(
    "gateway_upstream_http_status", "HTTP statuses agents answered.", ["agent", "status_code"]
)
agent_errors = Counter(
    "gateway_agent_error",
    "Agent calls that ended in a fallback or refusal.",
    ["agent", "error_type"],
)
tenant_requests_total = Counter(
    "gateway_tenant_requests",
    "Chat requests answered, by empresa (its id_empresa when it has a tenant row, else _other) "
    "and HTTP status.",
    ["tenant", "status"],
)
stream_first_byte = Histogram(
    "gateway_stream_time_to_first_byte_seconds",
    "Streamed replies: time from the request's arrival to its first event, by agent.",
    ["agent"],
    buckets=LATENCY_BUCKETS,
)
stream_duration = Histogram(
    "gateway_stream_duration_seconds",
    "Streamed replies: time from the request's arrival to the stream's end, by agent.",
    ["agent"],
    buckets=(*LATENCY_BUCKETS, 90, 120, 180, 300, 600, 1800, 3600),
)
stream_events = Counter(
    "gateway_stream_events_relayed", "Events relayed from agents' streams, by agent.", ["agent"]
)
failover_total = Counter(
    "gateway_failover",
    "Failover agents tried (or skipped) after the routed agent failed, by the routed agent, the "
    "failover agent and the outcome: answered, an agent error's reason, forbidden (the key may "
    "not use it) or no_time (the deadline too close to start it).",
    ["agent", "to", "outcome"],
)
unrouted_total = Counter(
    "gateway_unrouted_requests",
    "Requests whose modalidad matched no routing name and went to the fallback route.",
)


# (metric, label values) -> its child. prometheus_client's labels() converts the values, takes
# a lock and looks the child up on every call; a chat request makes several such lookups.
_children: dict[tuple[MetricWrapperBase, tuple[str, ...]], Any] = {}


def series(metric: MetricWrapperBase, *labels: str) -> Any:
    """`metric.labels(*labels)`, looked up once per process."""
    child = _children.get((metric, labels))
    if child is None:
        child = _children[(metric, labels)] = metric.labels(*labels)
    return child


# (agent, status, tenant label or None) -> the children one answer counts in, looked up once.
_answer_children: dict[tuple[str, int, str | None], tuple[Any, Any, Any]] = {}


def request_done(
    agent: str,
    status: int,
    seconds: float,
    id_empresa: int | None = None,
    *,
    trace_id: str | None = None,
) -> None:
    """One chat answer; with `id_empresa` once the body named one (not for refusals before).
    `trace_id` (of a recorded trace) becomes the duration's exemplar, shown to scrapers that ask
    for OpenMetrics (prometheus_client keeps none in multiprocess mode)."""
    tenant = None
    if id_empresa is not None:
        tenant = str(id_empresa) if id_empresa in registry.snapshot.tenants else OTHER_TENANT
    children = _answer_children.get((agent, status, tenant))
    if children is None:
        label = str(status)
        children = _answer_children[(agent, status, tenant)] = (
            requests_total.labels(agent, label),
            request_duration.labels(agent),
            None if tenant is None else tenant_requests_total.labels(tenant, label),
        )
    total, duration, by_tenant = children
    total.inc()
    duration.observe(seconds, {"trace_id": trace_id} if trace_id else None)
    if by_tenant is not None:
        by_tenant.inc()


def agent_error(agent: str, exc: Exception) -> None:
    reason = getattr(exc, "reason", "connection")
    series(agent_errors, agent, reason).inc()
    if isinstance(exc, AgentBadStatusError):
        series(upstream_status, agent, str(exc.status_code)).inc()
