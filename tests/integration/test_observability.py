"""Metrics after a scripted sequence (exact deltas), health statuses and bounds, JSON logs."""

import asyncio
import json
import time

import httpx
import pytest

from tests.conftest import chat_body, in_thread
from tests.fault_agent import refused_url
from tests.metrics import sample, sample_or_absent

CHAT = "/api/agent/chat"


async def scrape(gateway: httpx.AsyncClient) -> str:
    response = await gateway.get("/metrics")
    assert response.status_code == 200
    return response.text


class Counters:
    """Prometheus sample values, read before and after, compared as deltas."""

    NAMES = [
        ("gateway_requests_total", {"agent": "cita", "status": "200"}),
        ("gateway_requests_total", {"agent": "roto", "status": "200"}),
        ("gateway_requests_total", {"agent": "lento", "status": "200"}),
        ("gateway_requests_total", {"agent": "lento", "status": "503"}),
        ("gateway_requests_total", {"agent": "_unrouted", "status": "400"}),
        ("gateway_request_duration_seconds_count", {"agent": "cita"}),
        ("gateway_upstream_http_status_total", {"agent": "cita", "status_code": "200"}),
        ("gateway_upstream_http_status_total", {"agent": "roto", "status_code": "500"}),
        ("gateway_agent_error_total", {"agent": "roto", "error_type": "bad_status"}),
        ("gateway_agent_error_total", {"agent": "roto", "error_type": "circuit_open"}),
        ("gateway_agent_error_total", {"agent": "lento", "error_type": "backpressure"}),
    ]

    def __init__(self, before: str) -> None:
        # A labelled series is exported from its first increment on: absent before means 0.
        self.before = {
            f"{name}{sorted(labels.items())}": sample_or_absent(before, name, **labels) or 0.0
            for name, labels in self.NAMES
        }

    def deltas(self, after_scrape: str) -> dict[str, float]:
        # Afterwards every series must be exported: a missing one fails, naming it.
        after = {f"{name}{sorted(labels.items())}": sample(after_scrape, name, **labels)
                 for name, labels in self.NAMES}  # fmt: skip
        return {k: after[k] - self.before[k] for k in after if after[k] != self.before[k]}


async def test_metrics_after_ok_fallback_backpressure_and_breaker(gateway, make_agent, fault_agent):
    make_agent("cita", url=fault_agent.url("/ok"))
    make_agent("roto", url=fault_agent.url("/status/500"), breaker_fail_max=2, retries=0)
    make_agent("lento", url=fault_agent.url("/slow/0.5"), max_concurrency=1)
    counters = Counters(await scrape(gateway))

    assert (await gateway.post(CHAT, json=chat_body())).status_code == 200
    for _ in range(3):  # two failures open the breaker; the third is refused by it
        await gateway.post(CHAT, json=chat_body(config={"modalidad": "roto"}))
    slow = asyncio.create_task(gateway.post(CHAT, json=chat_body(config={"modalidad": "lento"})))
    assert await fault_agent.until(lambda a: a.attempts("/slow/0.5") == 1)
    busy = await gateway.post(CHAT, json=chat_body(config={"modalidad": "lento"}))
    assert busy.status_code == 503
    assert (await slow).status_code == 200
    await gateway.post(CHAT, json=chat_body(config={"modalidad": "nadie"}))

    def key(name: str, **labels: str) -> str:
        return f"{name}{sorted(labels.items())}"

    text = await scrape(gateway)
    assert counters.deltas(text) == {
        key("gateway_requests_total", agent="cita", status="200"): 1,
        key("gateway_requests_total", agent="roto", status="200"): 3,
        key("gateway_requests_total", agent="lento", status="200"): 1,
        key("gateway_requests_total", agent="lento", status="503"): 1,
        key("gateway_requests_total", agent="_unrouted", status="400"): 1,
        key("gateway_request_duration_seconds_count", agent="cita"): 1,
        key("gateway_upstream_http_status_total", agent="cita", status_code="200"): 1,
        key("gateway_upstream_http_status_total", agent="roto", status_code="500"): 2,
        key("gateway_agent_error_total", agent="roto", error_type="bad_status"): 2,
        key("gateway_agent_error_total", agent="roto", error_type="circuit_open"): 1,
        key("gateway_agent_error_total", agent="lento", error_type="backpressure"): 1,
    }
    assert sample(text, "gateway_circuit_breaker_state", agent="roto") == 1
    assert sample(text, "gateway_circuit_breaker_state", agent="cita") == 0
    for agent in ("cita", "roto", "lento"):
        assert sample(text, "gateway_inflight_requests", agent=agent) == 0
    assert "nadie" not in text  # never the raw modalidad
    assert 'le="30.0"' in text and 'le="0.1"' in text  # buckets for 0.1-30 s


# The live gauges, read from the registry at scrape time (chat/metrics.py).
GAUGES = (
    "gateway_agent_concurrency_limit",
    "gateway_inflight_requests",
    "gateway_circuit_breaker_state",
)


async def test_a_deleted_agent_leaves_the_gauges_and_comes_back_when_recreated(
    gateway, make_agent, fault_agent
):
    from agents.models import Agent
    from tests.integration.test_registry_live import eventually, routed_to

    make_agent("cita", url=fault_agent.url("/ok"), max_concurrency=7)
    assert (await gateway.post(CHAT, json=chat_body())).status_code == 200
    assert sample(await scrape(gateway), "gateway_agent_concurrency_limit", agent="cita") == 7

    in_thread(lambda: Agent.objects.filter(key="cita").delete())

    async def gone() -> bool:
        text = await scrape(gateway)
        return all(sample_or_absent(text, name, agent="cita") is None for name in GAUGES)

    assert await eventually(gone)

    make_agent("cita", url=fault_agent.url("/ok"), max_concurrency=9)
    assert await eventually(lambda: routed_to(gateway, "cita", "cita"))
    text = await scrape(gateway)
    assert sample(text, "gateway_agent_concurrency_limit", agent="cita") == 9
    assert sample(text, "gateway_inflight_requests", agent="cita") == 0
    assert sample(text, "gateway_circuit_breaker_state", agent="cita") == 0


class TestHealth:
    async def test_each_status(self, gateway, make_agent, fault_agent):
        from runtime.registry import registry

        make_agent("ok", url=fault_agent.url("/ok"))
        make_agent("off", url=fault_agent.url("/ok"), enabled=False)
        make_agent("down", url=refused_url())
        make_agent("sin_url", url="")  # a row saved without validation (a raw import, the shell)
        make_agent("abierto", url=fault_agent.url("/status/500"), breaker_fail_max=1, retries=0)
        await gateway.post(CHAT, json=chat_body(config={"modalidad": "abierto"}))
        assert registry.snapshot.agents["abierto"].breaker.state == "open"

        response = await gateway.get("/health")
        assert response.status_code == 503
        assert response.json() == {
            "status": "degraded",
            "service": "gateway",
            "agents": {"ok": "ok", "off": "disabled", "down": "unreachable",
                       "sin_url": "no_url", "abierto": "circuit_open"},
        }  # fmt: skip
        assert fault_agent.attempts("/health") == 1  # only the enabled agent with a URL

    async def test_a_non_2xx_health_answer_is_unreachable(self, gateway, make_agent, fault_agent):
        make_agent("mal", url=fault_agent.url("/ok"), health_url=fault_agent.url("/status/503"))
        response = await gateway.get("/health")
        assert response.status_code == 503
        assert response.json()["agents"] == {"mal": "unreachable"}

    async def test_checks_share_one_client(self, gateway, make_agent, fault_agent):
        for key in ("a", "b"):
            make_agent(key, url=fault_agent.url("/ok"))
        from health.cache import health_cache

        for _ in range(3):
            health_cache.clear()  # a probe round each time (the 1 s cache is test_health_cache's)
            assert (await gateway.get("/health")).status_code == 200
        assert fault_agent.attempts("/health") == 6
        # Kept-alive connections of one shared client: at most one per agent checked at once.
        assert fault_agent.connections_opened <= 2

    async def test_all_healthy_is_200(self, gateway, make_agent, fault_agent):
        make_agent("ok", url=fault_agent.url("/ok"))
        make_agent("off", url=fault_agent.url("/ok"), enabled=False)
        response = await gateway.get("/health")
        assert response.status_code == 200
        assert response.json()["status"] == "ok"

    async def test_answers_within_2_5s_when_every_agent_hangs(
        self, gateway, make_agent, fault_agent
    ):
        from gateway_project.conf import gateway_settings

        probe_timeout_s = gateway_settings.health_check_timeout_s  # 2 s
        for key in ("a", "b", "c", "d", "e"):
            make_agent(key, url=fault_agent.url("/ok"), health_url=fault_agent.url("/hang"))
        await gateway.get("/health/live")  # load the registry first
        started = time.monotonic()
        response = await gateway.get("/health")
        elapsed = time.monotonic() - started

        assert response.status_code == 503
        assert set(response.json()["agents"].values()) == {"unreachable"}
        assert fault_agent.attempts("/hang") == 5
        # In parallel: all five probes reached their agents before the first one's timeout ran
        # out (checked one after another, they would arrive a whole timeout apart).
        arrivals = [r.received_at for r in fault_agent.requests if r.path == "/hang"]
        assert max(arrivals) - min(arrivals) < probe_timeout_s / 2
        # No agent ever answers, so "unreachable" cannot come before the probe timeout; the
        # upper bound is the issue's: /health answers within 2.5 s.
        assert probe_timeout_s <= elapsed < 2.5


REQUEST_EVENTS = {"request", "agent_call", "breaker_state_change"}


@pytest.mark.parametrize("preview", ["8", "0"])
def test_json_logs_carry_the_request_id_and_no_more_message_than_allowed(
    live_db, gateway_process, fault_agent, preview
):
    live_db.python(
        "from agents.models import Agent, RoutingName\n"
        f"a = Agent.objects.create(key='cita', name='Cita', url='{fault_agent.url('/ok')}')\n"
        "RoutingName.objects.create(agent=a, name='cita')\n"
        f"r = Agent.objects.create(key='roto', name='Roto', url='{fault_agent.url('/status/500')}',"
        " breaker_fail_max=1, retries=0)\n"
        "RoutingName.objects.create(agent=r, name='roto')"
    )
    api_key = "obs-configured-key-4242"
    gateway = gateway_process(
        env={"LOG_LEVEL": "DEBUG", "LOG_MESSAGE_PREVIEW": preview, "GATEWAY_API_KEY": api_key}
    )
    message = "Quiero agendar una cita mañana a las 10"
    auth = {"X-API-Key": api_key}
    ok = httpx.post(f"{gateway.url}{CHAT}", json=chat_body(message=message), timeout=10,
                    headers={**auth, "X-Request-ID": "n8n-run-77"})  # fmt: skip
    assert ok.status_code == 200 and "X-Gateway-Fallback" not in ok.headers
    broken = httpx.post(f"{gateway.url}{CHAT}", json=chat_body(config={"modalidad": "roto"}),
                        timeout=10, headers={**auth, "X-Request-ID": "n8n-run-78"})  # fmt: skip
    assert broken.headers["X-Gateway-Fallback"] == "bad_status"
    assert gateway.stop() == 0

    text = gateway.logs()
    assert api_key not in text and message not in text
    lines = [json.loads(line) for line in text.splitlines()]  # uvicorn's own lines too
    for line in lines:
        assert {"ts", "level", "logger", "msg", "request_id"} <= line.keys(), line
        assert "color_message" not in line and "\x1b" not in line["msg"]  # no terminal colours
    startup = next(line for line in lines if line.get("event") == "startup")
    assert startup["agents"]["cita"] == {"enabled": True, "timeout_s": 25.0}
    assert startup["auth"] == "on" and startup["request_id"] == "-"

    # Every line a request wrote carries its id; no request line escapes without one.
    by_id = {rid: [line for line in lines if line["request_id"] == rid]
             for rid in ("n8n-run-77", "n8n-run-78")}  # fmt: skip
    chat_lines = [line for line in lines if line.get("event") in REQUEST_EVENTS
                  and line.get("path", CHAT) == CHAT]  # fmt: skip
    assert all(line["request_id"] in by_id for line in chat_lines)
    assert [line["event"] for line in by_id["n8n-run-77"]] == ["agent_call", "request"]
    assert [line["event"] for line in by_id["n8n-run-78"]] == [
        "breaker_state_change", "agent_call", "request"
    ]  # fmt: skip
    breaker = by_id["n8n-run-78"][0]
    assert breaker["level"] == "warning" and (breaker["from"], breaker["to"]) == ("closed", "open")

    access = by_id["n8n-run-77"][-1]
    expected = {"method": "POST", "path": CHAT, "status": 200, "agent": "cita",
                "session_id": 3796, "outcome": "ok", "logger": "gateway.access"}  # fmt: skip
    assert {k: access[k] for k in expected} == expected
    assert access["duration_ms"] > 0
    assert by_id["n8n-run-78"][-1]["outcome"] == "bad_status"
    if preview == "0":
        assert "Quiero" not in text
        assert access["message_preview"] is None
    else:
        assert access["message_preview"] == "Quiero a…"
