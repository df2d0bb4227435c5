"""`manage.py check_agents`: table, --json, --chat, and its three exit codes."""

import json
import subprocess
import sys
import time

import httpx

from tests.conftest import ROOT, chat_body


def setup_agents(live_db, fault_agent) -> None:
    ok, hang, chat_fails = (
        fault_agent.url("/ok"), fault_agent.url("/hang"), fault_agent.url("/status/500"),
    )  # fmt: skip
    live_db.python(
        "from agents.models import Agent, RoutingName\n"
        f"a = Agent.objects.create(key='cita', name='Cita', url='{ok}')\n"
        "RoutingName.objects.create(agent=a, name='cita')\n"
        "RoutingName.objects.create(agent=a, name='citas')\n"
        f"Agent.objects.create(key='apagado', name='Off', url='{hang}', enabled=False)\n"
        f"Agent.objects.create(key='lento', name='Lento', url='{ok}', health_url='{hang}')\n"
        f"Agent.objects.create(key='roto', name='Roto', url='{chat_fails}')\n"
    )


def check(live_db, *args: str):
    return live_db.manage("check_agents", *args, check=False)


def test_all_enabled_agents_healthy_exits_0_with_a_table(live_db, fault_agent):
    setup_agents(live_db, fault_agent)
    result = check(live_db, "--agent", "cita", "--agent", "apagado")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["KEY", "ENABLED", "URL", "STATUS", "LATENCY", "MS", "ROUTING",
                                "NAMES"]  # fmt: skip
    assert lines[1].split()[:2] == ["apagado", "no"] and "disabled" in lines[1]
    assert lines[2].split()[:2] == ["cita", "yes"] and " ok " in lines[2]
    assert lines[2].rstrip().endswith("cita, citas")


def test_a_hanging_agent_exits_1_within_the_timeout(live_db, fault_agent):
    setup_agents(live_db, fault_agent)
    started = time.monotonic()
    result = check(live_db, "--json", "--timeout", "1")
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    statuses = {row["key"]: row["status"] for row in report["agents"]}
    assert statuses == {"apagado": "disabled", "cita": "ok", "lento": "unreachable", "roto": "ok"}
    assert report["healthy"] is False
    lento = next(row for row in report["agents"] if row["key"] == "lento")
    assert lento["latency_ms"] >= 900
    assert elapsed < 1 + 6  # the checks themselves take ~1 s; the rest is Django start-up


def test_chat_sends_a_sample_message_and_validates_the_reply(live_db, fault_agent):
    setup_agents(live_db, fault_agent)
    ok = check(live_db, "--agent", "cita", "--chat", "--json")
    assert ok.returncode == 0, ok.stderr
    chat = json.loads(ok.stdout)["agents"][0]["chat"]
    assert chat["ok"] is True and chat["reply"] == "echo: Mensaje de prueba del gateway"
    sent = fault_agent.last_request()
    assert sent.json["context"]["config"]["modalidad"] == "prueba"
    # Marked as synthetic, so agents can keep it out of their memory and statistics.
    assert sent.headers["x-gateway-synthetic"] == "1"
    assert sent.json["session_id"] == 999_999_999

    broken = check(live_db, "--agent", "roto", "--chat", "--json")
    assert broken.returncode == 1
    row = json.loads(broken.stdout)["agents"][0]
    assert row["status"] == "ok" and row["chat"]["ok"] is False
    assert row["chat"]["error"].startswith("bad_status")


def test_configuration_problems_exit_2(live_db, fault_agent):
    empty = check(live_db)
    assert empty.returncode == 2 and "no agents configured" in empty.stderr
    setup_agents(live_db, fault_agent)
    unknown = check(live_db, "--agent", "nope")
    assert unknown.returncode == 2 and "unknown agent(s): nope" in unknown.stderr
    bad_timeout = check(live_db, "--timeout", "0")
    assert bad_timeout.returncode == 2


def test_results_are_recorded_as_the_last_health_check(live_db, fault_agent):
    setup_agents(live_db, fault_agent)
    check(live_db, "--agent", "cita")
    out = live_db.python(
        "from agents.models import HealthResult\n"
        "print([(h.agent.key, h.status) for h in HealthResult.objects.all()])"
    )
    assert out.strip() == "[('cita', 'ok')]"


def test_an_unreachable_database_exits_2(live_db, tmp_path):
    env = {**live_db.env, "DATABASE_URL": f"sqlite:///{tmp_path}/missing/dir/gateway.sqlite3"}
    result = subprocess.run([sys.executable, "manage.py", "check_agents"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2 and "database unreachable" in result.stderr


def test_an_open_breaker_in_a_serving_worker_and_a_missing_url(
    live_db, gateway_process, fault_agent
):
    live_db.python(
        "from agents.models import Agent, RoutingName\n"
        f"a = Agent.objects.create(key='roto', name='Roto', url='{fault_agent.url('/status/500')}',"
        " breaker_fail_max=1, retries=0)\n"
        "RoutingName.objects.create(agent=a, name='roto')\n"
        "Agent.objects.create(key='sin_url', name='Sin URL', url='')"
    )
    gateway = gateway_process()
    body = chat_body(config={"modalidad": "roto"})
    response = httpx.post(f"{gateway.url}/api/agent/chat", json=body, timeout=10)
    assert response.headers["X-Gateway-Fallback"] == "bad_status"  # the breaker is open now

    deadline = time.monotonic() + 15  # the worker publishes its breakers every 2 s
    while True:
        probes_before = fault_agent.attempts("/health")
        result = check(live_db, "--json")
        statuses = {row["key"]: row["status"] for row in json.loads(result.stdout)["agents"]}
        if statuses["roto"] == "circuit_open" or time.monotonic() > deadline:
            break
    assert result.returncode == 1
    assert statuses == {"roto": "circuit_open", "sin_url": "no_url"}
    # The check that saw the breaker open probed neither agent (earlier ones, before the worker
    # had published its breaker, did probe `roto`).
    assert fault_agent.attempts("/health") == probes_before
