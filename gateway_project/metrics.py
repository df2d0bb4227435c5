"""The gateway's own Prometheus series (the contract's section 3).

Label values are bounded: agent keys come from the registry, and a modalidad that routes nowhere
is counted under UNROUTED, never as the raw string.
"""

import contextlib
import os

from django.conf import settings
from prometheus_client import Counter, Gauge, Histogram, multiprocess

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


def breaker_state_set(agent: str, state: str) -> None:
    breaker_state.labels(agent).set(STATE_VALUES[state])


def agent_forget(agent: str) -> None:
    """Drop a deleted agent's gauges so it does not linger in scrapes."""
    for gauge in (breaker_state, inflight, concurrency_limit):
        with contextlib.suppress(KeyError):
            gauge.remove(agent)


unrouted_total = Counter(
    "gateway_unrouted_requests",
    "Requests whose modalidad matched no routing name and went to the fallback route.",
)


def request_done(agent: str, status: int, seconds: float) -> None:
    requests_total.labels(agent, str(status)).inc()
    request_duration.labels(agent).observe(seconds)


def agent_error(agent: str, exc: Exception) -> None:
    from agents.errors import AgentBadStatusError

    reason = getattr(exc, "reason", "connection")
    agent_errors.labels(agent, reason).inc()
    if isinstance(exc, AgentBadStatusError):
        upstream_status.labels(agent, str(exc.status_code)).inc()


def process_exit() -> None:
    """In multiprocess mode, drop this worker's live gauges (in-flight calls) from the sums."""
    if settings.PROMETHEUS_MULTIPROC_DIR:
        multiprocess.mark_process_dead(os.getpid())
