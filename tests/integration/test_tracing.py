"""Tracing (issue 17): real gateway processes exporting to a real OTLP/HTTP receiver
(tests/otlp_receiver.py), real agent servers recording the headers they got.

On: a server span per chat request whose parent is the caller's traceparent, a client span per
attempt whose traceparent the agent receives, refusals as events, the trace id on the log lines
and as the duration's exemplar, sampling by the standard variables, the queue flushed on
SIGTERM. Off: no OpenTelemetry module is ever imported, and the caller's trace id still marks
the request's log lines.
"""

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, chat_body
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.integration

CHAT = "/api/agent/chat"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
PARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
STATE = "congo=t61rcWkgMzE"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


def tracing_env(receiver: OtlpReceiver, **extra: str) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
        "OTEL_SERVICE_NAME": "gateway-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "50",  # export within 50 ms (the SDK's default is 5 s)
        "LOG_LEVEL": "DEBUG",
        **extra,
    }


def add_agent(live_db: Any, key: str, url: str, **fields: Any) -> None:
    values = ", ".join(f"{name}={value!r}" for name, value in fields.items())
    live_db.python(
        "from agents.models import Agent, RoutingName\n"
        f"a = Agent.objects.create(key={key!r}, name={key.title()!r}, url={url!r}"
        f"{', ' + values if values else ''})\n"
        f"RoutingName.objects.create(agent=a, name={key!r})"
    )


def post(gateway: Any, modalidad: str, request_id: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}{CHAT}",
        json=chat_body(config={"modalidad": modalidad}),
        headers={"X-Request-ID": request_id, **headers},
        timeout=10,
    )


def server_span(receiver: OtlpReceiver, request_id: str) -> ReceivedSpan:
    def found(spans: list[ReceivedSpan]) -> bool:
        return any(s.attributes.get("gateway.request_id") == request_id for s in spans)

    assert receiver.wait_for(found), f"no server span for {request_id}: {receiver.spans}"
    (span,) = [s for s in receiver.spans if s.attributes.get("gateway.request_id") == request_id]
    return span


def children(receiver: OtlpReceiver, parent: ReceivedSpan, count: int) -> list[ReceivedSpan]:
    def found(spans: list[ReceivedSpan]) -> bool:
        return sum(s.parent_span_id == parent.span_id for s in spans) >= count

    receiver.wait_for(found)
    spans = [s for s in receiver.spans if s.parent_span_id == parent.span_id]
    return sorted(spans, key=lambda s: s.attributes["gateway.attempt"])


def log_lines(gateway: Any, request_id: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in gateway.logs().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("request_id") == request_id]


def test_the_callers_trace_gets_a_server_span_and_a_client_span_per_attempt(
    live_db, gateway_process, fault_agent, otlp
):
    add_agent(live_db, "cita", fault_agent.url("/flap/1"), retries=1)
    gateway = gateway_process(env=tracing_env(otlp))
    answer = post(gateway, "cita", "run-1", traceparent=PARENT, tracestate=STATE)
    assert answer.status_code == 200 and "x-gateway-fallback" not in answer.headers

    server = server_span(otlp, "run-1")
    assert (server.kind, server.name) == ("server", "POST /api/agent/chat")
    assert (server.trace_id, server.parent_span_id) == (CALLER_TRACE, CALLER_SPAN)
    assert server.resource["service.name"] == "gateway-under-test"
    expected = {"http.request.method": "POST", "http.route": CHAT, "gateway.request_id": "run-1",
                "http.response.status_code": 200, "gateway.agent": "cita",
                "gateway.outcome": "ok", "gateway.id_empresa": 1}  # fmt: skip
    assert {k: server.attributes.get(k) for k in expected} == expected
    assert "gateway.fallback_reason" not in server.attributes

    refused, answered = children(otlp, server, 2)
    for attempt, span in enumerate((refused, answered), start=1):
        assert (span.kind, span.name, span.trace_id) == ("client", "POST cita", CALLER_TRACE)
        assert span.attributes["gateway.agent"] == "cita"
        assert span.attributes["gateway.attempt"] == attempt
        assert span.attributes["gateway.breaker_state"] == "closed"
        assert span.attributes["url.full"] == fault_agent.url("/flap/1")
        assert span.attributes["server.address"] == "127.0.0.1"
        assert server.start_ns <= span.start_ns <= span.end_ns <= server.end_ns
    assert (refused.attributes["error.type"], refused.status) == ("connection", "error")
    assert "http.response.status_code" not in refused.attributes
    assert answered.attributes["http.response.status_code"] == 200
    assert answered.attributes["http.request.resend_count"] == 1
    assert answered.status == "unset" and "error.type" not in answered.attributes

    # Each attempt reached the agent as a child of its own client span, in the caller's trace.
    sent = [(r.headers["traceparent"], r.headers.get("tracestate")) for r in fault_agent.requests]
    assert sent == [(refused.traceparent, STATE), (answered.traceparent, STATE)]

    lines = log_lines(gateway, "run-1")
    assert {line["event"] for line in lines} >= {"agent_call", "request"}
    assert all(line["trace_id"] == CALLER_TRACE for line in lines)


def test_without_a_caller_trace_the_server_span_is_the_root(
    live_db, gateway_process, fault_agent, otlp
):
    add_agent(live_db, "cita", fault_agent.url("/ok"))
    gateway = gateway_process(env=tracing_env(otlp))
    assert post(gateway, "cita", "run-2", traceparent="garbage").status_code == 200

    server = server_span(otlp, "run-2")
    assert server.parent_span_id == ""
    (client,) = children(otlp, server, 1)
    received = fault_agent.last_request().headers
    assert received["traceparent"].startswith(f"00-{server.trace_id}-{client.span_id}-")
    assert int(received["traceparent"][-2:], 16) & 1 == 1  # sampled
    assert "tracestate" not in received
    assert {line["trace_id"] for line in log_lines(gateway, "run-2")} == {server.trace_id}


def test_refusals_are_events_and_failed_attempts_say_why(
    live_db, gateway_process, fault_agent, otlp
):
    add_agent(live_db, "lento", fault_agent.url("/slow/1"), max_concurrency=1)
    add_agent(live_db, "roto", fault_agent.url("/status/500"), breaker_fail_max=1, retries=0)
    add_agent(live_db, "colgado", fault_agent.url("/hang"), timeout_s=0.5, retries=0)
    gateway = gateway_process(env=tracing_env(otlp))

    held = threading.Thread(target=post, args=(gateway, "lento", "holds-the-slot"))
    held.start()
    assert fault_agent.wait_for(lambda a: a.attempts("/slow/1") == 1)
    assert post(gateway, "lento", "busy").status_code == 503
    held.join()
    assert post(gateway, "roto", "fails").headers["x-gateway-fallback"] == "bad_status"
    assert post(gateway, "roto", "refused").headers["x-gateway-fallback"] == "circuit_open"
    assert post(gateway, "colgado", "late").headers["x-gateway-fallback"] == "timeout"

    busy = server_span(otlp, "busy")
    assert busy.events == [("gateway.backpressure", {"gateway.agent": "lento"})]
    assert busy.attributes["http.response.status_code"] == 503
    assert busy.attributes["gateway.outcome"] == "backpressure"
    assert children(otlp, busy, 0) == []

    fails = server_span(otlp, "fails")
    assert fails.attributes["gateway.fallback_reason"] == "bad_status"
    (attempt,) = children(otlp, fails, 1)
    assert attempt.attributes["http.response.status_code"] == 500
    assert (attempt.attributes["error.type"], attempt.status) == ("bad_status", "error")

    refused = server_span(otlp, "refused")
    assert refused.events == [
        ("gateway.breaker_rejected", {"gateway.agent": "roto", "gateway.breaker_state": "open"})
    ]
    assert refused.attributes["gateway.fallback_reason"] == "circuit_open"
    assert children(otlp, refused, 0) == []  # no attempt was made

    late = server_span(otlp, "late")
    (attempt,) = children(otlp, late, 1)
    assert attempt.attributes["error.type"] == "timeout"
    assert late.attributes["gateway.fallback_reason"] == "timeout"


def test_the_duration_histogram_carries_trace_ids_for_openmetrics_scrapers(
    live_db, gateway_process, fault_agent, otlp
):
    add_agent(live_db, "cita", fault_agent.url("/ok"))
    gateway = gateway_process(env=tracing_env(otlp))
    assert post(gateway, "cita", "run-3").status_code == 200
    trace_id = server_span(otlp, "run-3").trace_id

    scraped = httpx.get(f"{gateway.url}/metrics", headers={"Accept": OPENMETRICS}, timeout=5)
    assert scraped.headers["content-type"].startswith("application/openmetrics-text")
    exemplars = [line for line in scraped.text.splitlines()
                 if line.startswith('gateway_request_duration_seconds_bucket{agent="cita"')
                 and " # {" in line]  # fmt: skip
    assert len(exemplars) == 1 and f'# {{trace_id="{trace_id}"}}' in exemplars[0]
    assert scraped.text.rstrip().endswith("# EOF")

    plain = httpx.get(f"{gateway.url}/metrics", timeout=5)
    assert plain.headers["content-type"].startswith("text/plain")
    assert trace_id not in plain.text


def test_a_sampled_out_request_exports_nothing_and_still_works(
    live_db, gateway_process, fault_agent, otlp
):
    add_agent(live_db, "cita", fault_agent.url("/ok"))
    env = tracing_env(otlp, OTEL_TRACES_SAMPLER="parentbased_traceidratio",
                      OTEL_TRACES_SAMPLER_ARG="0")  # fmt: skip
    gateway = gateway_process(env=env)
    for n in range(5):
        answer = post(gateway, "cita", f"unsampled-{n}")
        assert answer.status_code == 200 and "x-gateway-fallback" not in answer.headers
    assert gateway.stop() == 0  # shutting down flushes the queue: nothing was in it
    assert otlp.spans == [] and otlp.exports == 0

    # The agent still joined a trace (not sampled), whose id marks the request's log lines.
    received = fault_agent.last_request().headers["traceparent"]
    assert int(received[-2:], 16) & 1 == 0
    assert {line["trace_id"] for line in log_lines(gateway, "unsampled-4")} == {received[3:35]}


def test_the_queue_is_exported_on_sigterm(live_db, gateway_process, fault_agent, otlp):
    add_agent(live_db, "cita", fault_agent.url("/ok"))
    env = tracing_env(otlp)
    del env["OTEL_BSP_SCHEDULE_DELAY"]  # the SDK's 5 s: only the shutdown can export in time
    gateway = gateway_process(env=env)
    assert post(gateway, "cita", "last-words").status_code == 200
    started = time.monotonic()
    assert gateway.stop() == 0
    assert time.monotonic() - started < 4
    assert {s.kind for s in otlp.spans} == {"server", "client"}  # already there at exit


def test_bad_tracing_settings_stop_the_start(live_db):
    for variables, message in (
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER must be otlp or none"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
         "OTLP/HTTP with protobuf only"),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER must be one of"),
        ({"OTEL_TRACES_SAMPLER_ARG": "2"}, "OTEL_TRACES_SAMPLER_ARG must be between 0 and 1"),
    ):  # fmt: skip
        result = subprocess.run(
            [sys.executable, "-c", "import gateway_project.settings"],
            cwd=ROOT, env={**live_db.env, **variables}, capture_output=True, text=True,
            timeout=30,
        )  # fmt: skip
        assert result.returncode != 0 and message in result.stderr, (variables, result.stderr)


# -- off ------------------------------------------------------------------------------------

SERVE_AND_LIST_MODULES = """
import asyncio, json, sys
import httpx
from gateway_project.asgi import application

async def main():
    startup, started = asyncio.Queue(), asyncio.Event()
    async def lifespan_send(message):
        if message["type"] == "lifespan.startup.complete":
            started.set()
    lifespan = asyncio.create_task(application({"type": "lifespan"}, startup.get, lifespan_send))
    await startup.put({"type": "lifespan.startup"})
    await asyncio.wait_for(started.wait(), 30)
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        body = {"message": "hola", "session_id": 1, "id_empresa": 1, "config": {"modalidad": "cita"}}
        for headers in ({}, {"traceparent": sys.argv[1]}, {"Origin": "https://n8n.example.com"}):
            answer = await client.post("/api/agent/chat", json=body, headers=headers)
            assert answer.status_code == 200 and "x-gateway-fallback" not in answer.headers
        bad = await client.post("/api/agent/chat", json={**body, "message": " "})
        assert bad.status_code == 400
        assert (await client.get("/metrics")).status_code == 200
    await startup.put({"type": "lifespan.shutdown"})
    await lifespan
    print("MODULES", json.dumps(sorted(m for m in sys.modules if m.startswith("opentelemetry"))))

asyncio.run(main())
"""


@pytest.mark.parametrize("exporter", ["none", "otlp"])
def test_with_tracing_off_no_opentelemetry_module_is_loaded(live_db, fault_agent, otlp, exporter):
    """Chat requests (fast lane, ninja operation, a 400, a caller's traceparent) served by the
    real application in a fresh process; with tracing on, the same check finds the SDK."""
    add_agent(live_db, "cita", fault_agent.url("/ok"))
    env = {**live_db.env, **tracing_env(otlp), "OTEL_TRACES_EXPORTER": exporter}
    result = subprocess.run(
        [sys.executable, "-c", SERVE_AND_LIST_MODULES, PARENT],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("MODULES ")]
    modules = json.loads(line.removeprefix("MODULES "))
    assert fault_agent.attempts("/ok") == 3
    if exporter == "none":
        assert modules == []
    else:
        assert "opentelemetry.sdk.trace" in modules


def test_with_tracing_off_the_callers_trace_id_marks_the_requests_log_lines(
    live_db, gateway_process, fault_agent
):
    add_agent(live_db, "cita", fault_agent.url("/ok"))
    gateway = gateway_process(env={"LOG_LEVEL": "DEBUG"})
    assert post(gateway, "cita", "traced", traceparent=PARENT).status_code == 200
    assert post(gateway, "cita", "untraced").status_code == 200
    assert fault_agent.requests[0].headers["traceparent"] == PARENT  # the caller's, unchanged
    assert gateway.stop() == 0

    traced, untraced = log_lines(gateway, "traced"), log_lines(gateway, "untraced")
    assert [line["event"] for line in traced] == ["agent_call", "request"]
    assert all(line["trace_id"] == CALLER_TRACE for line in traced)
    assert untraced and all("trace_id" not in line for line in untraced)
    startup = next(line for line in log_lines(gateway, "-") if line.get("event") == "startup")
    assert startup["tracing"] == {"exporter": "none"}
