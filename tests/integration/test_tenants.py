"""Tenant rows (issue 18): a disabled empresa, its own routes, its own limits, and keys bound to
empresas, through the real ASGI application and real agent servers; edits apply to the next
request without a restart."""

import asyncio
import time
from collections.abc import Callable
from typing import Any

from django.db import transaction

from chat import messages
from fleet.sync import registry_sync
from runtime import registry
from tests.conftest import chat_body, in_thread
from tests.integration.test_security import create_key, post
from tests.metrics import sample, sample_or_absent

CHAT = "/api/agent/chat"


async def saved(change: Callable[[], object]) -> None:
    """Commit `change` in another thread, then wait until this worker's registry has installed
    it (the saving process reloads at once; the new snapshot is swapped in on the event loop)."""
    if not registry_sync.started:  # the first request loads everything
        in_thread(change)
        return
    before = registry.snapshot.version
    in_thread(change)
    deadline = time.monotonic() + 2
    while registry.snapshot.version == before:
        assert time.monotonic() < deadline, "the change never reached the registry"
        await asyncio.sleep(0.01)


async def create_tenant(
    id_empresa: int,
    routes: dict[str, str] | None = None,
    agent_limits: dict[str, int] | None = None,
    **fields: Any,
) -> None:
    from agents.models import Agent, Tenant, TenantAgentLimit, TenantRoute

    def create() -> None:
        with transaction.atomic():
            tenant = Tenant.objects.create(
                id_empresa=id_empresa, name=f"Empresa {id_empresa}", **fields
            )
            for name, agent in (routes or {}).items():
                TenantRoute.objects.create(
                    tenant=tenant, name=name, agent=Agent.objects.get(key=agent)
                )
            for agent, limit in (agent_limits or {}).items():
                TenantAgentLimit.objects.create(
                    tenant=tenant, agent=Agent.objects.get(key=agent), max_concurrency=limit
                )

    await saved(create)


async def tenant_update(id_empresa: int, **fields: Any) -> None:
    from agents.models import Tenant

    def update() -> None:
        tenant = Tenant.objects.get(id_empresa=id_empresa)
        for name, value in fields.items():
            setattr(tenant, name, value)
        tenant.save()

    await saved(update)


async def test_a_disabled_empresa_gets_403_and_others_are_served(gateway, make_agent, fault_agent):
    make_agent("cita", url=fault_agent.url("/ok"))
    await create_tenant(7, enabled=False)
    refused = await post(gateway, id_empresa=7)
    assert refused.status_code == 403
    assert refused.json() == {"detail": messages.EMPRESA_DISABLED}
    served = await post(gateway, id_empresa=8)  # no tenant row: served as always
    assert served.status_code == 200 and served.json()["agent_used"] == "cita"
    assert fault_agent.attempts() == 1  # the disabled empresa never reached the agent

    await tenant_update(7, enabled=True)  # applies to the next request
    assert (await post(gateway, id_empresa=7)).status_code == 200


async def test_an_empresa_named_in_config_is_the_one_judged(gateway, make_agent, fault_agent):
    make_agent("cita", url=fault_agent.url("/ok"))
    await create_tenant(7, enabled=False)
    body = chat_body(config={"modalidad": "cita", "id_empresa": 7})
    del body["id_empresa"]
    refused = await gateway.post(CHAT, json=body)
    assert refused.status_code == 403
    assert refused.json() == {"detail": messages.EMPRESA_DISABLED}


async def test_an_empresas_own_route_overrides_the_usual_one(gateway, make_agent, fault_agent):
    make_agent("cita", url=fault_agent.url("/ok"))
    make_agent("ventas", url=fault_agent.url("/ok"))
    make_agent("premium", url=fault_agent.url("/ok"), routing_names=[])
    await create_tenant(7, routes={"CITA": "premium"})  # stored trimmed and lower-case
    own = await post(gateway, id_empresa=7, config={"modalidad": " Cita "})
    assert own.status_code == 200 and own.json()["agent_used"] == "premium"
    usual = await post(gateway, id_empresa=8)
    assert usual.json()["agent_used"] == "cita"
    # A modalidad the empresa has no route for takes the usual route.
    assert (await post(gateway, id_empresa=7, config={"modalidad": "ventas"})).json()[
        "agent_used"
    ] == "ventas"


async def test_a_key_bound_to_empresas_acts_for_those_only(gateway, make_agent, fault_agent):
    make_agent("cita", url=fault_agent.url("/ok"), payload_format="flat")
    bound = create_key("empresa-1-only", empresas=[1, 3])
    free = create_key("every-empresa")
    assert (await post(gateway, bound, id_empresa=1)).status_code == 200
    assert (await post(gateway, bound, id_empresa=3)).status_code == 200
    other = await post(gateway, bound, id_empresa=2)
    assert other.status_code == 403
    assert other.json() == {"detail": messages.FORBIDDEN_EMPRESA}
    assert (await post(gateway, free, id_empresa=2)).status_code == 200
    assert fault_agent.attempts() == 3
    # The api_key the empresa sends in the body still reaches the agent untouched.
    await post(gateway, bound, id_empresa=1, api_key="tenant-secret")
    assert fault_agent.last_request().json["api_key"] == "tenant-secret"


async def test_an_empresas_rate_limit_answers_429_in_the_contracts_shape(
    gateway, make_agent, fault_agent
):
    make_agent("cita", url=fault_agent.url("/ok"))
    await create_tenant(7, requests_per_minute=2)
    counted = sample_or_absent(
        (await gateway.get("/metrics")).text, "gateway_requests_total", agent="_none", status="429"
    )  # other tests in this process may have counted some
    answers = [await post(gateway, id_empresa=7) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json() == {"detail": messages.RATE_LIMITED}
    assert int(answers[2].headers["retry-after"]) >= 1
    assert (await post(gateway, id_empresa=8)).status_code == 200  # other empresas unaffected
    scrape = (await gateway.get("/metrics")).text
    assert (
        sample(scrape, "gateway_requests_total", agent="_none", status="429") == (counted or 0) + 1
    )


async def test_an_empresas_max_concurrency_holds_across_agents(gateway, make_agent, fault_agent):
    make_agent("cita", url=fault_agent.url("/slow/0.5"), max_concurrency=10)
    make_agent("ventas", url=fault_agent.url("/slow/0.5"), max_concurrency=10)
    await create_tenant(7, max_concurrency=2)
    answers = await asyncio.gather(
        post(gateway, id_empresa=7),
        post(gateway, id_empresa=7, config={"modalidad": "ventas"}),
        post(gateway, id_empresa=7, config={"modalidad": "ventas"}),
        post(gateway, id_empresa=8),
        post(gateway, id_empresa=8, config={"modalidad": "ventas"}),
    )
    statuses = [a.status_code for a in answers]
    assert sorted(statuses[:3]) == [200, 200, 503]
    assert statuses[3:] == [200, 200]
    busy = next(a for a in answers if a.status_code == 503)
    assert busy.json() == {"detail": messages.SATURATED}
    assert busy.headers["retry-after"] == "1"
    # Its slots come back: the next calls are served.
    assert (await post(gateway, id_empresa=7)).status_code == 200


async def test_a_deleted_tenant_row_stops_applying(gateway, make_agent, fault_agent):
    from agents.models import Tenant

    make_agent("cita", url=fault_agent.url("/ok"))
    await create_tenant(7, enabled=False)
    assert (await post(gateway, id_empresa=7)).status_code == 403
    await saved(lambda: Tenant.objects.filter(id_empresa=7).delete())
    assert (await post(gateway, id_empresa=7)).status_code == 200


async def test_requests_are_counted_per_configured_empresa_and_the_rest_as_other(
    gateway, make_agent, fault_agent
):
    make_agent("cita", url=fault_agent.url("/ok"))
    await create_tenant(7)
    await create_tenant(9, enabled=False)
    name = "gateway_tenant_requests_total"
    before = (await gateway.get("/metrics")).text
    for empresa in (7, 7, 8, 123, 9):
        await post(gateway, id_empresa=empresa)
    after = (await gateway.get("/metrics")).text

    def delta(tenant: str, status: str) -> float:
        return sample(after, name, tenant=tenant, status=status) - (
            sample_or_absent(before, name, tenant=tenant, status=status) or 0
        )

    assert delta("7", "200") == 2
    assert delta("_other", "200") == 2  # 8 and 123 have no tenant row: one bounded label
    assert delta("9", "403") == 1
    for unconfigured in ("8", "123"):
        assert sample_or_absent(after, name, tenant=unconfigured, status="200") is None


async def test_an_empresa_is_counted_under_its_own_label_from_the_moment_its_row_exists(
    gateway, make_agent, fault_agent
):
    """The answers' metric children are kept per (agent, status, tenant label): a tenant row
    created between two calls moves the next call's count from `_other` to its id."""
    from agents.models import Tenant

    make_agent("cita", url=fault_agent.url("/ok"))
    name = "gateway_tenant_requests_total"

    async def counts() -> tuple[float, float]:
        text = (await gateway.get("/metrics")).text
        return (
            sample_or_absent(text, name, tenant="_other", status="200") or 0,
            sample_or_absent(text, name, tenant="11", status="200") or 0,
        )

    start = await counts()
    assert (await post(gateway, id_empresa=11)).status_code == 200
    await create_tenant(11)
    assert (await post(gateway, id_empresa=11)).status_code == 200
    await saved(lambda: Tenant.objects.filter(id_empresa=11).delete())
    assert (await post(gateway, id_empresa=11)).status_code == 200
    end = await counts()
    assert (end[0] - start[0], end[1] - start[1]) == (2, 1)


async def test_tenant_edits_and_a_delete_under_traffic_lose_no_call_and_keep_the_count(
    gateway, make_agent, fault_agent
):
    """The moving world: a tenant's cap lowered, then its row deleted, while its calls are in
    flight. Calls already running finish with the agent's reply; the count of calls in flight
    survives the rebuild (a lowered cap refuses the next call at once), and nothing is a 500."""
    from agents.models import Tenant

    make_agent("cita", url=fault_agent.url("/slow/1.5"), max_concurrency=10)
    await create_tenant(7, max_concurrency=3)
    running = [asyncio.create_task(post(gateway, id_empresa=7)) for _ in range(2)]
    assert await fault_agent.until(lambda a: a.attempts() == 2, timeout=2)

    await tenant_update(7, max_concurrency=2)  # both slots of the new cap are taken
    refused = await post(gateway, id_empresa=7)
    assert refused.status_code == 503 and refused.json() == {"detail": messages.SATURATED}

    await saved(lambda: Tenant.objects.filter(id_empresa=7).delete())
    free = await post(gateway, id_empresa=7)  # no row: no cap of its own any more
    assert free.status_code == 200
    answers = await asyncio.gather(*running)
    assert [a.status_code for a in answers] == [200, 200]
    assert all("x-gateway-fallback" not in a.headers for a in answers)
    assert registry.snapshot.agents["cita"].limiter.inflight == 0


async def test_an_empresas_cap_on_one_agent_leaves_its_other_agents_and_empresas_alone(
    gateway, make_agent, fault_agent
):
    make_agent("cita", url=fault_agent.url("/slow/0.5"), max_concurrency=10)
    make_agent("ventas", url=fault_agent.url("/slow/0.5"), max_concurrency=10)
    await create_tenant(7, agent_limits={"cita": 1})
    answers = await asyncio.gather(
        post(gateway, id_empresa=7),
        post(gateway, id_empresa=7),
        post(gateway, id_empresa=7, config={"modalidad": "ventas"}),
        post(gateway, id_empresa=7, config={"modalidad": "ventas"}),
        post(gateway, id_empresa=8),
    )
    statuses = [a.status_code for a in answers]
    assert sorted(statuses[:2]) == [200, 503]  # one call at a time to cita for empresa 7
    assert statuses[2:] == [200, 200, 200]  # its other agent, and other empresas: unaffected
    busy = next(a for a in answers if a.status_code == 503)
    assert busy.json() == {"detail": messages.SATURATED}
    assert (await post(gateway, id_empresa=7)).status_code == 200  # the slot came back
