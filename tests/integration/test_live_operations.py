"""The moving world, in one process: an edit during a retry, a breaker replaced under calls in
flight, every chat answer counted once, the agents not loaded yet, and draining (issue 14).

The same behaviours through real processes (a database missing at start, auth before the body,
gauges across workers) are in test_live_operations_processes.py."""

import asyncio
import json
import logging
from typing import Any

import pytest

from agents.models import Agent
from chat import messages
from fleet import sync
from runtime import calls
from runtime.draining import draining
from runtime.registry import registry
from tests.conftest import chat_body, in_thread
from tests.metrics import sample

CHAT = "/api/agent/chat"


async def scrape(gateway: Any) -> str:
    return str((await gateway.get("/metrics")).text)


def edit_agent(key: str, **fields: Any) -> None:
    def save() -> None:
        agent = Agent.objects.get(key=key)
        for name, value in fields.items():
            setattr(agent, name, value)
        agent.save()  # the saving process refreshes its registry after the commit

    in_thread(save)


async def until(condition: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


class TestAnEditDuringACall:
    async def test_a_url_saved_during_the_retry_backoff_is_no_500(
        self, gateway, make_agent, fault_agent, monkeypatch
    ):
        """The call holds its runtime: its second attempt goes to the old URL on the old client,
        which the registry retired but must not close under the waiting call."""
        monkeypatch.setattr(calls, "RETRY_BACKOFF_S", (1.0, 1.0))
        make_agent("cita", url=fault_agent.url("/reset"), retries=1, timeout_s=10)
        await gateway.get("/health/live")  # load the registry
        old_client = registry.snapshot.agents["cita"].client

        call = asyncio.create_task(gateway.post(CHAT, json=chat_body()))
        await fault_agent.until(lambda a: a.attempts("/reset") == 1)
        edit_agent("cita", url=fault_agent.url("/ok"))  # a transport change: a new client
        await until(lambda: registry.snapshot.agents["cita"].client is not old_client)
        assert not old_client.closed  # retired, but a call still holds it

        response = await call
        assert response.status_code == 200
        assert response.headers["x-gateway-fallback"] == "connection"
        assert fault_agent.attempts("/reset") == 2  # the retry went where the call began
        await until(lambda: old_client.closed)  # and the old client closed once it ended
        ok = await gateway.post(CHAT, json=chat_body())
        assert ok.json()["reply"].startswith("echo:")  # the next call uses the new URL

    async def test_a_timeout_saved_during_a_call_applies_to_the_next_call(
        self, gateway, make_agent, fault_agent
    ):
        make_agent("cita", url=fault_agent.url("/slow/1.5"), timeout_s=5)
        await gateway.get("/health/live")
        call = asyncio.create_task(gateway.post(CHAT, json=chat_body()))
        await fault_agent.until(lambda a: a.attempts("/slow/1.5") == 1)
        edit_agent("cita", timeout_s=1)
        await until(lambda: registry.snapshot.agents["cita"].spec.timeout_s == 1)
        response = await call  # its own deadline (5 s) still holds: the agent answers at 1.5 s
        assert "x-gateway-fallback" not in response.headers
        response = await gateway.post(CHAT, json=chat_body())
        assert response.headers["x-gateway-fallback"] == "timeout"


async def test_a_replaced_breaker_no_longer_reports_its_state(
    gateway, make_agent, fault_agent, caplog
):
    """Calls in flight when the URL changes settle on the replaced breaker: they may open it,
    but neither /metrics nor the logs may say so (the live breaker is closed)."""
    make_agent("cita", url=fault_agent.url("/hang"), timeout_s=1, breaker_fail_max=1)
    await gateway.get("/health/live")
    old_breaker = registry.snapshot.agents["cita"].breaker
    call = asyncio.create_task(gateway.post(CHAT, json=chat_body()))
    await fault_agent.until(lambda a: a.attempts("/hang") == 1)
    edit_agent("cita", url=fault_agent.url("/ok"))
    await until(lambda: registry.snapshot.agents["cita"].breaker is not old_breaker)
    with caplog.at_level(logging.WARNING, logger="gateway.registry"):
        response = await call
    assert response.headers["x-gateway-fallback"] == "timeout"
    assert old_breaker.state == "open"  # the failure settled on the old breaker ...
    assert sample(await scrape(gateway), "gateway_circuit_breaker_state", agent="cita") == 0
    assert not [r for r in caplog.records if getattr(r, "event", "") == "breaker_state_change"]
    ok = await gateway.post(CHAT, json=chat_body())  # ... and the live one lets calls through
    assert "x-gateway-fallback" not in ok.headers


class TestEveryAnswerCounted:
    """Contract §5: every response on the chat path counts once in gateway_requests_total."""

    async def counted(self, gateway: Any, request: Any) -> tuple[Any, dict[tuple[str, str], float]]:
        from prometheus_client.parser import text_string_to_metric_families

        def totals(text: str) -> dict[tuple[str, str], float]:
            return {
                (s.labels["agent"], s.labels["status"]): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
                if s.name == "gateway_requests_total"
            }

        before = totals(await scrape(gateway))
        response = await request()
        after = totals(await scrape(gateway))
        delta = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
        return response, delta

    @pytest.mark.parametrize(
        ("send", "status", "agent"),
        [
            (lambda g: g.post(CHAT, content=b"{nope"), 400, "_none"),
            (lambda g: g.post(CHAT, json=chat_body(message="  ")), 400, "_none"),
            (lambda g: g.get(CHAT), 405, "_none"),
            (lambda g: g.post(CHAT, content=b"x" * (600 * 1024)), 413, "_none"),
            (lambda g: g.post(CHAT, json=chat_body(config={"modalidad": "nada"})), 400,
             "_unrouted"),
            (lambda g: g.post(CHAT, json=chat_body()), 200, "cita"),
            (lambda g: g.post(CHAT, json=chat_body(), headers={"Origin": "https://x.test"}),
             200, "cita"),
        ],
    )  # fmt: skip
    async def test_each_answer_once(self, gateway, make_agent, fault_agent, send, status, agent):
        make_agent("cita", url=fault_agent.url("/ok"))
        await gateway.get("/health/live")
        response, delta = await self.counted(gateway, lambda: send(gateway))
        assert response.status_code == status
        assert delta == {(agent, str(status)): 1}

    async def test_401_429_403_and_backpressure(self, gateway, make_agent, fault_agent, settings):
        from access.services import api_key_create

        make_agent("cita", url=fault_agent.url("/slow/1"), max_concurrency=1)
        make_agent("venta", url=fault_agent.url("/ok"))
        _, plain = in_thread(lambda: api_key_create(name="n8n"))
        restricted = in_thread(lambda: api_key_create(name="solo-venta"))
        in_thread(lambda: restricted[0].allowed_agents.set(Agent.objects.filter(key="venta")))
        await gateway.get("/health/live")
        await until(lambda: sync.registry_sync.started)

        response, delta = await self.counted(gateway, lambda: gateway.post(CHAT, json=chat_body()))
        assert (response.status_code, delta) == (401, {("_none", "401"): 1})

        key = {"X-API-Key": restricted[1]}
        response, delta = await self.counted(
            gateway, lambda: gateway.post(CHAT, json=chat_body(), headers=key)
        )
        assert (response.status_code, delta) == (403, {("cita", "403"): 1})

        key = {"X-API-Key": plain}
        first = asyncio.create_task(gateway.post(CHAT, json=chat_body(), headers=key))
        await fault_agent.until(lambda a: a.attempts("/slow/1") == 1)
        response, delta = await self.counted(
            gateway, lambda: gateway.post(CHAT, json=chat_body(), headers=key)
        )
        assert (response.status_code, delta) == (503, {("cita", "503"): 1})
        assert (await first).status_code == 200

        settings.RATE_LIMIT_PER_MINUTE = 1
        response, delta = await self.counted(
            gateway, lambda: gateway.post(CHAT, json=chat_body(), headers={"X-API-Key": plain})
        )
        assert response.status_code in (200, 429)
        response, delta = await self.counted(
            gateway, lambda: gateway.post(CHAT, json=chat_body(), headers={"X-API-Key": plain})
        )
        assert (response.status_code, delta) == (429, {("_none", "429"): 1})


class TestBeforeTheAgentsAreLoaded:
    async def test_chat_is_503_with_retry_after_and_ready_is_503(
        self, gateway, make_agent, monkeypatch
    ):
        make_agent("cita")

        def unreachable() -> Any:
            raise ConnectionError("database unreachable")

        monkeypatch.setattr(sync, "agent_specs_load", unreachable)
        response = await gateway.post(CHAT, json=chat_body())
        assert response.status_code == 503
        assert response.json() == {"detail": messages.NOT_LOADED}
        assert int(response.headers["retry-after"]) >= 1
        # Not "Modalidad no reconocida", whatever the modalidad, and with an Origin too.
        response = await gateway.post(
            CHAT, json=chat_body(config={"modalidad": "x"}), headers={"Origin": "https://a.test"}
        )
        assert response.status_code == 503
        ready = await gateway.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["registry"] == "not_loaded"
        assert (await gateway.get("/health/live")).status_code == 200

        monkeypatch.undo()  # the database is back: the poller loads within 2 intervals
        await until(lambda: registry.snapshot.loaded, timeout=2 * 0.2 + 1)
        assert (await gateway.post(CHAT, json=chat_body())).status_code == 200
        ready = await gateway.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json()["database"] == "ok"


async def test_ready_is_503_once_draining_begins(gateway, make_agent):
    make_agent("cita")
    assert (await gateway.get("/health/ready")).status_code == 200
    draining.begin("test")
    try:
        response = await gateway.get("/health/ready")
        assert response.status_code == 503
        assert json.loads(response.text)["draining"] is True
    finally:
        draining.clear()


async def test_the_access_line_names_the_key_never_the_key_itself(
    gateway, make_agent, fault_agent, caplog
):
    from access.services import api_key_create

    make_agent("cita", url=fault_agent.url("/ok"))
    _, plain = in_thread(lambda: api_key_create(name="n8n-prod"))
    await gateway.get("/health/live")
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        response = await gateway.post(CHAT, json=chat_body(), headers={"X-API-Key": plain})
    assert response.status_code == 200
    lines = [r for r in caplog.records if getattr(r, "path", "") == CHAT]
    assert [getattr(r, "key", None) for r in lines] == ["n8n-prod"]
    assert plain not in caplog.text
