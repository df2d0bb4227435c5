"""Retries agents can trust (contract §5 "Attempts"), against real local agent servers: every
attempt carries `X-Gateway-Attempt: <n>` and the request id as `Idempotency-Key`; `retry_on`
decides which connection failures are retried."""

import asyncio
import socket
import threading
import time

import aiohttp
import pytest

from runtime import calls
from runtime.client import map_agent_errors
from runtime.errors import (
    AgentConnectionError,
    AgentTimeoutError,
    NotSentConnectionError,
    RetryableConnectionError,
)
from tests.conftest import chat_body
from tests.fault_agent import FaultAgent

CHAT = "/api/agent/chat"


def sent_attempts(agent: FaultAgent, path: str) -> list[tuple[str, str]]:
    """(X-Gateway-Attempt, Idempotency-Key) of each request the agent received on `path`."""
    return [
        (r.headers.get("x-gateway-attempt", ""), r.headers.get("idempotency-key", ""))
        for r in agent.requests
        if r.path == path
    ]


def close_idle_connections(agent: FaultAgent) -> None:
    """The agent closes (FIN) every connection it holds, as a server whose keep-alive ran out."""

    async def close() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()  # FaultAgent._handle closes its connection when cancelled
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0.05)  # the transports close their sockets a loop pass later

    assert agent._loop is not None
    asyncio.run_coroutine_threadsafe(close(), agent._loop).result(5)


def reserved_socket() -> socket.socket:
    """A port bound but not listening: connections to it are refused until `listen_on` runs."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def listen_on(sock: socket.socket) -> FaultAgent:
    """A FaultAgent (in its own thread, like `FaultAgent.start`) serving on `sock` from now."""
    agent = FaultAgent(port=sock.getsockname()[1])
    ready = threading.Event()

    def run() -> None:
        loop = asyncio.new_event_loop()
        agent._loop = loop
        sock.listen(128)
        agent._server = loop.run_until_complete(asyncio.start_server(agent._handle, sock=sock))
        ready.set()
        loop.run_forever()
        loop.close()

    agent._thread = threading.Thread(target=run, name="late-agent", daemon=True)
    agent._thread.start()
    assert ready.wait(5)
    return agent


async def test_every_attempt_carries_its_number_and_the_same_idempotency_key(
    gateway, make_agent, fault_agent
):
    make_agent("cita", url=fault_agent.url("/flap/1"), retries=1)
    response = await gateway.post(CHAT, json=chat_body())
    assert response.status_code == 200 and "x-gateway-fallback" not in response.headers
    request_id = response.headers["x-request-id"]
    assert sent_attempts(fault_agent, "/flap/1") == [("1", request_id), ("2", request_id)]
    assert {r.headers["x-request-id"] for r in fault_agent.requests} == {request_id}


async def test_the_next_chat_request_starts_again_at_attempt_1_with_its_own_key(
    gateway, make_agent, fault_agent
):
    make_agent("cita", url=fault_agent.url("/ok"))
    first = await gateway.post(CHAT, json=chat_body())
    second = await gateway.post(CHAT, json=chat_body())
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert ids[0] != ids[1]
    assert sent_attempts(fault_agent, "/ok") == [("1", ids[0]), ("1", ids[1])]


@pytest.mark.parametrize("path", ["/reset", "/close"])
async def test_connect_mode_never_retries_a_request_the_agent_may_have_received(
    gateway, make_agent, fault_agent, path
):
    make_agent("cita", url=fault_agent.url(path), retries=2, retry_on="connect")
    response = await gateway.post(CHAT, json=chat_body())
    assert response.headers["x-gateway-fallback"] == "connection"
    assert sent_attempts(fault_agent, path) == [("1", response.headers["x-request-id"])]


async def test_connect_or_reset_retries_a_reset(gateway, make_agent, fault_agent):
    make_agent("cita", url=fault_agent.url("/reset"), retries=1, retry_on="connect_or_reset")
    response = await gateway.post(CHAT, json=chat_body())
    assert response.headers["x-gateway-fallback"] == "connection"
    request_id = response.headers["x-request-id"]
    assert sent_attempts(fault_agent, "/reset") == [("1", request_id), ("2", request_id)]


async def test_connect_mode_retries_a_refused_connection_and_counts_the_refused_try(
    gateway, make_agent, monkeypatch
):
    """The agent is down (its port refuses) on the first try and up by the second: the request
    it gets says attempt 2, though attempt 1 never reached it."""
    monkeypatch.setattr(calls, "RETRY_BACKOFF_S", (0.6, 0.6))
    sock = reserved_socket()
    port = sock.getsockname()[1]
    make_agent("cita", url=f"http://127.0.0.1:{port}/ok", retries=1, retry_on="connect")
    call = asyncio.create_task(gateway.post(CHAT, json=chat_body()))
    await asyncio.sleep(0.2)  # attempt 1 has been refused (in ~1 ms); the backoff runs to 0.6 s
    assert not call.done()
    agent = listen_on(sock)
    try:
        response = await call
        assert response.status_code == 200 and "x-gateway-fallback" not in response.headers
        assert sent_attempts(agent, "/ok") == [("2", response.headers["x-request-id"])]
        assert agent.connections_opened == 1
    finally:
        agent.stop()
        sock.close()


async def test_connect_mode_retries_a_kept_alive_connection_the_agent_closed(
    gateway, make_agent, fault_agent, settings
):
    """The agent closes its idle keep-alive connection just as the gateway reuses it: the
    gateway finds it closing before writing the request (aiohttp's "Cannot write to closing
    transport"), so the agent cannot have received it, and a `connect` agent is retried on a
    new connection."""
    make_agent("cita", url=fault_agent.url("/ok"), retries=1, retry_on="connect")
    first = await gateway.post(CHAT, json=chat_body())
    assert first.status_code == 200 and fault_agent.connections_opened == 1
    close_idle_connections(fault_agent)
    time.sleep(0.1)  # the FIN arrives while this loop is busy: the pool still holds the socket
    await asyncio.sleep(0)  # the next request picks it up in the loop pass that sees the FIN
    second = await gateway.post(CHAT, json=chat_body())
    assert second.status_code == 200 and "x-gateway-fallback" not in second.headers
    assert sent_attempts(fault_agent, "/ok") == [
        ("1", first.headers["x-request-id"]),
        ("2", second.headers["x-request-id"]),  # attempt 1 of this request never arrived
    ]
    assert fault_agent.connections_opened == 2


def _unwritable_body_error() -> aiohttp.ClientOSError:
    """What aiohttp raises writing to a kept-alive connection the agent already closed."""
    error = aiohttp.ClientOSError(32, "Can not write request body")
    error.__cause__ = aiohttp.ClientConnectionResetError("Cannot write to closing transport")
    return error


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        # (a refused connection: test_resilience.py's refused-connection tests, for real)
        (ConnectionResetError(104, "Connection reset by peer"), RetryableConnectionError),
        (aiohttp.ServerDisconnectedError(), RetryableConnectionError),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), RetryableConnectionError),
        (_unwritable_body_error(), NotSentConnectionError),
        (aiohttp.ClientConnectionResetError("Connection lost"), NotSentConnectionError),
        (aiohttp.ConnectionTimeoutError("connect timed out"), AgentTimeoutError),
        (aiohttp.SocketTimeoutError("read timed out"), AgentTimeoutError),
        (aiohttp.ClientPayloadError("garbage"), AgentConnectionError),
    ],
)
def test_each_transport_error_is_classified_once(error, expected):
    with pytest.raises(expected) as caught, map_agent_errors():
        raise error
    assert type(caught.value) is expected  # "maybe sent" is not NotSentConnectionError
