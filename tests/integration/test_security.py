"""Edge security: admin-managed API keys, per-caller rate limits, CORS."""

import asyncio
import time

import httpx
import pytest

from chat import messages
from tests.conftest import chat_body, in_thread, retry_after_at, start_inside_one_limit_window

CHAT = "/api/agent/chat"


def create_key(name: str, agents: tuple = (), **fields) -> str:
    """An ApiKey row (committed); returns the plain key, as the admin shows it once."""
    from access.services import api_key_create

    def create() -> str:
        api_key, plain = api_key_create(name=name, **fields)
        if agents:
            api_key.allowed_agents.set(agents)
        return plain

    return in_thread(create)


async def post(gateway, key: str | None = None, **body):
    headers = {"X-API-Key": key} if key else {}
    return await gateway.post(CHAT, json=chat_body(**body), headers=headers)


class TestApiKeys:
    async def test_admin_key_is_accepted_and_stored_only_as_a_hash(
        self, gateway, make_agent, fault_agent
    ):
        from access.models import ApiKey

        make_agent("cita", url=fault_agent.url("/ok"))
        plain = create_key("n8n-prod")
        assert plain.startswith("gk_") and len(plain) >= 40
        row = in_thread(lambda: ApiKey.objects.get(name="n8n-prod"))
        assert plain not in (row.key_hash, row.prefix) and plain.startswith(row.prefix)

        assert (await post(gateway, plain)).status_code == 200
        assert (await post(gateway)).status_code == 401  # keys exist: auth is on
        assert (await post(gateway, plain + "x")).status_code == 401
        bearer = await gateway.post(
            CHAT, json=chat_body(), headers={"Authorization": f"Bearer {plain}"}
        )
        assert bearer.status_code == 200

    async def test_env_keys_and_admin_keys_work_together(
        self, gateway, settings, make_agent, fault_agent
    ):
        settings.GATEWAY_API_KEYS = ["env-secret"]
        make_agent("cita", url=fault_agent.url("/ok"))
        plain = create_key("n8n-staging")
        assert (await post(gateway, "env-secret")).status_code == 200
        assert (await post(gateway, plain)).status_code == 200
        assert (await post(gateway, "other")).status_code == 401

    async def test_a_key_not_allowed_for_the_routed_agent_gets_403(
        self, gateway, make_agent, fault_agent
    ):
        cita = make_agent("cita", url=fault_agent.url("/ok"))
        make_agent("venta", url=fault_agent.url("/ok"))
        plain = create_key("citas-only", agents=(cita,))
        assert (await post(gateway, plain)).status_code == 200
        response = await post(gateway, plain, config={"modalidad": "venta"})
        assert response.status_code == 403
        assert response.json() == {"detail": messages.FORBIDDEN_AGENT}
        assert fault_agent.attempts() == 1

    async def test_deleting_its_only_agent_disables_a_key_instead_of_widening_it(
        self, gateway, make_agent, fault_agent
    ):
        from access.models import ApiKey
        from agents.models import Agent

        cita = make_agent("cita", url=fault_agent.url("/ok"))
        venta = make_agent("venta", url=fault_agent.url("/ok"))
        make_agent("reserva", url=fault_agent.url("/ok"))
        only_cita = create_key("citas-only", agents=(cita,))
        cita_and_venta = create_key("citas-ventas", agents=(cita, venta))
        in_thread(lambda: Agent.objects.get(key="cita").delete())

        keys = in_thread(lambda: {k.name: (k.enabled, sorted(a.key for a in k.allowed_agents.all()))
                                  for k in ApiKey.objects.all()})  # fmt: skip
        assert keys == {"citas-only": (False, []), "citas-ventas": (True, ["venta"])}
        deadline = time.monotonic() + 2  # the key store follows the database
        while (await post(gateway, only_cita, config={"modalidad": "reserva"})).status_code != 401:
            assert time.monotonic() < deadline, "a key left with no agent reached another agent"
        forbidden = await post(gateway, cita_and_venta, config={"modalidad": "reserva"})
        assert forbidden.status_code == 403
        allowed = await post(gateway, cita_and_venta, config={"modalidad": "venta"})
        assert allowed.status_code == 200

    async def test_revoking_the_last_key_keeps_auth_on(self, gateway, make_agent, fault_agent):
        from access.models import ApiKey

        make_agent("cita", url=fault_agent.url("/ok"))
        plain = create_key("soon-revoked")
        assert (await post(gateway, plain)).status_code == 200
        in_thread(lambda: _revoke(ApiKey.objects.get(name="soon-revoked")))
        deadline = time.monotonic() + 2
        while (await post(gateway, plain)).status_code != 401:
            assert time.monotonic() < deadline, "revoked key still accepted after 2 s"
        assert (await post(gateway)).status_code == 401

    async def test_use_is_written_back_by_the_poller(self, gateway, make_agent, fault_agent):
        from access.models import ApiKey

        make_agent("cita", url=fault_agent.url("/ok"))
        plain = create_key("busy")
        for _ in range(20):
            assert (await post(gateway, plain)).status_code == 200
        deadline = time.monotonic() + 2
        while in_thread(lambda: ApiKey.objects.get(name="busy").last_used_at) is None:
            assert time.monotonic() < deadline, "last_used_at not written within 2 s"
            await asyncio.sleep(0.05)


def _revoke(api_key) -> None:
    api_key.enabled = False
    api_key.save()


def test_a_revoked_key_stops_working_in_every_worker_within_2s(live_db, gateway_process):
    plain = live_db.python(
        "from access.services import api_key_create\nprint(api_key_create(name='shared')[1])"
    ).strip()
    workers = [gateway_process(env={"REGISTRY_POLL_INTERVAL_S": "1.0"}) for _ in range(2)]
    headers = {"X-API-Key": plain}
    for worker in workers:
        response = httpx.post(f"{worker.url}{CHAT}", json=chat_body(), headers=headers, timeout=5)
        assert response.status_code == 400  # authenticated; no agent routes "cita" here

    revoked_at = float(
        live_db.python(
            "import time\nfrom access.models import ApiKey\n"
            "k = ApiKey.objects.get(name='shared'); k.enabled = False; k.save()\n"
            "print(time.time())"
        ).strip()
    )
    for worker in workers:
        while True:
            response = httpx.post(
                f"{worker.url}{CHAT}", json=chat_body(), headers=headers, timeout=5
            )
            if response.status_code == 401 or time.time() - revoked_at > 3:
                break
            time.sleep(0.02)
        assert response.status_code == 401
        assert time.time() - revoked_at < 2.0


class TestRateLimits:
    async def test_a_spent_budget_gets_429_with_retry_after(self, gateway, make_agent, fault_agent):
        make_agent("cita", url=fault_agent.url("/ok"))
        limited = create_key("limited", requests_per_minute=3)
        other = create_key("other", requests_per_minute=3)
        start_inside_one_limit_window(seconds_needed=5)
        for _ in range(3):
            assert (await post(gateway, limited)).status_code == 200
        before = time.time()
        refused = await post(gateway, limited)
        assert refused.status_code == 429
        assert refused.json() == {"detail": messages.RATE_LIMITED}
        expected = {retry_after_at(before), retry_after_at(time.time())}
        assert int(refused.headers["retry-after"]) in expected
        assert fault_agent.attempts() == 3
        assert (await post(gateway, other)).status_code == 200  # budgets are per key

    async def test_without_auth_the_budget_is_per_client_ip(
        self, gateway, settings, make_agent, fault_agent
    ):
        settings.RATE_LIMIT_PER_MINUTE = 2
        make_agent("cita", url=fault_agent.url("/ok"))
        statuses = [(await post(gateway)).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]

    async def test_zero_turns_limiting_off(self, gateway, settings, make_agent, fault_agent):
        settings.RATE_LIMIT_PER_MINUTE = 0
        make_agent("cita", url=fault_agent.url("/ok"))
        for _ in range(30):
            assert (await post(gateway)).status_code == 200

    async def test_an_unreachable_shared_store_allows_requests(
        self, gateway, settings, make_agent, fault_agent
    ):
        settings.RATE_LIMIT_PER_MINUTE = 1
        settings.RATE_LIMIT_STORAGE_URI = "async+redis://127.0.0.1:9/0"  # nothing listens
        make_agent("cita", url=fault_agent.url("/ok"))
        for _ in range(3):
            assert (await post(gateway)).status_code == 200


class TestCors:
    PREFLIGHT = {
        "Origin": "https://app.example.com",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-api-key, x-request-id",
    }

    async def test_star_allows_any_origin_and_never_sends_credentials(
        self, gateway, settings, make_agent, fault_agent
    ):
        settings.CORS_ALLOW_ALL_ORIGINS = True
        settings.CORS_ALLOW_CREDENTIALS = False
        make_agent("cita", url=fault_agent.url("/ok"))
        preflight = await gateway.options(CHAT, headers=self.PREFLIGHT)
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in preflight.headers
        allowed = preflight.headers["access-control-allow-headers"].lower()
        for header in ("content-type", "accept", "x-request-id", "x-api-key", "authorization"):
            assert header in allowed
        assert fault_agent.attempts() == 0

        simple = await gateway.post(
            CHAT, json=chat_body(), headers={"Origin": "https://any.example.org"}
        )
        assert simple.headers["access-control-allow-origin"] == "*"
        assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
        assert "access-control-allow-credentials" not in simple.headers

    @pytest.mark.parametrize("credentials", [False, True])
    async def test_an_origin_list_allows_only_those_origins(
        self, gateway, settings, make_agent, fault_agent, credentials
    ):
        settings.CORS_ALLOW_ALL_ORIGINS = False
        settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
        settings.CORS_ALLOW_CREDENTIALS = credentials
        make_agent("cita", url=fault_agent.url("/ok"))
        allowed = await gateway.options(CHAT, headers=self.PREFLIGHT)
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
        assert ("access-control-allow-credentials" in allowed.headers) is credentials

        other = await gateway.options(
            CHAT, headers={**self.PREFLIGHT, "Origin": "https://evil.example.net"}
        )
        assert "access-control-allow-origin" not in other.headers
        simple = await gateway.post(
            CHAT, json=chat_body(), headers={"Origin": "https://evil.example.net"}
        )
        assert simple.status_code == 200
        assert "access-control-allow-origin" not in simple.headers

    def test_star_in_the_environment_never_enables_credentials(self):
        import os
        import subprocess
        import sys

        from tests.conftest import ROOT

        env = {**os.environ, "DEBUG": "1", "CORS_ALLOWED_ORIGINS": "*",
               "CORS_ALLOW_CREDENTIALS": "1"}  # fmt: skip
        env.pop("DJANGO_SETTINGS_MODULE", None)
        code = (
            "from django.conf import settings; "
            "print(settings.CORS_ALLOW_ALL_ORIGINS, settings.CORS_ALLOW_CREDENTIALS)"
        )
        result = subprocess.run(
            [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.stdout.strip() == "True False", result.stderr


def test_no_key_reaches_the_logs(live_db, gateway_process, fault_agent):
    """Every configured key, a presented wrong key and the tenant api_key: never in any line,
    at DEBUG, across answered, refused, failed and invalid requests."""
    admin_key = live_db.python(
        "from agents.models import Agent, RoutingName\n"
        "from access.services import api_key_create\n"
        f"a = Agent.objects.create(key='cita', name='Cita', url='{fault_agent.url('/ok')}')\n"
        "RoutingName.objects.create(agent=a, name='cita')\n"
        f"b = Agent.objects.create(key='venta', name='V', url='{fault_agent.url('/status/500')}')\n"
        "RoutingName.objects.create(agent=b, name='venta')\n"
        "print(api_key_create(name='n8n')[1])"
    ).strip()
    env_key = "env-key-Zq81-never-logged"
    tenant_key = "tenant-secret-Kd02-never-logged"
    wrong_key = "wrong-key-Pw77-never-logged"
    gateway = gateway_process(env={"GATEWAY_API_KEY": env_key, "LOG_LEVEL": "DEBUG"})
    url = f"{gateway.url}{CHAT}"
    for headers, body in [
        ({"X-API-Key": admin_key}, chat_body(api_key=tenant_key)),
        ({"Authorization": f"Bearer {env_key}"}, chat_body(api_key=tenant_key)),
        ({"X-API-Key": env_key}, chat_body(api_key=tenant_key, config={"modalidad": "venta"})),
        ({"X-API-Key": admin_key}, chat_body(api_key=tenant_key, session_id="x")),
        ({"X-API-Key": wrong_key}, chat_body(api_key=tenant_key)),
        ({}, chat_body(api_key=tenant_key)),
    ]:
        httpx.post(url, json=body, headers=headers, timeout=10)
    httpx.post(f"{url}?api_key={env_key}", json=chat_body(), timeout=10)
    logs = gateway.stop() == 0 and gateway.logs()
    assert logs and '"status":200' in logs and '"status":401' in logs
    for secret in (admin_key, env_key, tenant_key, wrong_key):
        assert secret not in logs
