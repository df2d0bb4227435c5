"""AgentHttpClient.build_request: its short path builds the request httpx's own code builds."""

from typing import Any

import httpx
import pytest

from runtime.transport import AgentHttpClient

CLIENT_HEADERS = {"Content-Type": "application/json", "User-Agent": "agent-gateway/test"}


def _httpx_request(method: str, url: str, **kwargs: Any) -> httpx.Request:
    return httpx.AsyncClient(headers=CLIENT_HEADERS).build_request(method, url, **kwargs)


def _as_sent(request: httpx.Request) -> tuple[str, str, list[tuple[str, str]], bytes]:
    headers = sorted((name.lower(), value) for name, value in request.headers.multi_items())
    return request.method, str(request.url), headers, request.content


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("http://127.0.0.1:9000/chat", {"X-Request-ID": "abc"}),
        ("http://agent.internal/chat?v=2", {"x-request-id": "abc", "ACCEPT": "text/plain"}),
        ("https://agent.example:8443/a/b", {"User-Agent": "other", "X-Extra": "1"}),
        ("http://[::1]:9000/chat", None),
    ],
)
def test_the_short_path_builds_what_httpx_builds(url: str, headers: dict[str, str] | None):
    client = AgentHttpClient(headers=CLIENT_HEADERS)
    for _ in range(2):  # the second request starts from the cached per-URL headers
        ours = client.build_request("POST", url, content=b'{"m": 1}', headers=headers)
        assert _as_sent(ours) == _as_sent(
            _httpx_request("POST", url, content=b'{"m": 1}', headers=headers)
        )
        assert ours.extensions["timeout"] == client.timeout.as_dict()


def test_a_request_does_not_change_the_next_one():
    client = AgentHttpClient(headers=CLIENT_HEADERS)
    url = "http://127.0.0.1:9000/chat"
    client.build_request("POST", url, content=b"first body", headers={"X-Request-ID": "one"})
    second = client.build_request("POST", url, content=b"2", headers={"X-Request-ID": "two"})
    assert second.headers["x-request-id"] == "two"
    assert second.headers["content-length"] == "1"
    assert second.headers.get_list("x-request-id") == ["two"]


def test_new_client_headers_reach_the_next_request():
    client = AgentHttpClient(headers=CLIENT_HEADERS)
    url = "http://127.0.0.1:9000/chat"
    client.build_request("POST", url, content=b"x")
    client.headers = {"User-Agent": "changed"}
    assert client.build_request("POST", url, content=b"x").headers["user-agent"] == "changed"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"content": b""},
        {"content": b"x", "headers": {"Host": "elsewhere"}},
        {"content": b"x", "headers": {"Content-Length": "1"}},
        {"json": {"m": 1}},
    ],
)
def test_what_the_short_path_does_not_cover_is_built_by_httpx(kwargs: dict[str, Any]):
    url = "http://127.0.0.1:9000/chat"
    ours = AgentHttpClient(headers=CLIENT_HEADERS).build_request("POST", url, **kwargs)
    assert _as_sent(ours) == _as_sent(_httpx_request("POST", url, **kwargs))
