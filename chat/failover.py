"""Failover agents: which agents a failed chat request tries next, and when.

When the routed agent fails with its breaker open, disabled, its concurrency limit full, a
connection failure or a 5xx, its failover agents (`AgentSpec.failover`) are tried in order, then
theirs (breadth first), each agent at most once and never the routed agent again, so mutual
failover cannot loop. Every try ends by the request's deadline (the routed agent's `timeout_s`
from the start of its call); none starts with less than MIN_LEFT_S left. A timeout of the routed
agent, a 4xx, an undecodable or oversized reply end the request with its fallback (the deadline
is spent, or the agent answered); a failover agent's own timeout goes on to the next one while
time is left. A failover agent the caller's key may not use, or that the empresa's cap on it
keeps out, is skipped.

chat/services.py runs the calls; agents without failover agents never reach this module.
"""

from collections import deque
from collections.abc import Iterator, Mapping

from chat import metrics
from runtime import AgentBadStatusError, AgentError, AgentRuntime

MIN_LEFT_S = 1.0  # no failover agent is started with less time than this left
FAILS_OVER = frozenset({"circuit_open", "disabled", "backpressure", "connection"})
# Outcomes of gateway_failover_total besides an agent error's reason.
ANSWERED = "answered"
FORBIDDEN = "forbidden"  # the caller's key may not use the failover agent
NO_TIME = "no_time"  # less than MIN_LEFT_S left: the chain ends


def fails_over(exc: AgentError, *, routed: bool) -> bool:
    """Whether the next agent of the chain is tried after `exc`. `routed`: the routed agent's
    error (its timeout is the request's deadline: nothing can follow it)."""
    if exc.reason in FAILS_OVER:
        return True
    if isinstance(exc, AgentBadStatusError):
        return exc.status_code >= 500
    return not routed and exc.reason == "timeout"


def failover_agents(
    routed: AgentRuntime, agents: Mapping[str, AgentRuntime]
) -> Iterator[AgentRuntime]:
    """The agents to try after `routed`, in order: its failover agents, then theirs, breadth
    first, each once; a key no longer in the registry is passed over."""
    seen = {routed.key}
    queue = deque(routed.spec.failover)
    while queue:
        key = queue.popleft()
        if key in seen:
            continue
        seen.add(key)
        runtime = agents.get(key)
        if runtime is None:
            continue
        yield runtime
        queue.extend(runtime.spec.failover)


def failover_count(routed: str, to: str, outcome: str) -> None:
    """One try (or skip) of failover agent `to` for a request routed to `routed`."""
    metrics.series(metrics.failover_total, routed, to, outcome).inc()
