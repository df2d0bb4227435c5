"""The connection pool under each agent's client: one aiohttp session per agent.

Chosen by measurement (bench/README.md; "Performance" in the README). httpx's own transport
(httpcore over anyio) cost ~2.5 ms of CPU per call at 16 in flight, most of it in httpcore's pool
bookkeeping, which scans every connection on each request; aiohttp's pool ~0.15 ms. Until
2026-12 the gateway kept httpx's client API over this pool; dropping that adapter (its request,
header and response objects, and a second error map) cut the CPU per proxied call by a further
~15 % (bench/README.md, "One agent client").

Timeouts: `connect` bounds the wait for a free connection plus the connect (the agent's
`timeout_s`), `sock_connect` a TCP connect (`connect_timeout_s`). The agent call's overall
deadline (runtime/calls.py) bounds stuck reads and writes.
"""

import ssl
from typing import Any

import aiohttp


class _IdleCappedConnector(aiohttp.TCPConnector):
    """aiohttp's pool with a cap on idle connections: a connection given back while `max_idle`
    already wait for reuse is closed instead of kept. aiohttp keeps every connection of a burst
    for `keepalive_timeout`; with this cap, 1,000 calls at once leave a few idle sockets and their
    buffers behind, not 1,000 (bench/README.md, memory after a burst).
    It overrides aiohttp's private `_release` (aiohttp is pinned; tests/unit/test_library_pins.py
    fails if its signature changes, and test_resilience.py's keep-alive cap test if it stops
    being called)."""

    def __init__(self, *, max_idle: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._max_idle = max_idle

    def _release(self, key: Any, protocol: Any, *, should_close: bool = False) -> None:
        idle = self._conns.get(key)
        if idle is not None and len(idle) >= self._max_idle:
            should_close = True
        super()._release(key, protocol, should_close=should_close)


def agent_session(
    *,
    max_connections: int,
    max_idle: int,
    keepalive_s: float,
    ssl_context: ssl.SSLContext | None = None,
    proxy: str | None = None,
) -> aiohttp.ClientSession:
    """A session for one agent (create it on the event loop that uses it).

    `ssl_context`: the agent's own TLS settings (None: aiohttp's default, the system's CAs);
    `proxy`: its egress proxy, set once on the session (runtime/tls.py chooses it). Both are
    fixed for the session's life, so they cost nothing per request.

    No cookie jar: agents are APIs shared by every n8n session, so a cookie one caller got must
    never be sent on another caller's request (and parsing Set-Cookie costs time). No automatic
    decompression: AgentClient inflates gzip and deflate itself, under the response size cap.
    """
    connector = _IdleCappedConnector(
        max_idle=max_idle,
        limit=max_connections,
        limit_per_host=0,
        keepalive_timeout=keepalive_s,
        ssl=ssl_context if ssl_context is not None else True,
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        trust_env=False,
        proxy=proxy,
        timeout=aiohttp.ClientTimeout(total=None),
    )
