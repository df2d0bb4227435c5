"""The caller's W3C trace context reaches the agent on every attempt, on both entry points, with
tracing off (issue 17: agents can join the caller's trace)."""

import pytest

from tests.conftest import chat_body

CHAT = "/api/agent/chat"
PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
STATE = "congo=t61rcWkgMzE"


@pytest.mark.parametrize("origin", [None, "https://n8n.example.com"])
async def test_traceparent_and_tracestate_go_to_the_agent_on_every_attempt(
    gateway, make_agent, fault_agent, origin
):
    make_agent("cita", url=fault_agent.url("/flap/1"), retries=1)
    headers = {"traceparent": PARENT, "tracestate": STATE}
    if origin:  # the django-ninja operation, through the CORS middleware
        headers["Origin"] = origin
    response = await gateway.post(CHAT, json=chat_body(), headers=headers)
    assert response.status_code == 200 and "x-gateway-fallback" not in response.headers
    sent = [
        (r.headers.get("traceparent"), r.headers.get("tracestate")) for r in fault_agent.requests
    ]
    assert sent == [(PARENT, STATE), (PARENT, STATE)]  # the refused try and the retry


async def test_no_trace_context_is_invented_or_passed_on_when_malformed(
    gateway, make_agent, fault_agent
):
    make_agent("cita", url=fault_agent.url("/ok"))
    await gateway.post(CHAT, json=chat_body())
    await gateway.post(CHAT, json=chat_body(), headers={"traceparent": "garbage"})
    assert [r.headers.get("traceparent") for r in fault_agent.requests] == [None, None]
