"""The gateway's own Prometheus series (the contract's section 3).

Label values are bounded: agent keys come from the registry, and a modalidad that routes nowhere
is counted under UNROUTED, never as the raw string.
"""

import contextlib
import os
from typing import Any

from django.conf import settings
from prometheus_client import Counter, Gauge, Histogram, multiprocess
from prometheus_client.metrics import MetricWrapperBase

from agents.breaker import STATE_VALUES

UNROUTED = "_unrouted"

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
inflight = Gauge(
    "gateway_inflight_requests", "Agent calls in flight.", ["agent"], multiprocess_mode="livesum"
)
concurrency_limit = Gauge(
    "gateway_agent_concurrency_limit",
    "Calls in flight allowed per agent (summed over live workers).",
    ["agent"],
    multiprocess_mode="livesum",
)
breaker_state = Gauge(
    "gateway_circuit_breaker_state",
    "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
    ["agent"],
    multiprocess_mode="livemax",  # the worst state among live workers; dead ones drop out
)
upstream_status = Counter(
    "gateway_upstream_http_status", "HTTP statuses agents answered.", ["agent", "status_code"]
)
agent_errors = Counter(
    "gateway_agent_error",
    "Agent calls that ended in a fallback or refusal.",
    ["agent", "error_type"],
)


# (metric, label values) -> its child. prometheus_client's labels() converts the values, takes
# a lock and looks the child up on every call; a chat request makes five such lookups.
_children: dict[tuple[MetricWrapperBase, tuple[str, ...]], Any] = {}


def series(metric: MetricWrapperBase, *labels: str) -> Any:
    """`metric.labels(*labels)`, looked up once per process (dropped by agent_forget)."""
    child = _children.get((metric, labels))
    if child is None:
        child = _children[(metric, labels)] = metric.labels(*labels)
    return child


def breaker_state_set(agent: str, state: str) -> None:
    series(breaker_state, agent).set(STATE_VALUES[state])


def agent_forget(agent: str) -> None:
    """Drop a deleted agent's gauges so it does not linger in scrapes."""
    for key in [key for key in list(_children) if key[1][0] == agent]:
        _children.pop(key, None)
    for gauge in (breaker_state, inflight, concurrency_limit):
        with contextlib.suppress(KeyError):
            gauge.remove(agent)


unrouted_total = Counter(
    "gateway_unrouted_requests",
    "Requests whose modalidad matched no routing name and went to the fallback route.",
)


def request_done(agent: str, status: int, seconds: float) -> None:
    series(requests_total, agent, str(status)).inc()
    series(request_duration, agent).observe(seconds)


def agent_error(agent: str, exc: Exception) -> None:
    from agents.errors import AgentBadStatusError

    reason = getattr(exc, "reason", "connection")
    series(agent_errors, agent, reason).inc()
    if isinstance(exc, AgentBadStatusError):
        series(upstream_status, agent, str(exc.status_code)).inc()


def process_exit() -> None:
    """In multiprocess mode, drop this worker's live gauges (in-flight calls) from the sums."""
    if settings.PROMETHEUS_MULTIPROC_DIR:
        multiprocess.mark_process_dead(os.getpid())
