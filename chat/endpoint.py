"""The chat fast lane: POST /api/agent/chat served from the ASGI scope and the body that
HotPathHandler read, with the steps and answers of the ninja operation in chat/api.py: validate the
body (400), then `respond`. The caller was authenticated and counted against its rate limit before
the body was read (`admit_chat`: 503 before the agents are loaded, 401, 429), for both paths.

It leaves out what costs time and adds nothing here: Django's request and response objects, URL
resolution and ninja's operation machinery (bench/README.md has the figures). A request with an
Origin header takes the ninja path, so django-cors-headers alone decides CORS; for requests
without one it only adds `Vary: origin`, which the lane adds too.
tests/integration/test_chat_fast_lane.py sends the same requests both ways and compares the
answers.
"""

from typing import Any

from agents.registry import registry
from chat import messages
from chat.api import respond
from chat.errors import InvalidChatBodyError, chat_in_from_body
from gateway_project.auth import Principal, authenticate
from gateway_project.ratelimit import RateLimited
from gateway_project.responses import (
    JsonAnswer,
    detail_answer,
    rate_limited_answer,
    unauthorized_answer,
)

RETRY_AFTER_NOT_LOADED_S = 2

CHAT_PATH = "/api/agent/chat"
VARY_ORIGIN = ((b"Vary", b"origin"),)


def is_chat_post(scope: dict[str, Any]) -> bool:
    return scope["method"] == "POST" and scope["path"] == CHAT_PATH


def takes_fast_lane(scope: dict[str, Any]) -> bool:
    if scope["method"] != "POST" or scope["path"] != CHAT_PATH:
        return False
    return not any(name == b"origin" for name, _ in scope.get("headers", ()))


def request_headers(scope: dict[str, Any]) -> dict[str, str]:
    """The headers as Django's request.headers reads them: lower-case names, latin-1 values, a
    repeated header joined with commas, and names with `_` dropped (they could pose as `-`)."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin1").lower()
        if "_" in name:
            continue
        value = raw_value.decode("latin1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


def client_ip(scope: dict[str, Any]) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


async def admit_chat(scope: dict[str, Any]) -> Principal | JsonAnswer:
    """Before the body is read: the caller, or the refusal that answers it (503 while the agents
    were never loaded, 401, 429). Judged from the headers alone, whatever the Content-Length."""
    if not registry.snapshot.loaded:
        return detail_answer(
            503, messages.NOT_LOADED, {"Retry-After": str(RETRY_AFTER_NOT_LOADED_S)}
        )
    try:
        principal = await authenticate(request_headers(scope), client_ip(scope))
    except RateLimited as exc:
        return rate_limited_answer(exc.retry_after_s)
    if principal is None:
        return unauthorized_answer()
    return principal


async def serve_chat(body: bytes, principal: Principal) -> JsonAnswer:
    try:
        payload = chat_in_from_body(body)
    except InvalidChatBodyError as exc:
        return detail_answer(400, exc.detail)
    return await respond(payload, principal)
