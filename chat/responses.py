"""JSON answers in the contract's shape, encoded with orjson.

A JsonAnswer is rendered as a Django response by views (`http_response`), or sent straight as
ASGI messages by the chat fast lane (`send_to`, edge/lean_handler.py); both carry the same headers.
"""

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.http import HttpResponse

from chat import messages

JSON = "application/json"


@dataclass(frozen=True, slots=True)
class JsonAnswer:
    status: int
    body: object
    headers: Mapping[str, str] = field(default_factory=dict)

    def http_response(self) -> HttpResponse:
        return json_response(self.status, self.body, self.headers)

    async def send_to(
        self,
        send: Callable[[dict[str, Any]], Awaitable[None]],
        extra_headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        content = orjson.dumps(self.body)
        headers = [
            *(
                (name.encode("latin1"), value.encode("latin1"))
                for name, value in self.headers.items()
            ),
            (b"Content-Type", JSON.encode()),
            (b"Content-Length", str(len(content)).encode()),
            *extra_headers,
        ]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": content})


def detail_answer(status: int, detail: str, headers: Mapping[str, str] | None = None) -> JsonAnswer:
    return JsonAnswer(status, {"detail": detail}, headers or {})


def unauthorized_answer() -> JsonAnswer:
    return detail_answer(401, messages.UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})


def rate_limited_answer(retry_after_s: int) -> JsonAnswer:
    return detail_answer(429, messages.RATE_LIMITED, {"Retry-After": str(retry_after_s)})


def json_response(
    status: int, body: object, headers: Mapping[str, str] | None = None
) -> HttpResponse:
    content = orjson.dumps(body)
    response = HttpResponse(content, content_type=JSON, status=status, headers=headers)
    response["Content-Length"] = str(len(content))
    return response


def detail_response(
    status: int, detail: str, headers: Mapping[str, str] | None = None
) -> HttpResponse:
    return detail_answer(status, detail, headers).http_response()
