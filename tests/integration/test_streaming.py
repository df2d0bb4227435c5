"""Streamed replies (issue 17, Streaming): a real agent server streaming events (tests/
fault_agent.py, /sse/...), driven through the real gateway: in-process for what the body says,
as a uvicorn process for timing, disconnects and the drain (httpx's ASGI transport buffers a
response whole)."""

import asyncio
import json
import logging
import re
import signal
import socket
import threading
import time

import httpx
import orjson
import pytest

from agents.models import DEFAULT_FALLBACK_REPLY
from chat import messages
from tests.conftest import chat_body
from tests.metrics import sample, sample_or_absent

pytestmark = [pytest.mark.integration]

CHAT = "/api/agent/chat"
SSE = {"Accept": "text/event-stream"}
EVENT = re.compile(rb"id: (\d+)\ndata: token \1\n\n")


def events_of(body: bytes) -> list[bytes]:
    """The events of a stream body, each with its blank line."""
    return [part + b"\n\n" for part in body.split(b"\n\n") if part]


def error_event(reason: str, reply: str = DEFAULT_FALLBACK_REPLY) -> bytes:
    data = orjson.dumps({"reply": reply, "reason": reason})
    return b"event: error\ndata: " + data + b"\n\n"


def tokens(count: int, first: int = 0) -> list[bytes]:
    return [b"id: %d\ndata: token %d\n\n" % (i, i) for i in range(first, first + count)]


async def counted(gateway: httpx.AsyncClient, name: str, **labels: str) -> float:
    """A sample of the in-process gateway's /metrics; 0 while the series is not exported (the
    process's counters outlive a test: compare before and after)."""
    return sample_or_absent((await gateway.get("/metrics")).text, name, **labels) or 0.0


# -- in-process: what the caller receives ---------------------------------------------------------


@pytest.mark.asyncio
async def test_a_stream_is_relayed_whole_with_its_headers(gateway, make_agent, fault_agent):
    make_agent("cita", url=fault_agent.url("/sse/3/0.05"))
    response = await gateway.post(
        CHAT, json=chat_body(), headers={**SSE, "X-Request-ID": "stream-1"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["x-request-id"] == "stream-1"
    assert "content-length" not in response.headers
    assert "x-gateway-fallback" not in response.headers
    assert events_of(response.content) == tokens(3)
    # The caller's Accept went to the agent, with no compression asked for.
    sent = fault_agent.last_request().headers
    assert sent["accept"] == "text/event-stream"
    assert sent["accept-encoding"] == "identity"


@pytest.mark.asyncio
async def test_the_ninja_path_streams_the_same_bytes(gateway, make_agent, fault_agent):
    make_agent("cita", url=fault_agent.url("/sse/3/0.02"))
    fast = await gateway.post(CHAT, json=chat_body(), headers=SSE)
    ninja = await gateway.post(
        CHAT, json=chat_body(), headers={**SSE, "Origin": "https://elsewhere.example"}
    )
    assert fast.content == ninja.content
    assert events_of(ninja.content) == tokens(3)

    def headers(response: httpx.Response) -> list[tuple[str, str]]:
        return sorted((k, v) for k, v in response.headers.items() if k != "x-request-id")

    assert headers(fast) == headers(ninja)


@pytest.mark.asyncio
async def test_a_json_answer_to_a_streaming_request_is_relayed_as_json(
    gateway, make_agent, fault_agent
):
    make_agent("cita", url=fault_agent.url("/ok"))
    streaming = await gateway.post(CHAT, json=chat_body(), headers=SSE)
    assert fault_agent.last_request().headers["accept"] == "text/event-stream"
    plain = await gateway.post(CHAT, json=chat_body())
    # Without the caller's Accept for a stream, the agent gets the contract's headers.
    assert fault_agent.last_request().headers["accept"] == "application/json"
    assert fault_agent.last_request().headers["accept-encoding"] == "gzip, deflate"
    assert streaming.status_code == plain.status_code == 200
    assert streaming.headers["content-type"] == "application/json"
    assert streaming.content == plain.content
    assert streaming.json()["reply"] == "echo: Quiero agendar una cita"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/hang", "timeout"),  # no answer at all
        ("/sse/0/0/stall", "timeout"),  # headers, then no event within timeout_s
        ("/sse/0/0/reset", "connection"),  # headers, then a reset before any event
        ("/status/500", "bad_status"),
    ],
)
async def test_a_failure_before_the_first_event_gets_the_json_fallback(
    gateway, make_agent, fault_agent, path, reason
):
    make_agent("cita", url=fault_agent.url(path), timeout_s=0.5, connect_timeout_s=0.5, retries=0)
    started = time.monotonic()
    response = await gateway.post(CHAT, json=chat_body(), headers=SSE)
    assert time.monotonic() - started < 1.5
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-gateway-fallback"] == reason
    assert response.json() == {
        "reply": DEFAULT_FALLBACK_REPLY, "session_id": 3796, "agent_used": "cita", "url": None
    }  # fmt: skip


@pytest.mark.asyncio
async def test_a_stream_that_ends_without_an_event_is_an_empty_reply(
    gateway, make_agent, fault_agent
):
    make_agent("cita", url=fault_agent.url("/sse/0/0/end"))
    response = await gateway.post(CHAT, json=chat_body(), headers=SSE)
    assert response.headers["x-gateway-fallback"] == "empty_reply"
    assert response.json()["reply"] == messages.EMPTY_REPLY


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "fields", "reason", "events", "seconds"),
    [
        # two events, then silence: ended stream_idle_timeout_s after the second
        ("/sse/2/0.05/stall", {"stream_idle_timeout_s": 0.5}, "timeout", 2, (0.5, 1.2)),
        # an event every 0.1 s for ever: ended stream_max_s after the call began
        ("/sse/-1/0.1", {"stream_max_s": 1, "stream_idle_timeout_s": 0.5}, "timeout", 10,
         (1.0, 1.6)),
        ("/sse/2/0.05/reset", {}, "connection", 2, (0, 1)),  # reset mid-stream
        ("/sse/2/0.05/close", {}, "connection", 2, (0, 1)),  # closed without the last chunk
    ],
)  # fmt: skip
async def test_a_failure_after_the_first_event_ends_the_stream_with_the_error_event(
    gateway, make_agent, fault_agent, path, fields, reason, events, seconds
):
    make_agent("cita", url=fault_agent.url(path), fallback_reply="Se cortó, perdón.", **fields)
    errors = await counted(gateway, "gateway_agent_error_total", agent="cita", error_type=reason)
    answered = await counted(gateway, "gateway_requests_total", agent="cita", status="200")
    started = time.monotonic()
    response = await gateway.post(CHAT, json=chat_body(), headers=SSE)
    elapsed = time.monotonic() - started
    assert seconds[0] <= elapsed < seconds[1]
    assert response.status_code == 200
    assert "x-gateway-fallback" not in response.headers  # sent before the failure
    received = events_of(response.content)
    assert received[-1] == error_event(reason, "Se cortó, perdón.")
    assert received[:-1] == tokens(len(received) - 1)
    assert abs(len(received) - 1 - events) <= 1
    if reason == "timeout":  # the gateway hung up on the agent, which was still streaming
        assert await fault_agent.until(lambda a: len(a.peer_closed_at) == 1, timeout=1)
    assert await counted(gateway, "gateway_agent_error_total", agent="cita",
                         error_type=reason) == errors + 1  # fmt: skip
    assert await counted(gateway, "gateway_requests_total", agent="cita", status="200") == (
        answered + 1
    )
    assert await counted(gateway, "gateway_inflight_requests", agent="cita") == 0


@pytest.mark.asyncio
async def test_a_caller_too_slow_to_take_the_events_cannot_hold_the_stream(
    gateway, make_agent, fault_agent, caplog
):
    """Its socket full, `send` waits; the stream still ends by stream_max_s (+1 s for the error
    event): the agent's connection is closed and the slot given back. Without that end the
    application never returns (the 5 s guard fails the test)."""
    from gateway_project.asgi import application

    make_agent("cita", url=fault_agent.url("/sse/-1/0.05"), stream_max_s=1)
    await gateway.get("/health/live")  # the registry loaded
    body = json.dumps(chat_body()).encode()
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": CHAT, "raw_path": CHAT.encode(), "root_path": "",
        "query_string": b"", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80),
        "headers": [(b"content-type", b"application/json"), (b"accept", b"text/event-stream"),
                    (b"content-length", str(len(body)).encode())],
    }  # fmt: skip
    request = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict] = []

    async def receive() -> dict:
        if request:
            return request.pop()
        await asyncio.Event().wait()  # the caller never leaves
        raise AssertionError

    async def send(message: dict) -> None:
        sent.append(message)
        if len(sent) == 3:  # the start and one event went out; then the socket is full
            await asyncio.Event().wait()

    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        await asyncio.wait_for(application(scope, receive, send), 5)
    # Not cut at stream_max_s (1 s): the error event had its grace (SEND_GRACE_S, 1 s) first.
    assert time.monotonic() - started > 1.5
    assert sent[0]["status"] == 200
    access = [(r.status, r.outcome) for r in caplog.records if r.name == "gateway.access"]
    assert access == [(200, "timeout")]
    assert await fault_agent.until(lambda a: len(a.peer_closed_at) == 1, timeout=1)
    assert await counted(gateway, "gateway_inflight_requests", agent="cita") == 0


@pytest.mark.asyncio
async def test_a_stream_holds_its_concurrency_slot_to_its_end(gateway, make_agent, fault_agent):
    make_agent("cita", url=fault_agent.url("/sse/8/0.1"), max_concurrency=1)
    stream = asyncio.create_task(gateway.post(CHAT, json=chat_body(), headers=SSE))
    assert await fault_agent.until(lambda a: len(a.sse_sent) >= 2)
    for headers in ({}, SSE):
        busy = await gateway.post(CHAT, json=chat_body(), headers=headers)
        assert busy.status_code == 503
        assert busy.json() == {"detail": messages.SATURATED}
        assert busy.headers["retry-after"] == "1"
    scrape = (await gateway.get("/metrics")).text
    assert sample(scrape, "gateway_inflight_requests", agent="cita") == 1
    assert events_of((await stream).content) == tokens(8)
    scrape = (await gateway.get("/metrics")).text
    assert sample(scrape, "gateway_inflight_requests", agent="cita") == 0
    after = await gateway.post(CHAT, json=chat_body(), headers=SSE)
    assert events_of(after.content) == tokens(8)


@pytest.mark.asyncio
async def test_the_breaker_sees_one_outcome_per_stream(gateway, make_agent, fault_agent):
    """Two failures in a row open it: a completed stream between two failed ones is a success
    (it resets the count), and a stream counts once, however many events it had."""
    make_agent(
        "cita", url=fault_agent.url("/sse_next"), breaker_fail_max=2, stream_idle_timeout_s=0.5
    )
    fault_agent.sse_script += ["2/0.02/stall", "5/0.02", "2/0.02/stall", "2/0.02/stall"]

    async def state() -> float:
        scrape = (await gateway.get("/metrics")).text
        return sample(scrape, "gateway_circuit_breaker_state", agent="cita")

    async def stream() -> list[bytes]:
        return events_of((await gateway.post(CHAT, json=chat_body(), headers=SSE)).content)

    assert (await stream())[-1] == error_event("timeout")
    assert await stream() == tokens(5)
    assert (await stream())[-1] == error_event("timeout")
    assert await state() == 0  # closed: the completed stream reset the count
    assert (await stream())[-1] == error_event("timeout")
    assert await state() == 1  # open
    refused = await gateway.post(CHAT, json=chat_body(), headers=SSE)
    assert refused.headers["x-gateway-fallback"] == "circuit_open"
    assert fault_agent.attempts() == 4


# -- a uvicorn process: timing, disconnects, the drain, the JSON path's bytes --------------------


def create_agent(live_db, url: str, **fields) -> None:
    values = {"timeout_s": 2, "connect_timeout_s": 0.5, "max_concurrency": 50,
              "breaker_fail_max": 100000, **fields}  # fmt: skip
    args = ", ".join(f"{name}={value!r}" for name, value in values.items())
    live_db.python(
        "from agents.models import Agent, RoutingName\n"
        f"a = Agent.objects.create(key='cita', name='cita', url={url!r}, {args})\n"
        "RoutingName.objects.create(agent=a, name='cita')"
    )


def timed_events(response: httpx.Response) -> list[tuple[float, bytes]]:
    """Each event of a streamed response with the monotonic time it arrived."""
    received: list[tuple[float, bytes]] = []
    buffer = b""
    for chunk in response.iter_raw():
        buffer += chunk
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            received.append((time.monotonic(), event + b"\n\n"))
    return received


def test_events_arrive_one_by_one_as_the_agent_sends_them(live_db, gateway_process, fault_agent):
    create_agent(live_db, fault_agent.url("/sse/5/0.3"))
    gateway = gateway_process()
    for extra in ({}, {"Origin": "https://elsewhere.example"}):  # fast lane, ninja operation
        fault_agent.sse_sent.clear()
        with httpx.stream(
            "POST", f"{gateway.url}{CHAT}", json=chat_body(), headers={**SSE, **extra}, timeout=10
        ) as response:
            assert response.headers["content-type"] == "text/event-stream"
            assert response.headers["cache-control"] == "no-cache"
            assert response.headers["x-accel-buffering"] == "no"
            assert response.headers["transfer-encoding"] == "chunked"
            received = timed_events(response)
        assert [event for _, event in received] == tokens(5)
        sent = list(fault_agent.sse_sent)
        # The first event reached the caller while the agent still had 1.2 s of events to send,
        # and every event came within 0.1 s of its sending: the timing is the agent's.
        assert received[0][0] < sent[-1] - 1.0
        lags = [arrived - at for (arrived, _), at in zip(received, sent, strict=True)]
        assert max(lags) < 0.1, lags

    scrape = httpx.get(f"{gateway.url}/metrics", timeout=5).text
    assert sample(scrape, "gateway_requests_total", agent="cita", status="200") == 2
    assert sample(scrape, "gateway_stream_events_relayed_total", agent="cita") == 10
    ttfb = sample(scrape, "gateway_stream_time_to_first_byte_seconds_sum", agent="cita")
    assert sample(scrape, "gateway_stream_time_to_first_byte_seconds_count", agent="cita") == 2
    assert ttfb < 0.5
    duration = sample(scrape, "gateway_stream_duration_seconds_sum", agent="cita")
    assert sample(scrape, "gateway_stream_duration_seconds_count", agent="cita") == 2
    assert 2 * 1.2 <= duration < 2 * 2.0
    # The request duration of a stream is its time to the first event, like any answer's.
    assert sample(scrape, "gateway_request_duration_seconds_sum", agent="cita") < 0.5


def test_a_caller_leaving_closes_the_agents_stream_within_1s(live_db, gateway_process, fault_agent):
    create_agent(live_db, fault_agent.url("/sse/-1/0.1"))
    gateway = gateway_process()
    payload = json.dumps(chat_body()).encode()
    sock = socket.create_connection(("127.0.0.1", gateway.port))
    sock.sendall(
        b"POST /api/agent/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Accept: text/event-stream\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload)
    )
    sock.settimeout(5)
    received = b""
    while received.count(b"data: token") < 3:
        received += sock.recv(65536)
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    sock.close()
    left_at = time.monotonic()
    assert fault_agent.wait_for(lambda a: len(a.peer_closed_at) == 1, timeout=1.0)
    assert fault_agent.peer_closed_at[0] - left_at < 1.0

    scrape = httpx.get(f"{gateway.url}/metrics", timeout=5).text
    assert sample(scrape, "gateway_inflight_requests", agent="cita") == 0
    # Counted once, as the caller having left (contract §5), not as the 200 it began as.
    assert sample(scrape, "gateway_requests_total", agent="cita", status="499") == 1
    assert sample_or_absent(scrape, "gateway_requests_total", agent="cita", status="200") in (
        None,
        0,
    )
    assert gateway.stop() == 0
    access = [json.loads(line) for line in gateway.logs().splitlines()
              if line.startswith("{") and '"event":"request"' in line]  # fmt: skip
    assert [(a["status"], a["outcome"]) for a in access if a["path"] == CHAT] == [
        (200, "disconnected")
    ]


def test_sigterm_lets_streams_run_to_the_drain_limit_then_ends_them(
    live_db, gateway_process, fault_agent
):
    """GATEWAY_DRAIN_S 3: a stream that ends within it ends as usual; one that does not gets
    the error event 1 s before uvicorn's own limit (STREAM_DRAIN_MARGIN_S), and the process
    exits 0."""
    create_agent(live_db, fault_agent.url("/sse/-1/0.2"))
    live_db.python(
        "from agents.models import Agent, RoutingName\n"
        f"a = Agent.objects.create(key='corto', name='corto', url={fault_agent.url('/sse/8/0.2')!r})\n"
        "RoutingName.objects.create(agent=a, name='corto')"
    )  # fmt: skip
    gateway = gateway_process("--timeout-graceful-shutdown", "3", env={"GATEWAY_DRAIN_S": "3"})
    results: dict[str, list[tuple[float, bytes]]] = {}

    def stream(modalidad: str) -> None:
        with httpx.stream(
            "POST", f"{gateway.url}{CHAT}", json=chat_body(config={"modalidad": modalidad}),
            headers=SSE, timeout=10,
        ) as response:  # fmt: skip
            results[modalidad] = timed_events(response)

    callers = [threading.Thread(target=stream, args=(m,)) for m in ("cita", "corto")]
    for caller in callers:
        caller.start()
    assert fault_agent.wait_for(lambda a: len(a.sse_sent) >= 4)
    gateway.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    for caller in callers:
        caller.join(10)
    endless, short = results["cita"], results["corto"]
    assert [event for _, event in short] == tokens(8)  # it ended on its own, within the drain
    *events, (ended_at, last) = endless
    assert last == error_event("draining")
    assert [event for _, event in events] == tokens(len(events))
    assert sum(at > signalled + 1 for at, _ in events) >= 4  # it kept streaming meanwhile
    # It ran to the drain limit less 1 s; the error event reached the caller, so it came before
    # uvicorn's cut (the margin itself: tests/unit/test_event_stream.py).
    assert ended_at - signalled > 1.8
    assert gateway.process.wait(10) == 0
    assert "Traceback" not in gateway.logs()


def test_the_json_path_is_unchanged_byte_for_byte(live_db, gateway_process, fault_agent):
    """A chat request without `Accept: text/event-stream` gets the same bytes as before streaming
    existed, whatever else it accepts; its agent gets the contract's Accept."""
    create_agent(live_db, fault_agent.url("/ok"))
    gateway = gateway_process()
    payload = json.dumps(chat_body()).encode()
    body = b'{"reply":"echo: Quiero agendar una cita","session_id":3796,"agent_used":"cita","url":null}'
    expected = (
        b"HTTP/1.1 200 OK\r\nserver: uvicorn\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nvary: origin\r\nx-request-id: fixed-id\r\n\r\n%s"
        % (len(body), body)
    )  # fmt: skip
    for accept in (b"", b"Accept: application/json\r\n", b"Accept: */*\r\n"):
        with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
            sock.sendall(
                b"POST /api/agent/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"X-Request-ID: fixed-id\r\n%sContent-Length: %d\r\n\r\n%s"
                % (accept, len(payload), payload)
            )
            sock.settimeout(5)
            answer = b""
            while not answer.endswith(body):
                answer += sock.recv(65536)
        assert re.sub(rb"date: [^\r]*\r\n", b"", answer) == expected
        headers = fault_agent.last_request().headers
        assert headers["accept"] == "application/json"
        assert headers["accept-encoding"] == "gzip, deflate"
