"""Tenants through real gateway processes (issue 18): a flood from one empresa against an agent
with 20 slots leaves another empresa's requests all answered, and a tenant row reaches every
worker within the poll bound."""

import asyncio
import time
from typing import Any

import httpx

from chat import messages
from tests.conftest import LiveDatabase, chat_body
from tests.fault_agent import FaultAgent
from tests.integration.test_live_operations_processes import create_agent
from tests.integration.test_scale_out import seconds_until
from tests.metrics import sample

CHAT = "/api/agent/chat"
AGENT_S = 0.3  # each agent call holds its slot this long


async def _post(client: httpx.AsyncClient, empresa: int) -> httpx.Response:
    return await client.post(CHAT, json=chat_body(id_empresa=empresa))


async def _flood_and_trickle(base: str, flood_s: float) -> tuple[list[Any], list[Any]]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=base, timeout=20, limits=limits) as client:
        stop_at = time.monotonic() + flood_s
        flood: list[httpx.Response] = []

        async def flooder() -> None:
            while time.monotonic() < stop_at:
                flood.append(await _post(client, 1))

        async def trickle() -> list[httpx.Response]:
            await asyncio.sleep(0.5)  # empresa 1 already holds every slot
            answers = []
            for _ in range(4):
                answers += await asyncio.gather(*(_post(client, 2) for _ in range(5)))
            return answers

        flooders = [asyncio.create_task(flooder()) for _ in range(60)]
        second = await trickle()
        await asyncio.gather(*flooders)
    return flood, second


def test_a_flood_from_one_empresa_leaves_another_empresas_requests_all_answered(
    live_db: LiveDatabase, gateway_process: Any, fault_agent: FaultAgent
):
    create_agent(
        live_db, "cita", fault_agent.url(f"/slow/{AGENT_S}"),
        max_concurrency=20, max_connections=100, timeout_s=10,
    )  # fmt: skip
    gateway = gateway_process()
    flood, second = asyncio.run(_flood_and_trickle(gateway.url, flood_s=4.0))

    # Empresa 2: 20 requests, every one the agent's own reply (none refused, none a fallback).
    assert [r.status_code for r in second] == [200] * 20
    assert all("x-gateway-fallback" not in r.headers for r in second)
    assert all(r.json()["reply"].startswith("echo:") for r in second)

    # Empresa 1: served up to its slots, refused past them with the contract's 503.
    served = [r for r in flood if r.status_code == 200]
    refused = [r for r in flood if r.status_code == 503]
    assert len(served) + len(refused) == len(flood)
    assert served and refused
    assert all(r.json() == {"detail": messages.SATURATED} for r in refused)
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)

    # Totals match: what the agent saw, what the gateway counted, what the callers got.
    seen = [request.json["context"]["config"]["id_empresa"] for request in fault_agent.requests]
    assert seen.count(2) == 20 and seen.count(1) == len(served)
    scrape = httpx.get(f"{gateway.url}/metrics", timeout=5).text
    total = "gateway_requests_total"
    assert sample(scrape, total, agent="cita", status="200") == len(served) + 20
    assert sample(scrape, total, agent="cita", status="503") == len(refused)


def test_one_empresa_alone_keeps_every_slot(
    live_db: LiveDatabase, gateway_process: Any, fault_agent: FaultAgent
):
    """Without a second empresa, the flood is served up to max_concurrency, as before."""
    create_agent(
        live_db, "cita", fault_agent.url(f"/slow/{AGENT_S}"),
        max_concurrency=20, max_connections=100, timeout_s=10,
    )  # fmt: skip
    gateway = gateway_process()

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=20, limits=limits) as client:
            return list(await asyncio.gather(*(_post(client, 1) for _ in range(30))))

    answers = asyncio.run(burst())
    assert sorted(r.status_code for r in answers) == [200] * 20 + [503] * 10


def test_a_tenant_row_reaches_every_worker_within_the_poll_bound(
    live_db: LiveDatabase, gateway_process: Any, fault_agent: FaultAgent
):
    """A tenant disabled (then enabled again) by another process, as the admin would: both
    workers follow within 2 poll intervals, with no restart and no query per request."""
    create_agent(live_db, "cita", fault_agent.url("/ok"))
    env = {"REGISTRY_POLL_INTERVAL_S": "0.5"}
    workers = [gateway_process(env=env), gateway_process(env=env)]
    body = chat_body(id_empresa=7)

    def statuses() -> list[int]:
        return [httpx.post(f"{w.url}{CHAT}", json=body, timeout=5).status_code for w in workers]

    assert statuses() == [200, 200]
    live_db.python(
        "from agents.models import Tenant\n"
        "Tenant.objects.create(id_empresa=7, name='Siete', enabled=False)"
    )
    seconds_until(lambda: statuses() == [403, 403], 1.0 + 0.5)
    refused = httpx.post(f"{workers[0].url}{CHAT}", json=body, timeout=5)
    assert refused.json() == {"detail": messages.EMPRESA_DISABLED}
    other = httpx.post(f"{workers[1].url}{CHAT}", json=chat_body(id_empresa=8), timeout=5)
    assert other.status_code == 200
    live_db.python(
        "from agents.models import Tenant\n"
        "t = Tenant.objects.get(id_empresa=7); t.enabled = True; t.save()"
    )
    seconds_until(lambda: statuses() == [200, 200], 1.0 + 0.5)


def test_tenant_rules_through_a_real_process(
    live_db: LiveDatabase, gateway_process: Any, fault_agent: FaultAgent
):
    """A key bound to an empresa, a tenant's rate limit, its own route and a disabled tenant,
    each answered in the contract's shape by a real uvicorn worker."""
    create_agent(live_db, "cita", fault_agent.url("/ok"))
    create_agent(live_db, "premium", fault_agent.url("/ok"))
    key = live_db.python(
        "from access.services import api_key_create\n"
        "from agents.models import Agent, Tenant, TenantRoute\n"
        "t = Tenant.objects.create(id_empresa=7, name='Siete', requests_per_minute=2)\n"
        "premium = Agent.objects.get(key='premium')\n"
        "TenantRoute.objects.create(tenant=t, name='cita', agent=premium)\n"
        "Tenant.objects.create(id_empresa=9, name='Nueve', enabled=False)\n"
        "print(api_key_create(name='solo-7-8', empresas=[7, 8])[1])"
    ).strip()
    gateway = gateway_process()

    def chat(empresa: int) -> httpx.Response:
        return httpx.post(
            f"{gateway.url}{CHAT}", json=chat_body(id_empresa=empresa),
            headers={"X-API-Key": key}, timeout=5,
        )  # fmt: skip

    own = chat(7)
    assert own.status_code == 200 and own.json()["agent_used"] == "premium"  # its own route
    assert chat(8).json()["agent_used"] == "cita"  # the usual route
    limited = [chat(7), chat(7)]  # its budget of 2 a minute is spent after the next one
    assert [r.status_code for r in limited] == [200, 429]
    assert limited[1].json() == {"detail": messages.RATE_LIMITED}
    assert int(limited[1].headers["retry-after"]) >= 1
    other = chat(5)
    assert other.status_code == 403
    assert other.json() == {"detail": messages.FORBIDDEN_EMPRESA}
    disabled = chat(9)  # the key may not act for 9 either: the key's rule comes first
    assert disabled.json() == {"detail": messages.FORBIDDEN_EMPRESA}
    unbound = live_db.python(
        "from access.services import api_key_create\nprint(api_key_create(name='todas')[1])"
    ).strip()
    seconds_until(
        lambda: httpx.post(
            f"{gateway.url}{CHAT}", json=chat_body(id_empresa=9),
            headers={"X-API-Key": unbound}, timeout=5,
        ).status_code == 403,
        2.0,
    )  # fmt: skip
    refused = httpx.post(
        f"{gateway.url}{CHAT}", json=chat_body(id_empresa=9), headers={"X-API-Key": unbound}
    )
    assert refused.json() == {"detail": messages.EMPRESA_DISABLED}
