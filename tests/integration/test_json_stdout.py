"""Every line the server writes is a JSON object, including Python warnings raised while the
application is built (whitenoise's "No directory at: ..." when `collectstatic` never ran and
DEBUG is off): log collectors parse stdout line by line."""

import json

import httpx

from tests.conftest import chat_body


def test_every_line_of_a_production_start_is_json(live_db, fault_agent, gateway_process, tmp_path):
    live_db.python(
        "from agents.models import Agent, RoutingName\n"
        f"a = Agent.objects.create(key='cita', name='Cita', url={fault_agent.url('/ok')!r})\n"
        "RoutingName.objects.create(agent=a, name='cita')\n"
    )
    missing = tmp_path / "never-collected"  # a checkout where collectstatic never ran
    production = {
        "DEBUG": "0",
        "SECRET_KEY": "json-stdout-test",
        "ALLOWED_HOSTS": "127.0.0.1",
        "STATIC_ROOT": str(missing),
        "GATEWAY_API_KEY": "k-json-stdout",
    }
    gateway = gateway_process(env=production)
    headers = {"X-API-Key": "k-json-stdout"}
    assert httpx.get(f"{gateway.url}/", timeout=5).status_code == 200
    assert httpx.get(f"{gateway.url}/health", timeout=5).status_code == 200
    chat = httpx.post(f"{gateway.url}/api/agent/chat", json=chat_body(), headers=headers, timeout=5)
    assert chat.status_code == 200
    assert gateway.stop() == 0

    lines = [line for line in gateway.logs().splitlines() if line.strip()]
    assert lines
    not_json = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            not_json.append(line)
        else:
            if not isinstance(entry, dict):
                not_json.append(line)
    assert not not_json, "\n".join(not_json)
    warned = [json.loads(line) for line in lines if "No directory at" in line]
    assert warned and warned[0]["logger"] == "py.warnings", lines  # the warning still reaches us
