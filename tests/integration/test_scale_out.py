"""Scale-out: two gateway processes on one PostgreSQL and one Redis behave as one gateway.

Real servers on 127.0.0.1 (tests/servers.py): changes made through one gateway's admin are
served by the other within 1 s through Redis, and within 2 s by polling when Redis is down;
rate limits are shared; a Redis or PostgreSQL outage keeps chat working, and the database
coming back is picked up without a restart.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import httpx
import pytest

from tests.conftest import (
    ROOT,
    GatewayProcess,
    LiveDatabase,
    chat_body,
    start_inside_one_limit_window,
)
from tests.fault_agent import FaultAgent
from tests.servers import PostgresServer, RedisServer

pytestmark = pytest.mark.integration

CHAT = "/api/agent/chat"
ADMIN_PASSWORD = "scale-out-admin-password"
TEMPLATE = "gateway_template"


def _env(database_url: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DEBUG": "0",
        "SECRET_KEY": "scale-out-secret",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SESSION_COOKIE_SECURE": "0",  # the test's admin session is plain HTTP
        "CSRF_COOKIE_SECURE": "0",
        "LOG_LEVEL": "INFO",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the session, with a migrated template database."""
    server = PostgresServer().init()
    server.start()
    server.create_database(TEMPLATE)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "--verbosity", "0"],
        cwd=ROOT, env=_env(server.url(TEMPLATE)), check=True, timeout=120,
    )  # fmt: skip
    yield server
    server.destroy()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.destroy()


@pytest.fixture
def live_db(
    postgres: PostgresServer, redis_server: RedisServer, fault_agent: FaultAgent
) -> LiveDatabase:
    """Overrides conftest's SQLite `live_db` (so `gateway_process` serves from it): a fresh
    PostgreSQL database copied from the template, Redis for every process, management commands
    included, and the `cita` agent answering through fault_agent."""
    if not postgres.running:
        postgres.start()
    name = f"gw_{uuid.uuid4().hex[:10]}"
    postgres.create_database(name, template=TEMPLATE)
    db = LiveDatabase(env={**_env(postgres.url(name)), "REDIS_URL": redis_server.url})
    db.python(
        "from agents.models import Agent\n"
        f"Agent.objects.filter(key='cita').update(url='{fault_agent.url('/ok')}')\n"
        "from django.contrib.auth.models import User\n"
        f"User.objects.create_superuser('admin', 'admin@example.com', '{ADMIN_PASSWORD}')"
    )
    return db


def two_gateways(gateway_process: Callable[..., GatewayProcess], **env: str) -> tuple[
    GatewayProcess, GatewayProcess
]:  # fmt: skip
    return gateway_process(env=env), gateway_process(env=env)


class AdminSession:
    """The Django admin driven over HTTP like a browser: log in, run a list action."""

    def __init__(self, gateway: GatewayProcess) -> None:
        self.base = gateway.url
        self.http = httpx.Client(base_url=gateway.url, timeout=10)
        self.http.get("/admin/login/")
        response = self.http.post("/admin/login/", data={
            "username": "admin", "password": ADMIN_PASSWORD, "next": "/admin/",
            "csrfmiddlewaretoken": self.http.cookies["csrftoken"],
        })  # fmt: skip
        assert response.status_code == 302, response.text[:500]

    def run_action(self, model: str, action: str, ids: list[int]) -> None:
        changelist = f"/admin/{model}/"
        self.http.get(changelist)
        response = self.http.post(changelist, data={
            "action": action, "_selected_action": [str(i) for i in ids], "index": "0",
            "csrfmiddlewaretoken": self.http.cookies["csrftoken"],
        })  # fmt: skip
        assert response.status_code == 302, response.text[:500]

    def close(self) -> None:
        self.http.close()


def chat(gateway: GatewayProcess, **headers: str) -> httpx.Response:
    return httpx.post(f"{gateway.url}{CHAT}", json=chat_body(), headers=headers, timeout=10)


def database_is(gateway: GatewayProcess, state: str) -> bool:
    return bool(httpx.get(f"{gateway.url}/health/ready").json()["database"] == state)


def seconds_until(condition: Callable[[], bool], limit: float) -> float:
    """Seconds until `condition()` holds, checked every 20 ms; fails past `limit`."""
    started = time.monotonic()
    while not condition():
        elapsed = time.monotonic() - started
        assert elapsed < limit, f"not seen within {limit}s"
        time.sleep(0.02)
    return time.monotonic() - started


def agent_id(db: LiveDatabase, key: str) -> int:
    return int(
        db.python(f"from agents.models import Agent; print(Agent.objects.get(key='{key}').pk)")
    )


def create_api_key(db: LiveDatabase) -> tuple[int, str]:
    out = db.python(
        "from access.services import api_key_create\n"
        "key, plain = api_key_create(name='n8n')\n"
        "print(key.pk, plain)"
    )
    pk, plain = out.split()
    return int(pk), plain


def is_disabled(gateway: GatewayProcess) -> bool:
    return chat(gateway).headers.get("X-Gateway-Fallback") == "disabled"


def is_enabled(gateway: GatewayProcess) -> bool:
    response = chat(gateway)
    return response.status_code == 200 and "X-Gateway-Fallback" not in response.headers


def test_an_admin_change_through_one_gateway_is_served_by_the_other_within_1s(
    gateway_process: Any, live_db: LiveDatabase
):
    # Polling every 30 s: anything faster than that is the Redis notification.
    first, second = two_gateways(gateway_process, REGISTRY_POLL_INTERVAL_S="30")
    cita = agent_id(live_db, "cita")
    key_id, plain_key = create_api_key(live_db)  # turns auth on, through Redis as well
    auth = {"X-API-Key": plain_key}
    assert seconds_until(lambda: chat(second).status_code == 401, limit=1.0) < 1.0
    assert chat(second, **auth).status_code == 200
    admin = AdminSession(first)
    try:
        admin.run_action("agents/agent", "disable_selected", [cita])
        assert seconds_until(lambda: chat(second, **auth).headers.get(
            "X-Gateway-Fallback") == "disabled", limit=1.0) < 1.0  # fmt: skip
        admin.run_action("agents/agent", "enable_selected", [cita])
        assert seconds_until(lambda: "X-Gateway-Fallback" not in chat(second, **auth).headers,
                             limit=1.0) < 1.0  # fmt: skip
        admin.run_action("access/apikey", "revoke_selected", [key_id])
        assert seconds_until(lambda: chat(second, **auth).status_code == 401, limit=1.0) < 1.0
        assert chat(first, **auth).status_code == 401
    finally:
        admin.close()


def test_a_rate_limit_is_shared_by_both_gateways(gateway_process: Any):
    first, second = two_gateways(gateway_process, RATE_LIMIT_PER_MINUTE="6")
    start_inside_one_limit_window(seconds_needed=10)
    first_hit = time.time()
    statuses = [chat(gateway).status_code for gateway in (first, second) * 3]
    assert statuses == [200] * 6
    for gateway in (first, second):  # the seventh and eighth, whichever process they reach
        refused = chat(gateway)
        assert refused.status_code == 429
        # In Redis, `limits` gives a window's counter a TTL from its first hit (not from the
        # wall-clock minute, as in memory): Retry-After is 60 s minus the time since then.
        since_first_hit = time.time() - first_hit
        assert 60 - since_first_hit - 1 <= int(refused.headers["Retry-After"]) <= 60


def test_with_redis_down_chat_works_and_changes_arrive_by_polling_within_2s(
    gateway_process: Any, live_db: LiveDatabase, redis_server: RedisServer
):
    first, second = two_gateways(
        gateway_process, RATE_LIMIT_PER_MINUTE="6"
    )  # default poll interval (1 s)
    redis_server.stop()
    for gateway in (first, second) * 5:  # past the limit: limiting degrades to allowing
        assert is_enabled(gateway)
    admin = AdminSession(first)  # the login lockout's cache is Redis too: it fails open
    try:
        admin.run_action("agents/agent", "disable_selected", [agent_id(live_db, "cita")])
        assert seconds_until(lambda: is_disabled(second), limit=2.0) < 2.0
    finally:
        admin.close()
    assert "login lockout cache unreachable" in first.logs()
    degraded = [line for line in second.logs().splitlines() if "rate_limit_degraded" in line]
    assert len(degraded) == 1  # logged once, not per request

    redis_server.start()  # limiting resumes and notifications come back
    assert seconds_until(lambda: chat(first).status_code == 429, limit=5.0) < 5.0
    assert seconds_until(lambda: "notify_up" in second.logs(), limit=10.0) < 10.0


def test_with_postgres_down_chat_works_ready_says_so_and_recovery_needs_no_restart(
    gateway_process: Any, live_db: LiveDatabase, postgres: PostgresServer
):
    first, second = two_gateways(
        gateway_process,
    )
    postgres.stop()
    try:
        for gateway in (first, second):
            # Ready stays 200 (chat is served from the agents last loaded; pulling every replica
            # would make an admin outage a chat outage); its body says the database is down.
            # Within 2 poll intervals (1 s by default) of the outage (contract §5).
            assert seconds_until(partial(database_is, gateway, "unreachable"), limit=2.0) < 2.0
            ready = httpx.get(f"{gateway.url}/health/ready")
            assert ready.status_code == 200
            assert ready.json() == {"status": "ok", "database": "unreachable", "registry": "ok",
                                    "draining": False}  # fmt: skip
            assert is_enabled(gateway)  # served from the agents it last loaded
            assert httpx.get(f"{gateway.url}/health/live").status_code == 200
        # The outage lasts until a poll has failed outright (its warning, checked below).
        seconds_until(lambda: "registry_db_error" in first.logs(), limit=5.0)
    finally:
        postgres.start()
    for gateway in (first, second):
        assert seconds_until(partial(database_is, gateway, "ok"), limit=2.0) < 2.0
    admin = AdminSession(second)  # and a change after the outage still reaches both
    try:
        admin.run_action("agents/agent", "disable_selected", [agent_id(live_db, "cita")])
        assert seconds_until(lambda: is_disabled(first), limit=1.0) < 1.0
    finally:
        admin.close()
    warnings = [line for line in first.logs().splitlines() if "registry_db_error" in line]
    assert len(warnings) == 1 and re.search(r'"level": ?"warning"', warnings[0])
