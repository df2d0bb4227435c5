"""Serving processes publish their agents' state for the admin; the admin's breaker reset
reaches every one of them."""

import json
import time

import httpx

from tests.conftest import chat_body

CHAT = "/api/agent/chat"

FLEET = """
import json
from fleet.worker_state import fleet_status
print(json.dumps({k: {"breakers": v.breakers, "inflight": v.inflight, "requests": v.requests_5m,
                      "fallbacks": v.fallbacks_5m} for k, v in fleet_status().items()}))
"""


def fleet(live_db) -> dict:
    return json.loads(live_db.python(FLEET).strip().splitlines()[-1])


def wait_for_fleet(live_db, predicate, timeout: float = 8.0) -> dict:
    deadline = time.monotonic() + timeout
    view = fleet(live_db)
    while not predicate(view) and time.monotonic() < deadline:
        time.sleep(0.2)
        view = fleet(live_db)
    assert predicate(view), view
    return view


def test_workers_publish_state_and_a_breaker_reset_reaches_all(
    live_db, gateway_process, fault_agent
):
    live_db.python(
        "from agents.models import Agent, RoutingName\n"
        f"a = Agent.objects.create(key='cita', name='Cita', url='{fault_agent.url('/status/500')}',"
        " breaker_fail_max=1, breaker_reset_s=3600)\n"
        "RoutingName.objects.create(agent=a, name='cita')"
    )
    workers = [gateway_process() for _ in range(2)]
    for worker in workers:
        response = httpx.post(f"{worker.url}{CHAT}", json=chat_body(), timeout=10)
        assert response.headers["x-gateway-fallback"] == "bad_status"
    view = wait_for_fleet(
        live_db,
        lambda v: "cita" in v and sorted(v["cita"]["breakers"].values()) == ["open", "open"],
    )
    assert view["cita"]["requests"] == 2 and view["cita"]["fallbacks"] == 2
    assert view["cita"]["inflight"] == 0

    attempts = fault_agent.attempts()
    for worker in workers:  # open: no call reaches the agent
        response = httpx.post(f"{worker.url}{CHAT}", json=chat_body(), timeout=10)
        assert response.headers["x-gateway-fallback"] == "circuit_open"
    assert fault_agent.attempts() == attempts

    live_db.python("from agents.services import breaker_reset_request\n"
                   "breaker_reset_request(keys=['cita'])")  # fmt: skip
    wait_for_fleet(
        live_db, lambda v: sorted(v["cita"]["breakers"].values()) == ["closed", "closed"]
    )
    for worker in workers:
        response = httpx.post(f"{worker.url}{CHAT}", json=chat_body(), timeout=10)
        assert response.headers["x-gateway-fallback"] == "bad_status"  # called again
    assert fault_agent.attempts() == attempts + 2

    workers[0].stop()
    wait_for_fleet(live_db, lambda v: len(v["cita"]["breakers"]) == 1)


def test_health_shows_a_breaker_open_in_another_worker(live_db, gateway_process, fault_agent):
    live_db.python(
        "from agents.models import Agent, RoutingName\n"
        f"a = Agent.objects.create(key='cita', name='Cita', url='{fault_agent.url('/status/500')}',"
        " breaker_fail_max=1, breaker_reset_s=3600)\n"
        "RoutingName.objects.create(agent=a, name='cita')"
    )
    tripped, other = gateway_process(), gateway_process()
    response = httpx.post(f"{tripped.url}{CHAT}", json=chat_body(), timeout=10)
    assert response.headers["x-gateway-fallback"] == "bad_status"  # open in `tripped` only

    deadline = time.monotonic() + 8  # each worker publishes, and reads the others, every 2 s
    while (health := httpx.get(f"{other.url}/health", timeout=5)).json()["agents"][
        "cita"
    ] != "circuit_open" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert health.status_code == 503
    assert health.json()["agents"] == {"cita": "circuit_open"}
    assert fault_agent.attempts("/status/500") == 1  # `other` never called the agent


TENANTS = """
import json
from fleet.worker_state import fleet_tenants_status
print(json.dumps({k: {"inflight": v.inflight, "limit": v.limit, "requests": v.requests_5m,
                      "fallbacks": v.fallbacks_5m} for k, v in fleet_tenants_status().items()}))
"""


def test_workers_publish_each_tenants_traffic_and_calls_in_flight(
    live_db, gateway_process, fault_agent
):
    live_db.python(
        "from agents.models import Agent, RoutingName, Tenant\n"
        f"a = Agent.objects.create(key='cita', name='Cita', url='{fault_agent.url('/slow/3')}',"
        " timeout_s=1)\n"
        "RoutingName.objects.create(agent=a, name='cita')\n"
        "Tenant.objects.create(id_empresa=7, name='Siete', max_concurrency=5)\n"
        "Tenant.objects.create(id_empresa=9, name='Nueve', max_concurrency=5)"
    )
    worker = gateway_process()
    for empresa in (7, 7, 8):  # each times out after 1 s: a fallback
        response = httpx.post(f"{worker.url}{CHAT}", json=chat_body(id_empresa=empresa), timeout=10)
        assert response.headers["x-gateway-fallback"] == "timeout"

    def tenants() -> dict:
        return json.loads(live_db.python(TENANTS).strip().splitlines()[-1])

    deadline = time.monotonic() + 8
    view = tenants()
    while view.get("7", {}).get("requests") != 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        view = tenants()
    # Only an empresa with a tenant row and traffic is published (8 has no row, 9 no traffic:
    # a worker with 1,000 tenant rows publishes the few that are active), with its own cap.
    assert view == {"7": {"inflight": 0, "limit": 5, "requests": 2, "fallbacks": 2}}
