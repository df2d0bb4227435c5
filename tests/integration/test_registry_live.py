"""Admin changes reach the serving registry without a restart: in the saving process at once,
in every other worker process within 2 s; breakers and in-flight calls survive the swap."""

import asyncio
import json
import time
from typing import Any

import httpx

from chat import messages
from tests.conftest import chat_body, in_thread

CHAT = "/api/agent/chat"


async def eventually(check: Any, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.02)
    return bool(await check())


async def routed_to(gateway: httpx.AsyncClient, modalidad: str, agent: str) -> bool:
    response = await gateway.post(CHAT, json=chat_body(config={"modalidad": modalidad}))
    return (
        response.status_code == 200
        and response.json()["agent_used"] == agent
        and "x-gateway-fallback" not in response.headers
    )


async def test_routing_name_edits_take_effect_without_restart(gateway, make_agent, fault_agent):
    from agents.models import RoutingName

    cita = make_agent("cita", url=fault_agent.url("/ok"), routing_names=["cita"])
    assert await routed_to(gateway, "Cita", "cita")

    in_thread(lambda: RoutingName.objects.create(agent=cita, name="  Agenda "))
    assert await eventually(lambda: routed_to(gateway, " AGENDA ", "cita"))

    in_thread(lambda: RoutingName.objects.filter(name="cita").delete())

    async def unrouted() -> bool:
        response = await gateway.post(CHAT, json=chat_body(config={"modalidad": "cita"}))
        return response.json() == {"detail": messages.UNKNOWN_MODALIDAD.format("cita")}

    assert await eventually(unrouted)


async def test_disabling_an_agent_takes_effect_without_restart(gateway, make_agent, fault_agent):
    cita = make_agent("cita", url=fault_agent.url("/ok"))
    assert await routed_to(gateway, "cita", "cita")
    cita.enabled = False
    in_thread(cita.save)

    async def disabled() -> bool:
        response = await gateway.post(CHAT, json=chat_body())
        return response.headers.get("x-gateway-fallback") == "disabled"

    assert await eventually(disabled)
    attempts = fault_agent.attempts()
    assert await disabled()
    assert fault_agent.attempts() == attempts


async def test_breaker_state_survives_a_save_that_keeps_the_url(gateway, make_agent, fault_agent):
    from runtime.registry import registry

    agent = make_agent(
        "cita", url=fault_agent.url("/status/500"), breaker_fail_max=2, breaker_reset_s=60
    )
    for _ in range(2):
        assert (await gateway.post(CHAT, json=chat_body())).headers["x-gateway-fallback"]
    assert registry.snapshot.agents["cita"].breaker.state == "open"

    agent.name = "Citas (renamed)"
    agent.timeout_s = 7
    in_thread(agent.save)
    assert await eventually(
        lambda: asyncio.sleep(0, registry.snapshot.agents["cita"].spec.timeout_s == 7)
    )
    assert registry.snapshot.agents["cita"].breaker.state == "open"
    attempts = fault_agent.attempts()
    response = await gateway.post(CHAT, json=chat_body())
    assert response.headers["x-gateway-fallback"] == "circuit_open"
    assert fault_agent.attempts() == attempts

    agent.url = fault_agent.url("/ok")
    in_thread(agent.save)
    assert await eventually(lambda: routed_to(gateway, "cita", "cita"))
    assert registry.snapshot.agents["cita"].breaker.state == "closed"


async def test_a_replaced_client_finishes_its_in_flight_call(gateway, make_agent, fault_agent):
    from runtime.registry import registry

    agent = make_agent("cita", url=fault_agent.url("/slow/0.8"), timeout_s=5)
    in_flight = asyncio.create_task(gateway.post(CHAT, json=chat_body()))
    assert await fault_agent.until(lambda a: a.attempts() == 1)
    old_client = registry.snapshot.agents["cita"].client

    agent.connect_timeout_s = 2  # a transport setting: the agent gets a new client
    in_thread(agent.save)
    assert await eventually(
        lambda: asyncio.sleep(0, registry.snapshot.agents["cita"].client is not old_client)
    )

    response = await in_flight
    assert response.status_code == 200
    assert response.json()["reply"] == "echo: Quiero agendar una cita"
    assert "x-gateway-fallback" not in response.headers


# -- across processes ----------------------------------------------------------------------------

_SAVE_AND_STAMP = """
import time
from agents.models import Agent, RoutingName
RoutingName.objects.create(agent=Agent.objects.get(key="cita"), name="agenda")
print(time.time())
"""


def test_a_change_saved_in_one_process_reaches_other_workers_within_2s(
    live_db, gateway_process, fault_agent
):
    live_db.python(
        "from agents.models import Agent, RoutingName; "
        f"a = Agent.objects.create(key='cita', name='Cita', url='{fault_agent.url('/ok')}'); "
        "RoutingName.objects.create(agent=a, name='cita')"
    )
    # The production poll interval, not the tests' faster one.
    workers = [gateway_process(env={"REGISTRY_POLL_INTERVAL_S": "1.0"}) for _ in range(2)]
    body = chat_body(config={"modalidad": "agenda"})
    for worker in workers:
        response = httpx.post(f"{worker.url}{CHAT}", json=body, timeout=5)
        assert response.status_code == 400

    saved_at = float(live_db.python(_SAVE_AND_STAMP).strip())

    for worker in workers:
        while True:
            response = httpx.post(f"{worker.url}{CHAT}", json=body, timeout=5)
            if response.status_code == 200 or time.time() - saved_at > 3:
                break
            time.sleep(0.02)
        assert response.status_code == 200, response.text
        assert json.loads(response.text)["agent_used"] == "cita"
        assert time.time() - saved_at < 2.0
