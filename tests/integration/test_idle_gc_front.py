"""The front counts every request in flight and runs one collection once idle after a busy
spell (edge/idle_gc.py), whatever way the requests end."""

import asyncio

import pytest

from gateway_project.asgi import application
from tests.conftest import chat_body
from tests.unit.test_idle_gc import Passes

CHAT = "/api/agent/chat"


@pytest.fixture
def passes(monkeypatch) -> Passes:
    passes = Passes()
    monkeypatch.setattr(application.idle_gc, "collect", passes)
    monkeypatch.setattr(application.idle_gc, "idle_seconds", 0.01)
    monkeypatch.setattr(application.idle_gc, "peak", 0)
    return passes


async def test_overlapping_chat_calls_then_idle_run_one_pass(
    gateway, make_agent, fault_agent, passes, monkeypatch
):
    monkeypatch.setattr(application.idle_gc, "busy_inflight", 4)
    make_agent("cita", fault_agent.url("/slow/0.3"))
    calls = [asyncio.create_task(gateway.post(CHAT, json=chat_body())) for _ in range(4)]
    assert await fault_agent.until(lambda agent: agent.attempts() == 4)
    assert application.idle_gc.inflight == 4
    assert passes.count == 0
    assert [r.status_code for r in await asyncio.gather(*calls)] == [200] * 4
    await asyncio.wait_for(passes.ran.wait(), timeout=5)
    assert passes.count == 1
    assert application.idle_gc.inflight == 0


async def test_refused_and_unknown_requests_leave_the_count_at_zero(gateway, passes, monkeypatch):
    monkeypatch.setattr(application.idle_gc, "busy_inflight", 1)
    assert (await gateway.post(CHAT, content=b"{not json")).status_code == 400
    assert (await gateway.get("/no/such/page")).status_code == 404
    assert application.idle_gc.inflight == 0
    await asyncio.wait_for(passes.ran.wait(), timeout=5)
    assert passes.count == 1
