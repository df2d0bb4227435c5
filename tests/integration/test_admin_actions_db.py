"""The admin's *Check health now* and *Send a test message* give their database connection back
while they wait on agents: three admins checking hanging agents at once must not hold a worker's
whole psycopg pool (DB_POOL_MAX_SIZE=4) for seconds. Observed from inside the probe, while it
waits on an agent that never answers."""

from collections.abc import Callable
from typing import Any

import health.on_demand as on_demand
from tests.conftest import in_thread


def run_observing_the_connection(
    monkeypatch: Any, fault_agent: Any, spied: str, action: Callable[[list[Any]], Any]
) -> tuple[dict[str, Any], Any]:
    """Run `action(agents)` as the admin does (in a sync thread, the agents read with their
    routing names), with `on_demand.<spied>` wrapped so that, once the agent has received the
    request and the probe is waiting on it, it records this thread's database connection."""
    from django.db import connections

    from agents.models import Agent

    seen: dict[str, Any] = {}
    real = getattr(on_demand, spied)

    def run() -> Any:
        database = connections["default"]  # this thread's connection wrapper
        agents = list(Agent.objects.prefetch_related("routing_names").order_by("key"))
        seen["before"] = database.connection

        async def spy(*args: Any, **kwargs: Any) -> Any:
            import asyncio

            probe = asyncio.ensure_future(real(*args, **kwargs))
            seen["agent_reached"] = await fault_agent.until(lambda a: a.attempts("/hang") >= 1)
            seen["while_waiting"] = database.connection
            return await probe

        monkeypatch.setattr(on_demand, spied, spy)
        return action(agents)

    return seen, in_thread(run)


def test_check_health_releases_the_connection_while_waiting(monkeypatch, make_agent, fault_agent):
    from agents.models import HealthResult

    make_agent("cita", url=fault_agent.url("/ok"), health_url=fault_agent.url("/hang"))
    seen, results = run_observing_the_connection(
        monkeypatch,
        fault_agent,
        "probe_all",
        lambda agents: on_demand.agents_check_health(agents, timeout_s=0.5),
    )
    assert seen["before"] is not None  # reading the agents opened it
    assert seen["agent_reached"]
    assert seen["while_waiting"] is None
    assert [(r.key, r.status) for r in results] == [("cita", "unreachable")]
    # ... and it takes one again to record the result
    recorded = in_thread(lambda: list(HealthResult.objects.values_list("agent__key", "status")))
    assert recorded == [("cita", "unreachable")]


def test_send_test_message_releases_the_connection_while_waiting(
    monkeypatch, make_agent, fault_agent
):
    make_agent("cita", url=fault_agent.url("/hang"), timeout_s=0.5)
    seen, probes = run_observing_the_connection(
        monkeypatch, fault_agent, "probe_chat", on_demand.agents_send_test_message
    )
    assert seen["before"] is not None
    assert seen["agent_reached"]
    assert seen["while_waiting"] is None
    assert [(p.key, p.ok, p.error) for p in probes] == [("cita", False, "timeout")]
