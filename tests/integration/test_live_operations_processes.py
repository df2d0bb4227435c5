"""The moving world through real gateway processes (issue 14): a database missing at start, auth
judged before the body, auth that stays on, the live gauges across workers (a deleted agent, a
worker killed with SIGKILL), and readiness from SIGTERM on."""

import json
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from chat import messages
from tests.conftest import GatewayProcess, LiveDatabase, chat_body
from tests.fault_agent import FaultAgent
from tests.integration.test_scale_out import seconds_until
from tests.metrics import sample, sample_or_absent

CHAT = "/api/agent/chat"


def create_agent(db: LiveDatabase, key: str, url: str, **fields: Any) -> None:
    extra = "".join(f", {name}={value!r}" for name, value in fields.items())
    db.python(
        "from agents.models import Agent, RoutingName\n"
        f"a = Agent.objects.create(key={key!r}, name={key!r}, url={url!r}{extra})\n"
        f"RoutingName.objects.create(agent=a, name={key!r})"
    )


def log_events(gateway: GatewayProcess, event: str) -> list[dict[str, Any]]:
    found = []
    for line in gateway.logs().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == event:
            found.append(record)
    return found


def test_a_database_missing_at_start_gives_503_until_the_first_load(
    live_db: LiveDatabase, gateway_process: Any, fault_agent: FaultAgent, tmp_path: Path
):
    create_agent(live_db, "cita", fault_agent.url("/ok"))
    migrated = Path(live_db.env["DATABASE_URL"].removeprefix("sqlite:///"))
    later = tmp_path / "not-yet" / "gateway.sqlite3"  # its directory does not exist yet
    gateway = gateway_process(
        env={"DATABASE_URL": f"sqlite:///{later}", "REGISTRY_POLL_INTERVAL_S": "0.5"},
        ready_path="/health/live",
    )
    chat = httpx.post(f"{gateway.url}{CHAT}", json=chat_body(), timeout=5)
    assert chat.status_code == 503
    assert chat.json() == {"detail": messages.NOT_LOADED}
    assert int(chat.headers["retry-after"]) >= 1
    ready = httpx.get(f"{gateway.url}/health/ready", timeout=5)
    assert ready.status_code == 503
    assert ready.json()["registry"] == "not_loaded"
    assert ready.json()["database"] == "unreachable"

    later.parent.mkdir()
    shutil.copy(migrated, later)  # the database is reachable from now on
    loaded_after = seconds_until(
        lambda: httpx.get(f"{gateway.url}/health/ready", timeout=5).status_code == 200, 2.0
    )
    assert loaded_after < 2 * 0.5 + 0.3  # within 2 poll intervals
    assert httpx.get(f"{gateway.url}/health/ready", timeout=5).json()["database"] == "ok"
    chat = httpx.post(f"{gateway.url}{CHAT}", json=chat_body(config={"modalidad": "cita"}))
    assert chat.status_code == 200 and chat.json()["agent_used"] == "cita"


def raw_post_headers(gateway: GatewayProcess, headers: dict[str, str]) -> tuple[bytes, float]:
    """Send a chat request's headers announcing a 400 KB body, then no body: the answer and how
    long after the headers it came."""
    lines = [f"POST {CHAT} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
             "Content-Length: 400000", *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        started = time.monotonic()
        received = b""
        while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received, time.monotonic() - started


def test_a_wrong_key_is_refused_from_the_headers_without_reading_the_body(
    live_db: LiveDatabase, gateway_process: Any, fault_agent: FaultAgent
):
    create_agent(live_db, "cita", fault_agent.url("/ok"))
    gateway = gateway_process(env={"GATEWAY_API_KEY": "the-right-key"})
    for headers in ({}, {"X-API-Key": "wrong"}, {"Origin": "https://app.example"},
                    {"Origin": "https://app.example", "Authorization": "Bearer wrong"}):  # fmt: skip
        answer, elapsed = raw_post_headers(gateway, headers)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 401"), answer[:200]
        assert json.loads(body) == {"detail": messages.UNAUTHORIZED}
        assert elapsed < 1.0  # the 400 KB never sent: the answer did not wait for it
        if "Origin" in headers:
            assert b"vary: origin" in head.lower()
    # The right key still gets its body read and answered.
    ok = httpx.post(f"{gateway.url}{CHAT}", json=chat_body(config={"modalidad": "cita"}),
                    headers={"X-API-Key": "the-right-key"})  # fmt: skip
    assert ok.status_code == 200


def test_auth_stays_on_after_the_last_admin_key_is_deleted_even_across_restarts(
    live_db: LiveDatabase, gateway_process: Any, fault_agent: FaultAgent
):
    create_agent(live_db, "cita", fault_agent.url("/ok"))
    first = gateway_process()
    body = chat_body(config={"modalidad": "cita"})
    assert httpx.post(f"{first.url}{CHAT}", json=body).status_code == 200  # no key yet: open
    assert log_events(first, "startup")[0]["auth"] == "off"

    plain = live_db.python(
        "from access.services import api_key_create\nprint(api_key_create(name='n8n')[1])"
    ).strip()
    seconds_until(lambda: httpx.post(f"{first.url}{CHAT}", json=body).status_code == 401, 2.0)
    changes = log_events(first, "auth_changed")
    assert [(c["auth"], c["level"]) for c in changes] == [("on", "warning")]
    key = {"X-API-Key": plain}
    assert httpx.post(f"{first.url}{CHAT}", json=body, headers=key).status_code == 200

    live_db.python("from access.models import ApiKey; ApiKey.objects.all().delete()")
    seconds_until(
        lambda: httpx.post(f"{first.url}{CHAT}", json=body, headers=key).status_code == 401, 2.0
    )  # the deleted key no longer works ...
    assert httpx.post(f"{first.url}{CHAT}", json=body).status_code == 401  # ... nor does none

    second = gateway_process()  # a restart remembers that keys existed
    assert httpx.post(f"{second.url}{CHAT}", json=body).status_code == 401
    startup = log_events(second, "startup")[0]
    assert (startup["auth"], startup["auth_reason"]) == (
        "on",
        "API keys exist or existed in the admin",
    )

    off = gateway_process(env={"GATEWAY_AUTH": "off"})  # the only way to turn it off
    assert httpx.post(f"{off.url}{CHAT}", json=body).status_code == 200
    assert log_events(off, "startup")[0]["auth_reason"] == "GATEWAY_AUTH=off"

    on = gateway_process(env={"GATEWAY_AUTH": "on", "GATEWAY_API_KEY": ""})
    assert httpx.post(f"{on.url}{CHAT}", json=body).status_code == 401


def worker_pids(gateway: GatewayProcess) -> list[int]:
    pid = gateway.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


def test_live_gauges_across_workers_drop_deleted_agents_and_killed_workers(
    live_db: LiveDatabase, gateway_process: Any, fault_agent: FaultAgent, tmp_path: Path
):
    create_agent(live_db, "cita", fault_agent.url("/slow/8"), max_concurrency=7, timeout_s=12)
    create_agent(live_db, "venta", fault_agent.url("/ok"))
    metrics_dir = tmp_path / "prometheus"
    gateway = gateway_process("--workers", "2", env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})

    def scrape() -> str:
        return httpx.get(f"{gateway.url}/metrics", timeout=5).text

    def limit(agent: str) -> float | None:
        return sample_or_absent(scrape(), "gateway_agent_concurrency_limit", agent=agent)

    seconds_until(lambda: limit("cita") == 14, 5.0)  # both workers count

    live_db.python("from agents.models import Agent; Agent.objects.filter(key='venta').delete()")
    live_gauges = ("gateway_inflight_requests", "gateway_circuit_breaker_state",
                   "gateway_agent_concurrency_limit")  # fmt: skip

    def venta_gone_from_scrapes() -> bool:  # five scrapes in a row, whichever worker answers
        for _ in range(5):
            text = scrape()
            if any(sample_or_absent(text, name, agent="venta") is not None for name in live_gauges):
                return False
        return all(sample(text, name, agent="cita") >= 0 for name in live_gauges)

    assert seconds_until(venta_gone_from_scrapes, 5.0) < 5.0

    # Six slow calls, each on its own connection, spread over the two workers.
    outcomes: list[str] = []

    def call() -> None:
        try:
            with httpx.Client(timeout=15) as client:
                client.post(f"{gateway.url}{CHAT}", json=chat_body(config={"modalidad": "cita"}))
            outcomes.append("answered")
        except httpx.HTTPError:
            outcomes.append("dropped")

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    seconds_until(lambda: sample(scrape(), "gateway_inflight_requests", agent="cita") == 6, 5.0)

    def inflight_of(pid: int) -> int:
        published = json.loads((metrics_dir / f"live-{pid}.json").read_text())
        return int(published["gateway_inflight_requests"]["cita"])

    pids = [pid for pid in worker_pids(gateway) if (metrics_dir / f"live-{pid}.json").exists()]
    assert len(pids) == 2  # (the supervisor's other child is multiprocessing's tracker)
    seconds_until(lambda: sum(inflight_of(pid) for pid in pids) == 6, 3.0)
    victim = max(pids, key=inflight_of)
    lost = inflight_of(victim)
    os.kill(victim, signal.SIGKILL)
    stopped_counting = seconds_until(
        lambda: sample(scrape(), "gateway_inflight_requests", agent="cita") == 6 - lost, 10.0
    )
    assert stopped_counting < 10.0
    for thread in threads:
        thread.join(20)
    assert outcomes.count("dropped") == lost
    seconds_until(lambda: sample(scrape(), "gateway_inflight_requests", agent="cita") == 0, 5.0)


def test_from_sigterm_on_ready_never_answers_200(
    live_db: LiveDatabase, gateway_process: Any, fault_agent: FaultAgent
):
    create_agent(live_db, "cita", fault_agent.url("/slow/2"))
    gateway = gateway_process()
    answers: list[int] = []
    body = chat_body(config={"modalidad": "cita"})
    chat = threading.Thread(
        target=lambda: answers.append(
            httpx.post(f"{gateway.url}{CHAT}", json=body, timeout=10).status_code
        )
    )
    chat.start()
    assert fault_agent.wait_for(lambda a: a.attempts("/slow/2") == 1)
    ready_before = httpx.get(f"{gateway.url}/health/ready", timeout=2)
    assert ready_before.status_code == 200 and ready_before.json()["draining"] is False
    gateway.process.send_signal(signal.SIGTERM)
    seen: list[int | str] = []
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        try:
            seen.append(httpx.get(f"{gateway.url}/health/ready", timeout=1).status_code)
        except httpx.HTTPError:
            seen.append("refused")
        time.sleep(0.02)
    assert 200 not in seen, seen
    chat.join(10)
    assert answers == [200]  # the request in flight still finished
    assert gateway.process.wait(10) == 0
    # Begun by the signal, and logged outside the request the signal may have interrupted.
    assert [(e["reason"], e["request_id"]) for e in log_events(gateway, "draining")] == [
        ("SIGTERM", "-")
    ]
