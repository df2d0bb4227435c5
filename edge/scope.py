"""Reading an ASGI request scope the way Django would, without building a request object."""

from typing import Any

from chat.pipeline import CHAT_PATH

VARY_ORIGIN = ((b"Vary", b"origin"),)


def is_chat_post(scope: dict[str, Any]) -> bool:
    return scope["method"] == "POST" and scope["path"] == CHAT_PATH


def takes_fast_lane(scope: dict[str, Any]) -> bool:
    """A chat POST without an Origin header: answered without Django. One with an Origin header
    goes through Django, so that django-cors-headers alone decides CORS; for requests without
    one it only adds `Vary: origin`, which the lane adds too."""
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


def client_address(scope: dict[str, Any]) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


def declared_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
