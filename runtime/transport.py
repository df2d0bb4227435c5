"""The HTTP transport under every agent client: httpx's API over aiohttp's connection pool.

Chosen by measurement (bench/README.md, "Performance" in the README): with httpx's own transport
(httpcore over anyio) a call to an agent costs ~2.5 ms of CPU at 16 in flight, most of it in
httpcore's pool bookkeeping, which scans every connection on each request; the same call through
aiohttp's pool costs ~0.15 ms. AgentClient keeps `httpx.AsyncClient` as its API and its error
mapping: this module turns aiohttp's errors into the httpx errors httpcore would have raised
(refused -> ConnectError, reset -> ReadError, peer gone before answering -> RemoteProtocolError
"...without sending...", garbage -> RemoteProtocolError, timeouts -> ConnectTimeout/ReadTimeout,
a request that found its kept-alive connection already closing -> WriteError).
The `httpx-aiohttp` package was measured too; it is not used because its error map turns a
refused connection into ConnectTimeout (so it would be reported as a timeout and never retried).

Timeouts: `connect` bounds a TCP connect, `pool` the wait for a free connection plus the connect,
`read` each read. aiohttp has no write timeout; the agent call's overall deadline
(runtime/calls.py) bounds a stuck write. `AGENT_HTTP_TRANSPORT=httpx` switches back to httpcore.
"""

import contextlib
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import httpx
from django.core.exceptions import ImproperlyConfigured
from yarl import URL

from gateway_project.conf import gateway_settings

_URL_CACHE_SIZE = 64
# Headers httpx derives itself when it builds a request: a caller setting one takes its own path.
_AUTO_HEADERS = frozenset({"host", "content-length", "transfer-encoding"})


@contextlib.contextmanager
def map_aiohttp_errors(*, before_response: bool) -> Iterator[None]:
    """aiohttp's errors as the httpx errors that httpcore raises for the same failure."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc) or "connect timed out") from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise httpx.ReadTimeout(str(exc) or "read timed out") from exc
    except aiohttp.ServerDisconnectedError as exc:
        message = (
            "Server disconnected without sending a response."
            if before_response
            else "peer closed connection without sending complete message body"
        )
        raise httpx.RemoteProtocolError(message) from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx.ConnectError(str(exc)) from exc
    except aiohttp.ClientConnectionResetError as exc:
        raise httpx.WriteError(str(exc) or "connection reset") from exc
    except (aiohttp.ClientOSError, aiohttp.ClientConnectionError) as exc:
        if _unwritable(exc):
            raise httpx.WriteError(str(exc)) from exc
        raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
    except (aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
        raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__) from exc
    except aiohttp.InvalidURL as exc:
        raise httpx.UnsupportedProtocol(str(exc)) from exc
    except aiohttp.ClientError as exc:
        raise httpx.TransportError(str(exc) or type(exc).__name__) from exc


def _unwritable(exc: BaseException) -> bool:
    """aiohttp's "Can not write request body" over "Cannot write to closing transport": the
    connection (a kept-alive one the agent closed while it sat in the pool) was already closing
    when the request's first bytes were to be written, so the agent got no request (aiohttp
    writes the headers together with the body's first bytes)."""
    cause = exc.__cause__
    return isinstance(cause, aiohttp.ClientConnectionResetError) and "closing transport" in str(
        cause
    )


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        with map_aiohttp_errors(before_response=False):
            while True:
                chunk = await content.readany()
                if not chunk:
                    return
                yield chunk

    async def aclose(self) -> None:
        # Synchronous on purpose: runs to the end even while the caller is being cancelled.
        # A fully read body gives the connection back to the pool; anything else closes it.
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class _IdleCappedConnector(aiohttp.TCPConnector):
    """aiohttp's pool with httpx's `max_keepalive_connections`: a connection given back while
    `max_idle` already wait for reuse is closed instead of kept. aiohttp keeps every connection
    of a burst for `keepalive_timeout`; with this cap, 1,000 calls at once leave a few idle
    sockets and their buffers behind, not 1,000 (bench/README.md, memory after a burst).
    It overrides aiohttp's private `_release` (aiohttp is pinned; test_resilience.py's
    keep-alive cap test fails if that hook changes)."""

    def __init__(self, *, max_idle: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._max_idle = max_idle

    def _release(self, key: Any, protocol: Any, *, should_close: bool = False) -> None:
        idle = self._conns.get(key)
        if idle is not None and len(idle) >= self._max_idle:
            should_close = True
        super()._release(key, protocol, should_close=should_close)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport sending through one aiohttp session (created on first use, on the
    event loop that uses it)."""

    def __init__(self, *, limits: httpx.Limits) -> None:
        self._limits = limits
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[Any, ...], aiohttp.ClientTimeout] = {}
        self._urls: dict[str, URL] = {}

    def _session_get(self) -> aiohttp.ClientSession:
        if self._session is None:
            limits = self._limits
            max_idle = limits.max_keepalive_connections
            connector = _IdleCappedConnector(
                max_idle=sys.maxsize if max_idle is None else max_idle,
                limit=limits.max_connections or 0,
                limit_per_host=0,
                keepalive_timeout=limits.keepalive_expiry or 0,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,  # httpx decodes Content-Encoding itself
                trust_env=False,
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self._session

    def _timeout(self, request: httpx.Request) -> aiohttp.ClientTimeout:
        config = request.extensions.get("timeout", {})
        key = (config.get("connect"), config.get("read"), config.get("pool"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            connect, read, pool = key
            timeout = self._timeouts[key] = aiohttp.ClientTimeout(
                total=None, connect=pool, sock_connect=connect, sock_read=read
            )
        return timeout

    def _url(self, request: httpx.Request) -> URL:
        text = str(request.url)
        url = self._urls.get(text)
        if url is None:
            if len(self._urls) >= _URL_CACHE_SIZE:
                self._urls.clear()
            url = self._urls[text] = URL(text, encoded=True)
        return url

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session_get()
        try:
            data: Any = request.content or None
        except httpx.RequestNotRead:
            data = await request.aread() or None
        with map_aiohttp_errors(before_response=True):
            response = await session.request(
                request.method,
                self._url(request),
                headers=request.headers.multi_items(),
                data=data,
                allow_redirects=False,
                timeout=self._timeout(request),
            )
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_ResponseStream(response),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


class _NoCookies(httpx.Cookies):
    """Agents are APIs shared by every n8n session: a cookie one caller got must never be sent
    on another caller's request, and parsing Set-Cookie on each reply costs ~10% of a call."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def __bool__(self) -> bool:
        return False


class AgentHttpClient(httpx.AsyncClient):
    """httpx.AsyncClient with no cookie jar (see _NoCookies) and a short path for what agent
    clients do: an absolute URL, bytes content and headers, no auth, redirects or hooks.

    `build_request` and `send` take that path only when nothing else was asked for, and fall
    back to httpx's own code otherwise. The short path skips httpx's auth and redirect
    generators, URL re-parsing of a URL already seen, and the response's `elapsed` timer
    (AgentClient never reads it); about 0.1 ms per call (bench/README.md).
    """

    def __init__(self, *, transport: httpx.AsyncBaseTransport | None = None, **kwargs: Any):
        super().__init__(transport=transport, **kwargs)
        self._short_transport = transport if isinstance(transport, AiohttpTransport) else None
        self._targets: dict[str, tuple[httpx.URL, httpx.Headers]] = {}

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, value: Any) -> None:
        return None

    @property
    def headers(self) -> httpx.Headers:
        return self._headers

    @headers.setter
    def headers(self, value: Any) -> None:
        httpx.AsyncClient.headers.fset(self, value)  # type: ignore[attr-defined]
        self._targets = {}

    def build_request(  # type: ignore[override]
        self,
        method: str,
        url: httpx.URL | str,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Request:
        """httpx's request for these arguments, built from a per-URL copy of the headers that
        httpx would add (Host, the client's own) instead of normalising every header twice."""
        extra = {name.lower(): value for name, value in headers.items()} if headers else {}
        if (
            kwargs
            or not isinstance(url, str)
            or not isinstance(content, bytes)
            or not content
            or not _AUTO_HEADERS.isdisjoint(extra)
            or self.base_url.raw_path != b"/"
            or self.base_url.host
        ):
            return super().build_request(method, url, content=content, headers=headers, **kwargs)
        target, prepared = self._target(url)
        request_headers = httpx.Headers(prepared)
        for name, value in extra.items():
            request_headers[name] = value
        request_headers["Content-Length"] = str(len(content))
        request = httpx.Request(
            method,
            target,
            stream=httpx.ByteStream(content),
            headers=request_headers,
            extensions={"timeout": self.timeout.as_dict()},
        )
        request.read()  # the body is in memory: `request.content`, as httpx's own path sets it
        return request

    async def send(  # type: ignore[override]
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        transport = self._short_transport
        if (
            transport is None
            or kwargs
            or self.auth is not None
            or self.follow_redirects
            or self.event_hooks["request"]
            or self.event_hooks["response"]
            or self.is_closed
        ):
            return await super().send(request, stream=stream, **kwargs)
        request.extensions.setdefault("timeout", self.timeout.as_dict())
        response = await transport.handle_async_request(request)
        response.request = request
        if not stream:
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
        return response

    def _target(self, text: str) -> tuple[httpx.URL, httpx.Headers]:
        """The parsed URL and the headers every request to it starts with: Host, as httpx
        derives it, then the client's headers (lower-case names, as merged per request)."""
        target = self._targets.get(text)
        if target is None:
            if len(self._targets) >= _URL_CACHE_SIZE:
                self._targets.clear()
            url = httpx.URL(text)
            defaults = [(name.lower(), value) for name, value in self.headers.items()]
            host = [("Host", url.netloc.decode("ascii"))] if url.host else []
            target = self._targets[text] = (url, httpx.Headers(host + defaults))
        return target


_NO_COOKIES = _NoCookies()


def agent_http_client(*, limits: httpx.Limits, **kwargs: Any) -> httpx.AsyncClient:
    """An httpx.AsyncClient for one agent, on the transport AGENT_HTTP_TRANSPORT names.

    Takes httpx.AsyncClient's own keyword arguments; `limits` sizes the transport's pool.
    """
    choice = gateway_settings.agent_http_transport
    if choice == "httpx":
        return AgentHttpClient(limits=limits, **kwargs)
    if choice == "aiohttp":
        return AgentHttpClient(transport=AiohttpTransport(limits=limits), **kwargs)
    raise ImproperlyConfigured(f"AGENT_HTTP_TRANSPORT must be 'aiohttp' or 'httpx', not {choice!r}")
