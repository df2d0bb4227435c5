"""The Prometheus counters of an agent pool's endpoints, labelled by agent key and endpoint index
(its position among the agent's endpoints, so bounded): attempts by outcome, and ejections.
Agents with one endpoint are not counted here (their agent series say it all)."""

import logging

from prometheus_client import Counter

from runtime.agent_runtime import AgentRuntime, Replica

logger = logging.getLogger("gateway.runtime")

OK = "ok"

endpoint_requests = Counter(
    "gateway_endpoint_requests",
    "Attempts sent to an agent pool's endpoint, by outcome (ok, or the error type).",
    ["agent", "endpoint", "outcome"],
)
endpoint_ejections = Counter(
    "gateway_endpoint_ejections",
    "Times an agent pool's endpoint was ejected after consecutive failures.",
    ["agent", "endpoint"],
)
_children: dict[tuple[str, int, str], Counter] = {}


def attempt_counted(agent: str, replica: Replica, outcome: str) -> None:
    key = (agent, replica.state.index, outcome)
    child = _children.get(key)
    if child is None:
        child = _children[key] = endpoint_requests.labels(agent, str(key[1]), outcome)
    child.inc()


def ejection_counted(agent: str, replica: Replica) -> None:
    endpoint_ejections.labels(agent, str(replica.state.index)).inc()
    logger.warning(
        "endpoint ejected after consecutive failures",
        extra={
            "event": "endpoint_ejected",
            "agent": agent,
            "endpoint": replica.state.index,
            "url": replica.url,
            "ejections": replica.state.ejections,
        },
    )


def attempt_ended(runtime: AgentRuntime, replica: Replica, outcome: str, ok: bool | None) -> None:
    """A pooled attempt (or stream) on `replica` ended: one less in flight, its outcome counted,
    and recorded for outlier ejection (`ok` None: neither, e.g. a 4xx or the caller leaving)."""
    balancer = runtime.balancer
    if balancer is None:
        return
    state = replica.state
    state.inflight -= 1
    attempt_counted(runtime.key, replica, outcome)
    if ok is not None and balancer.record(state, ok=ok):
        ejection_counted(runtime.key, replica)
