"""The chat fast lane: POST /api/agent/chat served from the ASGI scope and the body that
HotPathHandler read, with the steps and answers of the ninja operation in chat/api.py: authenticate
and count the rate limit (401, 429), validate the body (400), then `respond`.

It leaves out what costs time and adds nothing here: Django's request and response objects, URL
resolution and ninja's operation machinery (bench/README.md has the figures). A request with an
Origin header takes the ninja path, so django-cors-headers alone decides CORS; for requests
without one it only adds `Vary: origin`, which the lane adds too.
tests/integration/test_chat_fast_lane.py sends the same requests both ways and compares the
answers.
"""

from typing import Any

from chat.api import respond
from chat.errors import InvalidChatBodyError, chat_in_from_body
from gateway_project.auth import authenticate
from gateway_project.ratelimit import RateLimited
from gateway_project.responses import (
    JsonAnswer,
    detail_answer,
    rate_limited_answer,
    unauthorized_answer,
)

CHAT_PATH = "/api/agent/chat"
VARY_ORIGIN = ((b"Vary", b"origin"),)


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


async def serve_chat(scope: dict[str, Any], body: bytes) -> JsonAnswer:
    try:
        principal = await authenticate(request_headers(scope), client_ip(scope))
    except RateLimited as exc:
        return rate_limited_answer(exc.retry_after_s)
    if principal is None:
        return unauthorized_answer()
    try:
        payload = chat_in_from_body(body)
    except InvalidChatBodyError as exc:
        return detail_answer(400, exc.detail)
    return await respond(payload, principal)
