"""The chat fast lane (edge/lean_handler.py) answers exactly as the ninja operation does (both
adapt chat/pipeline.py).

A chat POST without an Origin header takes the fast lane; the same request with an Origin header
(one CORS does not allow, so django-cors-headers adds nothing but `Vary: origin`) goes through
Django and django-ninja. Each pair must get the same status, headers and body.
"""

import logging
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import chat_body

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

CHAT = "/api/agent/chat"
ELSEWHERE = {"Origin": "https://elsewhere.example"}


async def both_ways(
    gateway: httpx.AsyncClient, content: bytes, headers: dict[str, str] | None = None
) -> tuple[httpx.Response, httpx.Response]:
    headers = {"Content-Type": "application/json", **(headers or {})}
    fast = await gateway.post(CHAT, content=content, headers=headers)
    ninja = await gateway.post(CHAT, content=content, headers={**headers, **ELSEWHERE})
    return fast, ninja


def answer(response: httpx.Response) -> tuple[int, list[tuple[str, str]], Any]:
    headers = sorted((k, v) for k, v in response.headers.items() if k != "x-request-id")
    return response.status_code, headers, orjson.loads(response.content)


def encoded(body: Any) -> bytes:
    return body if isinstance(body, bytes) else orjson.dumps(body)


BODIES = [
    pytest.param(chat_body(), id="valid"),
    pytest.param(chat_body(session_id="42", config={"modalidad": " CITA ", "slots": "3"}),
                 id="flexible-fields"),
    pytest.param(chat_body(config={"modalidad": "nadie"}), id="unrouted"),
    pytest.param(b"", id="empty"),
    pytest.param(b"{not json", id="not-json"),
    pytest.param(b"\xff\xfe", id="invalid-utf8"),
    pytest.param(b"[1, 2]", id="list"),
    pytest.param(b'"text"', id="string"),
    pytest.param(b"null", id="null"),
    pytest.param({}, id="empty-object"),
    pytest.param(chat_body(message=""), id="empty-message"),
    pytest.param(chat_body(message=7), id="message-not-text"),
    pytest.param(chat_body(session_id=0), id="session-zero"),
    pytest.param(chat_body(session_id=1e400), id="session-huge-float"),
    pytest.param(chat_body(id_empresa=None), id="no-id-empresa"),
    pytest.param(chat_body(id_empresa=None, config={"modalidad": "cita", "id_empresa": 9}),
                 id="id-empresa-in-config"),
    pytest.param(chat_body(config="cita"), id="config-not-object"),
    pytest.param(chat_body(config=[]), id="config-list"),
    pytest.param(chat_body(config={}), id="config-empty"),
    pytest.param(chat_body(config={"modalidad": "cita", "slots": "many"}), id="slots-not-int"),
    pytest.param(chat_body(config={"modalidad": "cita", "agendar_usuario": "tal vez"}),
                 id="bool-not-bool"),
    pytest.param(chat_body(api_key=["x"]), id="api-key-not-text"),
    pytest.param(b'{"message": "a", "message": "b", "session_id": 1, "id_empresa": 1, '
                 b'"config": {"modalidad": "cita"}}', id="duplicate-keys"),
    pytest.param(b'{"message": NaN}', id="nan"),
    pytest.param(b"[" * 2000 + b"]" * 2000, id="deep-nesting"),
]  # fmt: skip


@pytest.mark.parametrize("body", BODIES)
async def test_every_body_gets_the_same_answer_both_ways(
    gateway, make_agent, fault_agent, settings, body
):
    settings.RATE_LIMIT_PER_MINUTE = 0
    make_agent("cita", url=fault_agent.url("/ok"))

    fast, ninja = await both_ways(gateway, encoded(body))

    assert answer(fast) == answer(ninja)
    assert fast.headers["vary"] == "origin"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-key"),
        pytest.param({"X-API-Key": "wrong"}, id="wrong-key"),
        pytest.param({"X-API-Key": "k-right"}, id="right-key"),
        pytest.param({"X-API-Key": " k-right "}, id="padded-key"),
        pytest.param({"Authorization": "Bearer k-right"}, id="bearer"),
        pytest.param({"Authorization": "bearer  k-right"}, id="bearer-lower-case"),
        pytest.param({"Authorization": "Basic k-right"}, id="basic"),
        pytest.param({"X_API_KEY": "k-right"}, id="underscore-name"),
    ],
)
async def test_auth_gets_the_same_answer_both_ways(
    gateway, make_agent, fault_agent, settings, headers
):
    settings.RATE_LIMIT_PER_MINUTE = 0
    settings.GATEWAY_API_KEYS = ["k-other", "k-right"]
    make_agent("cita", url=fault_agent.url("/ok"))

    fast, ninja = await both_ways(gateway, orjson.dumps(chat_body()), headers)

    assert answer(fast) == answer(ninja)


async def test_a_repeated_key_header_is_joined_as_django_joins_it(
    gateway, make_agent, fault_agent, settings
):
    settings.RATE_LIMIT_PER_MINUTE = 0
    settings.GATEWAY_API_KEYS = ["k-right"]
    make_agent("cita", url=fault_agent.url("/ok"))
    headers = [("content-type", "application/json"), ("x-api-key", "k-right")] * 2
    body = orjson.dumps(chat_body())

    fast = await gateway.post(CHAT, content=body, headers=headers)
    ninja = await gateway.post(CHAT, content=body, headers=[*headers, ("origin", "https://x.io")])

    assert fast.status_code == ninja.status_code == 401  # "k-right,k-right" is no key


async def test_both_ways_count_against_one_rate_limit(gateway, make_agent, fault_agent, settings):
    settings.RATE_LIMIT_PER_MINUTE = 2
    make_agent("cita", url=fault_agent.url("/ok"))
    body = orjson.dumps(chat_body())

    fast, ninja = await both_ways(gateway, body)
    assert (fast.status_code, ninja.status_code) == (200, 200)
    fast, ninja = await both_ways(gateway, body)

    assert (fast.status_code, ninja.status_code) == (429, 429)
    assert fast.json() == ninja.json()
    assert int(fast.headers["retry-after"]) >= 1 and int(ninja.headers["retry-after"]) >= 1


async def test_a_chat_post_without_origin_builds_no_django_request(
    gateway, make_agent, fault_agent, settings, monkeypatch
):
    """The lane is really taken: with Django's request class broken, only the Origin request
    (which needs one) fails."""
    from edge.lean_handler import HotPathHandler

    def broken(*args: Any) -> None:
        raise RuntimeError("no Django request expected")

    monkeypatch.setattr(HotPathHandler, "request_class", broken)
    settings.RATE_LIMIT_PER_MINUTE = 0
    make_agent("cita", url=fault_agent.url("/ok"))

    fast, ninja = await both_ways(gateway, orjson.dumps(chat_body()))

    assert fast.status_code == 200
    assert fast.json()["reply"] == "echo: Quiero agendar una cita"
    assert ninja.status_code == 400


async def test_a_refusal_is_logged_as_rejected_both_ways(gateway, settings, caplog):
    settings.GATEWAY_API_KEYS = ["k-right"]

    with caplog.at_level(logging.INFO, logger="gateway.access"):
        await both_ways(gateway, orjson.dumps(chat_body()))

    access = [(r.status, r.outcome) for r in caplog.records if r.name == "gateway.access"]
    assert access == [(401, "rejected"), (401, "rejected")]


async def test_an_unexpected_error_in_the_lane_is_the_contracts_json_500(
    gateway, make_agent, fault_agent, settings, monkeypatch
):
    from chat import messages, pipeline

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(pipeline, "chat_handle", broken)
    settings.RATE_LIMIT_PER_MINUTE = 0
    make_agent("cita", url=fault_agent.url("/ok"))

    response = await gateway.post(CHAT, json=chat_body())

    assert response.status_code == 500
    assert response.json() == {"detail": messages.INTERNAL_ERROR}
    assert response.headers["x-request-id"]
