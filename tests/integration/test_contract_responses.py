"""Every row of the contract's response table, against a real agent server and the real ASGI app."""

import asyncio
import json
import re
import time

import pytest

from agents.models import DEFAULT_FALLBACK_REPLY
from chat import messages
from tests.conftest import chat_body
from tests.fault_agent import refused_url

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

CHAT = "/api/agent/chat"


async def test_agent_reply_is_returned(gateway, make_agent, fault_agent):
    make_agent("cita", url=fault_agent.url("/ok_url"), routing_names=["cita", "citas"])

    response = await gateway.post(CHAT, json=chat_body(config={"modalidad": " Citas "}))

    assert response.status_code == 200
    assert response.json() == {
        "reply": "con enlace",
        "session_id": 3796,
        "agent_used": "cita",
        "url": "https://example.test/x",
    }
    assert "x-gateway-fallback" not in response.headers


async def test_empty_url_counts_as_null(gateway, make_agent, fault_agent):
    make_agent("cita", url=fault_agent.url("/ok"))
    response = await gateway.post(CHAT, json=chat_body())
    assert response.json()["url"] is None
    assert response.json()["reply"] == "echo: Quiero agendar una cita"


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/status/500", "bad_status"),
        ("/status/404", "bad_status"),
        ("/garbage", "decode"),
        ("/noreply", "decode"),
        ("/huge", "too_large"),
        ("/huge_chunked", "too_large"),
        ("/reset", "connection"),
        ("/reset_mid", "connection"),
    ],
)
async def test_agent_failure_gives_fallback(gateway, make_agent, fault_agent, path, reason):
    make_agent("cita", url=fault_agent.url(path), retries=0)

    response = await gateway.post(CHAT, json=chat_body())

    assert response.status_code == 200
    assert response.headers["x-gateway-fallback"] == reason
    assert response.json() == {
        "reply": DEFAULT_FALLBACK_REPLY,
        "session_id": 3796,
        "agent_used": "cita",
        "url": None,
    }


async def test_refused_connection_gives_fallback(gateway, make_agent):
    make_agent("cita", url=refused_url(), retries=0)
    response = await gateway.post(CHAT, json=chat_body())
    assert response.status_code == 200
    assert response.headers["x-gateway-fallback"] == "connection"


async def test_timeout_gives_fallback_with_custom_text(gateway, make_agent, fault_agent):
    make_agent("cita", url=fault_agent.url("/hang"), timeout_s=0.5, fallback_reply="Vuelve luego")
    response = await gateway.post(CHAT, json=chat_body())
    assert response.headers["x-gateway-fallback"] == "timeout"
    assert response.json()["reply"] == "Vuelve luego"


async def test_disabled_agent_gives_fallback_without_calling_it(gateway, make_agent, fault_agent):
    make_agent("cita", url=fault_agent.url("/ok"), enabled=False)
    response = await gateway.post(CHAT, json=chat_body())
    assert response.status_code == 200
    assert response.headers["x-gateway-fallback"] == "disabled"
    assert fault_agent.attempts() == 0


async def test_empty_reply_gets_the_contract_text(gateway, make_agent, fault_agent):
    make_agent("cita", url=fault_agent.url("/empty"))
    response = await gateway.post(CHAT, json=chat_body())
    assert response.status_code == 200
    assert response.json() == {
        "reply": messages.EMPTY_REPLY,
        "session_id": 3796,
        "agent_used": "cita",
        "url": None,
    }


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"not json", messages.INVALID_JSON),
        (b"[1, 2]", messages.INVALID_JSON),
        (b'"text"', messages.INVALID_JSON),
        (b"", messages.INVALID_JSON),
        (
            b'{"message": "  ", "session_id": 1, "id_empresa": 1, "config": {"modalidad": "cita"}}',
            messages.EMPTY_MESSAGE,
        ),
        (
            b'{"session_id": 1, "id_empresa": 1, "config": {"modalidad": "cita"}}',
            messages.EMPTY_MESSAGE,
        ),
        (
            b'{"message": "x", "session_id": 0, "id_empresa": 1, "config": {"modalidad": "cita"}}',
            messages.BAD_SESSION_ID,
        ),
        (
            b'{"message": "x", "session_id": "abc", "id_empresa": 1, "config": {"modalidad": "cita"}}',
            messages.BAD_SESSION_ID,
        ),
        (
            b'{"message": "x", "id_empresa": 1, "config": {"modalidad": "cita"}}',
            messages.BAD_SESSION_ID,
        ),
        (
            b'{"message": "x", "session_id": 1, "config": {"modalidad": "cita"}}',
            messages.BAD_ID_EMPRESA,
        ),
        (
            b'{"message": "x", "session_id": 1, "id_empresa": -3, "config": {"modalidad": "cita"}}',
            messages.BAD_ID_EMPRESA,
        ),
        (
            b'{"message": "x", "session_id": 1, "id_empresa": 1, "config": {"modalidad": " "}}',
            messages.EMPTY_MODALIDAD,
        ),
        (b'{"message": "x", "session_id": 1, "id_empresa": 1}', messages.EMPTY_MODALIDAD),
        (
            b'{"message": "x", "session_id": 1, "id_empresa": 1, "config": {"modalidad": "cita", "slots": "muchos"}}',
            messages.not_integer("config.slots"),
        ),
        (
            b'{"message": "x", "session_id": 1, "id_empresa": 1, "config": {"modalidad": "cita", "agendar_usuario": [1]}}',
            messages.not_boolean("config.agendar_usuario"),
        ),
    ],
)
async def test_validation_errors_use_the_contract_messages(
    gateway, make_agent, fault_agent, body, detail
):
    make_agent("cita", url=fault_agent.url("/ok"))
    response = await gateway.post(CHAT, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"detail": detail}
    assert fault_agent.attempts() == 0


async def test_unrouted_modalidad_is_a_400_naming_the_value(gateway, make_agent, fault_agent):
    make_agent("cita", url=fault_agent.url("/ok"))
    response = await gateway.post(CHAT, json=chat_body(config={"modalidad": "Astrología "}))
    assert response.status_code == 400
    assert response.json() == {"detail": "Modalidad no reconocida: Astrología "}


async def test_unrouted_modalidad_goes_to_the_fallback_route(
    gateway, make_agent, fault_agent, caplog
):
    from chat import metrics

    make_agent("cita", url=fault_agent.url("/slow/0"))
    make_agent(
        "general", url=fault_agent.url("/ok"), routing_names=["general"], is_fallback_route=True
    )
    before = metrics.unrouted_total._value.get()

    response = await gateway.post(CHAT, json=chat_body(config={"modalidad": "astrologia"}))

    assert response.status_code == 200
    assert response.json()["agent_used"] == "general"
    assert metrics.unrouted_total._value.get() == before + 1
    assert any(getattr(r, "event", None) == "unrouted_modalidad" for r in caplog.records)


@pytest.mark.parametrize(
    "method", ["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "QUERY", "FOO"]
)
async def test_other_methods_get_405(gateway, method):
    response = await gateway.request(method, CHAT)
    assert response.status_code == 405
    assert response.json() == {"detail": messages.METHOD_NOT_ALLOWED}
    assert response.headers["allow"] == "POST"


async def test_body_over_512kb_by_content_length_is_413(gateway, make_agent, fault_agent):
    make_agent("cita", url=fault_agent.url("/ok"))
    body = b'{"message": "' + b"x" * (512 * 1024) + b'"}'
    response = await gateway.post(CHAT, content=body)
    assert response.status_code == 413
    assert response.json() == {"detail": messages.BODY_TOO_LARGE}


async def test_a_declared_length_over_512kb_is_413_at_once_without_waiting_for_the_body(
    gateway_process,
):
    """Over a raw socket to a real server, so the declared length really differs from what is
    sent: 600,000 bytes announced, a short body sent, the rest never. The 413 is judged from the
    header: it comes at once, not after BODY_READ_TIMEOUT_S spent waiting for the body."""
    body_read_timeout_s = 10.0
    gateway = gateway_process(env={"BODY_READ_TIMEOUT_S": str(body_read_timeout_s)})
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        started = time.monotonic()
        writer.write(
            b"POST /api/agent/chat HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 600000\r\n\r\n"
            + json.dumps(chat_body()).encode()
        )
        await writer.drain()

        async def read_response() -> tuple[bytes, bytes]:
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length: *(\d+)", head)
            assert length is not None, head
            return head, await reader.readexactly(int(length.group(1)))

        # Waits past the body timeout, so a late answer shows what it was and when it came.
        head, body = await asyncio.wait_for(read_response(), timeout=body_read_timeout_s + 5)
        elapsed = time.monotonic() - started
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 413 "), (head, body, elapsed)
    assert json.loads(body) == {"detail": messages.BODY_TOO_LARGE}
    assert messages.BODY_TOO_LARGE == "Body demasiado grande (máx. 512 KB)"
    assert elapsed < 2, f"413 after {elapsed:.1f} s"


async def test_streamed_body_over_512kb_is_413_before_reading_it_all(gateway):
    sent = 0

    async def chunks():
        nonlocal sent
        for _ in range(64):  # 4 MB offered in 64 KB chunks, no Content-Length
            sent += 1
            yield b"x" * 65536

    response = await gateway.post(CHAT, content=chunks())
    assert response.status_code == 413
    assert response.json() == {"detail": messages.BODY_TOO_LARGE}
    assert sent <= 10  # stopped reading just past 512 KB


async def test_body_of_exactly_512kb_is_read(gateway, make_agent, fault_agent):
    make_agent("cita", url=fault_agent.url("/ok"))
    padding = 512 * 1024 - len(
        b'{"message": "x", "session_id": 1, "id_empresa": 1, "config": {"modalidad": "cita"}, "pad": ""}'
    )
    body = (
        b'{"message": "x", "session_id": 1, "id_empresa": 1, "config": {"modalidad": "cita"}, "pad": "'
        + b"p" * padding
        + b'"}'
    )
    assert len(body) == 512 * 1024
    response = await gateway.post(CHAT, content=body)
    assert response.status_code == 200


async def test_backpressure_is_503_with_retry_after(gateway, make_agent, fault_agent):
    import asyncio

    make_agent("cita", url=fault_agent.url("/slow/1"), max_concurrency=1)
    first = asyncio.create_task(gateway.post(CHAT, json=chat_body()))
    assert await fault_agent.until(lambda a: a.attempts() == 1)

    second = await gateway.post(CHAT, json=chat_body())

    assert second.status_code == 503
    assert second.json() == {"detail": messages.SATURATED}
    assert second.headers["retry-after"] == "1"
    assert (await first).status_code == 200


class TestAuth:
    async def test_missing_or_wrong_key_is_401(self, gateway, settings, make_agent, fault_agent):
        settings.GATEWAY_API_KEYS = ["k-one", "k-two"]
        make_agent("cita", url=fault_agent.url("/ok"))
        for headers in (
            {},
            {"X-API-Key": "nope"},
            {"Authorization": "Bearer nope"},
            {"Authorization": "Basic k-one"},
        ):
            response = await gateway.post(CHAT, json=chat_body(), headers=headers)
            assert response.status_code == 401, headers
            assert response.json() == {"detail": messages.UNAUTHORIZED}
        assert fault_agent.attempts() == 0

    async def test_key_in_query_string_is_refused(self, gateway, settings, make_agent, fault_agent):
        settings.GATEWAY_API_KEYS = ["k-one"]
        make_agent("cita", url=fault_agent.url("/ok"))
        response = await gateway.post(f"{CHAT}?api_key=k-one&X-API-Key=k-one", json=chat_body())
        assert response.status_code == 401

    @pytest.mark.parametrize("headers", [{"X-API-Key": "k-two"}, {"Authorization": "Bearer k-one"}])
    async def test_valid_key_passes(self, gateway, settings, make_agent, fault_agent, headers):
        settings.GATEWAY_API_KEYS = ["k-one", "k-two"]
        make_agent("cita", url=fault_agent.url("/ok"))
        response = await gateway.post(CHAT, json=chat_body(), headers=headers)
        assert response.status_code == 200


class TestRequestId:
    async def test_valid_caller_id_is_echoed_and_forwarded(self, gateway, make_agent, fault_agent):
        make_agent("cita", url=fault_agent.url("/ok"))
        response = await gateway.post(
            CHAT, json=chat_body(), headers={"X-Request-ID": "n8n:run-42.a_b"}
        )
        assert response.headers["x-request-id"] == "n8n:run-42.a_b"
        assert fault_agent.last_request().headers["x-request-id"] == "n8n:run-42.a_b"

    @pytest.mark.parametrize("bad", ["has space", "x" * 129, "semi;colon", "ñ"])
    async def test_invalid_caller_id_is_replaced(self, gateway, make_agent, fault_agent, bad):
        make_agent("cita", url=fault_agent.url("/ok"))
        response = await gateway.post(
            CHAT, json=chat_body(), headers={"X-Request-ID": bad.encode("utf-8")}
        )
        fresh = response.headers["x-request-id"]
        assert fresh != bad and 1 <= len(fresh) <= 128
        assert fault_agent.last_request().headers["x-request-id"] == fresh

    async def test_every_response_carries_an_id(self, gateway):
        for method, path in [
            ("GET", "/"),
            ("GET", "/health/live"),
            ("GET", CHAT),
            ("GET", "/nope"),
        ]:
            response = await gateway.request(method, path)
            assert response.headers.get("x-request-id"), path


async def test_agent_receives_the_contract_headers(gateway, make_agent, fault_agent):
    make_agent("cita", url=fault_agent.url("/ok"))
    await gateway.post(CHAT, json=chat_body())
    headers = fault_agent.last_request().headers
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/json"
    assert headers["user-agent"] == "agent-gateway/1.0.0"


async def test_service_info_docs_and_unknown_paths(gateway):
    info = await gateway.get("/")
    assert info.status_code == 200
    assert info.json()["status"] == "running"
    assert (await gateway.get("/api/docs")).status_code == 200
    assert (await gateway.get("/api/openapi.json")).json()["paths"]["/api/agent/chat"]["post"]
    missing = await gateway.get("/nothing-here")
    assert missing.status_code == 404
    assert missing.json() == {"detail": messages.NOT_FOUND}


@pytest.mark.parametrize("path", ["/health", "/health/live", "/health/ready", "/metrics"])
async def test_hot_get_paths_refuse_other_methods_in_json(gateway, path):
    response = await gateway.post(path)
    assert response.status_code == 405
    assert response.json() == {"detail": messages.METHOD_NOT_ALLOWED}
    assert response.headers["allow"] == "GET, HEAD"
    assert (await gateway.head(path)).status_code in (200, 503)
