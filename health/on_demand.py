"""Checks run on demand from sync code (the admin's actions, management commands): the same
probes as GET /health, run in parallel on a private event loop, with results recorded as each
agent's last health check.

They read what they need from the database first, give the thread's database connection back
before waiting on agents (seconds, for a hanging one) and take one again to write the results:
a few admins checking slow agents at once must not hold a worker's small connection pool
(DB_POOL_MAX_SIZE) and starve the registry poller and readiness.
"""

import asyncio
import uuid

from django.db import connection
from django.utils import timezone

from agents.models import Agent, HealthResult
from fleet.worker_state import fleet_open_breakers
from gateway_project.conf import gateway_settings
from health.probes import AgentHealth, ChatProbe, new_probe_client, probe_all, probe_chat
from runtime import AgentSpec, agent_spec_load


def _specs(agents: list[Agent]) -> list[AgentSpec]:
    """As the serving processes build them (prefetch AGENT_RELATIONS to spare queries): a test
    message carries the agent's headers and TLS, and the endpoints are included."""
    return [agent_spec_load(a) for a in agents]


def release_db_connection() -> None:
    """Give this thread's connection back (to the pool, or closed when persistent) until its
    next query opens one. Not inside a transaction, which closing would break."""
    if not connection.in_atomic_block:
        connection.close()


def agents_check_health(
    agents: list[Agent], *, timeout_s: float | None = None
) -> list[AgentHealth]:
    """Probe every agent at once (answers within the timeout whatever they do) and record it.

    An agent whose breaker is open in any live worker reports `circuit_open`, as /health does.
    """
    specs = _specs(agents)
    timeout = timeout_s or gateway_settings.health_check_timeout_s
    open_anywhere = dict.fromkeys(fleet_open_breakers(), "open")
    release_db_connection()

    async def run() -> dict[str, AgentHealth]:
        async with new_probe_client() as client:
            return await probe_all(specs, client, timeout_s=timeout, breaker_states=open_anywhere)

    results = asyncio.run(run())
    now = timezone.now()
    for agent in agents:
        result = results[agent.key]
        HealthResult.objects.update_or_create(
            agent=agent,
            defaults={"status": result.status, "latency_ms": result.latency_ms, "checked_at": now},
        )
    return [results[spec.key] for spec in specs]


def agents_send_test_message(agents: list[Agent]) -> list[ChatProbe]:
    """One sample message to each agent at once, through the real client and contract."""
    specs = _specs(agents)
    request_id = f"admin-test-{uuid.uuid4().hex[:12]}"
    release_db_connection()

    async def run() -> list[ChatProbe]:
        return list(await asyncio.gather(*(probe_chat(s, request_id=request_id) for s in specs)))

    return asyncio.run(run())
