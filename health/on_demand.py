"""Checks run on demand from sync code (the admin's actions, management commands): the same
probes as GET /health, run in parallel on a private event loop, with results recorded as each
agent's last health check."""

import asyncio
import uuid

from django.utils import timezone

from agents.conf import gateway_settings
from agents.models import Agent, HealthResult
from agents.specs import AgentSpec
from agents.worker_state import fleet_open_breakers
from health.probes import AgentHealth, ChatProbe, new_probe_client, probe_all, probe_chat


def _specs(agents: list[Agent]) -> list[AgentSpec]:
    return [AgentSpec.from_agent(a, [r.name for r in a.routing_names.all()]) for a in agents]


def agents_check_health(
    agents: list[Agent], *, timeout_s: float | None = None
) -> list[AgentHealth]:
    """Probe every agent at once (answers within the timeout whatever they do) and record it.

    An agent whose breaker is open in any live worker reports `circuit_open`, as /health does.
    """
    specs = _specs(agents)
    timeout = timeout_s or gateway_settings.health_check_timeout_s
    open_anywhere = dict.fromkeys(fleet_open_breakers(), "open")

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

    async def run() -> list[ChatProbe]:
        return list(await asyncio.gather(*(probe_chat(s, request_id=request_id) for s in specs)))

    return asyncio.run(run())
