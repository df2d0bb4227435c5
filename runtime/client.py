"""AgentClient: one pooled aiohttp session per agent endpoint, and the one place the HTTP library's
errors become AgentErrors (`map_agent_errors`).

`post_json` makes a single attempt and returns the parsed reply or raises an AgentCallError; for
a streaming request, an agent's event stream comes back open (runtime/streams.py reads it).
The deadline over all attempts lives in runtime/calls.py and bounds every read; the session's
timeouts bound the phases before it (pool wait and connect, connect), whose errors say so.
"""

import asyncio
import ssl
import zlib
from dataclasses import dataclass
from typing import overload

import aiohttp
import orjson
from yarl import URL

from agents.models import RESERVED_HEADERS
from gateway_project.conf import gateway_settings
from runtime.errors import (
    AgentBadStatusError,
    AgentConnectionError,
    AgentDecodeError,
    AgentError,
    AgentResponseTooLargeError,
    AgentTimeoutError,
    NotSentConnectionError,
    RetryableConnectionError,
)
from runtime.specs import AgentSpec
from runtime.tls import TlsConfigError, egress_proxy, ssl_context
from runtime.transport import agent_session

# The Content-Encodings AgentClient inflates itself, as zlib window bits (the only ones it
# advertises): inflating a whole received chunk at once could turn 64 KB of gzip into 64 MB
# before the size cap saw them.
_INFLATE_WBITS = {
    "gzip": zlib.MAX_WBITS | 16,
    "x-gzip": zlib.MAX_WBITS | 16,
    "deflate": zlib.MAX_WBITS,
}
KEEPALIVE_S = 30.0
EVENT_STREAM = "text/event-stream"


@dataclass(frozen=True, slots=True)
class AgentReply:
    reply: str
    url: str | None


class map_agent_errors:  # lower case: used as `with map_agent_errors():`, like a function
    """The one map from aiohttp's and the OS's errors to the AgentError tree. Retryable here
    means "no response byte arrived"; a caller reading a response body treats any connection
    error as final (AgentClient.post_json). A class, not a @contextmanager generator: that one's
    helper, generator and two resumptions ran twice per agent call."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: object
    ) -> None:
        if exc is not None and isinstance(exc, _MAPPED):
            raise _agent_error(exc) from exc


_MAPPED = (aiohttp.ServerTimeoutError, TimeoutError, aiohttp.ClientError, OSError)


def _agent_error(exc: BaseException) -> AgentError:
    """The AgentError for one of the _MAPPED errors; the first matching class decides."""
    if isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        # A connect timeout too (aiohttp.ConnectionTimeoutError is a ServerTimeoutError): the
        # agent may be slow rather than gone, so it is never retried.
        return AgentTimeoutError(_text(exc))
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ClientConnectionResetError):
        # Refused or never connected; or "Cannot write to closing transport": a kept-alive
        # connection the agent closed while it sat in the pool, before the request was written.
        return NotSentConnectionError(_text(exc))
    if isinstance(exc, aiohttp.ClientConnectionError):
        # Reset, or disconnected before answering (ServerDisconnectedError), or an OS error.
        unsent = _unwritable(exc)
        return (NotSentConnectionError if unsent else RetryableConnectionError)(_text(exc))
    if isinstance(exc, aiohttp.ClientError):
        # Payload and response errors (garbage), an invalid URL, the rest.
        return AgentConnectionError(_text(exc))
    return RetryableConnectionError(_text(exc))  # any other OSError


def _text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _unwritable(exc: BaseException) -> bool:
    """aiohttp's "Can not write request body" over "Cannot write to closing transport": the
    connection (a kept-alive one the agent closed while it sat in the pool) was already closing
    when the request's first bytes were to be written, so the agent got no request (aiohttp
    writes the headers together with the body's first bytes)."""
    cause = exc.__cause__
    return isinstance(cause, aiohttp.ClientConnectionResetError) and "closing transport" in str(
        cause
    )


def parse_reply(body: bytes) -> AgentReply:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise AgentDecodeError("agent body is not JSON") from exc
    if not isinstance(data, dict) or not isinstance(data.get("reply"), str):
        raise AgentDecodeError("agent JSON has no string 'reply'")
    url = data.get("url")
    return AgentReply(reply=data["reply"], url=url if isinstance(url, str) and url else None)


async def _inflate_capped(content: aiohttp.StreamReader, encoding: str, limit: int) -> bytes:
    """A gzip or deflate body, inflated at most `limit` + 1 bytes at a time: a reply that
    inflates past the cap is refused there, never held whole. Like httpx and browsers, a deflate
    body may come without zlib's header (raw deflate)."""
    inflater = zlib.decompressobj(_INFLATE_WBITS[encoding])
    body = bytearray()
    first = True
    while data := await content.readany():
        while data:
            try:
                body += inflater.decompress(data, limit + 1 - len(body))
            except zlib.error as exc:
                if not (first and encoding == "deflate"):
                    raise AgentDecodeError(f"{encoding} body does not inflate: {exc}") from exc
                inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                first = False
                continue
            first = False
            if len(body) > limit:
                raise AgentResponseTooLargeError(f"body inflates past {limit} bytes")
            data = inflater.unconsumed_tail
    body += inflater.flush()
    if len(body) > limit:
        raise AgentResponseTooLargeError(f"body inflates past {limit} bytes")
    return bytes(body)


def _transport_tls(spec: AgentSpec) -> tuple[ssl.SSLContext | None, str]:
    """The agent's SSL context, built once per client (None: aiohttp's default, the system's
    CAs), or why its TLS settings do not load: every call then fails as a connection error (a
    fallback), never the registry's load."""
    if spec.tls.default:
        return None, ""
    try:
        return ssl_context(spec.tls), ""
    except TlsConfigError as exc:
        return None, f"the agent's TLS settings do not load: {exc}"


class AgentClient:
    def __init__(
        self, spec: AgentSpec, url: str | None = None, *, user_agent: str, max_response_bytes: int
    ) -> None:
        """`url`: the endpoint this client posts to (default: the agent's first, `spec.url`)."""
        self.url = spec.url if url is None else url
        self.max_response_bytes = max_response_bytes
        self._target = URL(self.url)
        self._headers = {
            # The agent's own headers (credentials) first: the gateway's below win, and a name
            # the gateway sets itself never comes from the agent's row (agents.models refuses
            # them; this keeps a row written around the admin from sending it twice).
            **{n: v for n, v in spec.headers if n.lower() not in RESERVED_HEADERS},
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Accept-Encoding": ", ".join(name for name in _INFLATE_WBITS if name != "x-gzip"),
            "User-Agent": user_agent,
        }
        # No `sock_read`: a read can never outlast the call's deadline (runtime/calls.py), which
        # ends within `timeout_s` too, and aiohttp re-arms a loop timer for it on every read
        # (~13k instructions a call, bench/README.md). A stream's reads wait as long as its own
        # deadlines allow (runtime/streams.py).
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=spec.timeout_s, sock_connect=spec.connect_timeout_s
        )
        self._max_connections = spec.max_connections
        self._max_idle = min(spec.max_connections, gateway_settings.agent_keepalive_connections)
        self._ssl, self._tls_error = _transport_tls(spec)
        self._proxy = egress_proxy(spec.url, spec.proxy_url)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self.leases = 0
        self._retiring = False
        self._closing: asyncio.Task[None] | None = None

    def lease(self) -> "ClientLease":
        """Hold the client open for one whole call, retries and backoff included."""
        return ClientLease(self)

    def _session_get(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None:
            if self._closed:
                raise AgentConnectionError("the agent's client was closed")
            if self._tls_error:
                raise AgentConnectionError(self._tls_error)
            session = self._session = agent_session(
                max_connections=self._max_connections,
                max_idle=self._max_idle,
                keepalive_s=KEEPALIVE_S,
                ssl_context=self._ssl,
                proxy=self._proxy,
            )
        return session

    @overload
    async def post_json(
        self,
        body: bytes,
        *,
        request_id: str,
        attempt: int = 1,
        extra_headers: tuple[tuple[str, str], ...] = (),
        stream_accept: None = None,
    ) -> AgentReply: ...

    @overload
    async def post_json(
        self,
        body: bytes,
        *,
        request_id: str,
        attempt: int = 1,
        extra_headers: tuple[tuple[str, str], ...] = (),
        stream_accept: str | None,
    ) -> AgentReply | aiohttp.ClientResponse: ...

    async def post_json(
        self,
        body: bytes,
        *,
        request_id: str,
        attempt: int = 1,
        extra_headers: tuple[tuple[str, str], ...] = (),
        stream_accept: str | None = None,
    ) -> AgentReply | aiohttp.ClientResponse:
        """One attempt. Callers hold a lease around every attempt of a call (runtime/calls.py).
        With `stream_accept` (the caller's Accept of a streaming request, sent on instead of
        ours), a 200 `text/event-stream` answer is returned open, its body unread."""
        headers = {
            **self._headers,
            "X-Request-ID": request_id,
            "Idempotency-Key": request_id,  # the same on every attempt of one chat request
            "X-Gateway-Attempt": str(attempt),
        }
        if extra_headers:
            headers.update(extra_headers)
        if stream_accept is not None:
            headers["Accept"] = stream_accept
            headers["Accept-Encoding"] = "identity"  # events are relayed as they come
        with map_agent_errors():
            response = await self._session_get().request(
                "POST",
                self._target,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout,
            )
        if stream_accept and response.status == 200 and response.content_type == EVENT_STREAM:
            return response  # read by runtime/streams.py
        # From here a response byte has arrived: nothing below is retryable.
        try:
            with map_agent_errors():
                payload = await self._read_capped(response)
        except RetryableConnectionError as exc:
            raise AgentConnectionError(str(exc)) from exc
        finally:
            # Synchronous: runs to the end even while the caller is being cancelled. A body
            # read to its end gives the connection back to the pool; anything else closes it.
            if response.content.at_eof():
                response.release()
            else:
                response.close()
        if response.status != 200:
            raise AgentBadStatusError(response.status)
        return parse_reply(payload)

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self.max_response_bytes
        headers = response.headers
        declared = headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise AgentResponseTooLargeError(f"content-length {declared} > {limit}")
        if response.status != 200:
            return b""  # the status alone decides; closing the response discards the body
        content = response.content
        encoding = (headers.get("Content-Encoding") or "").strip().lower()
        if encoding in _INFLATE_WBITS:
            return await _inflate_capped(content, encoding, limit)
        # Identity, or an encoding never asked for: the bytes are the body.
        chunks: list[bytes] = []
        size = 0
        while chunk := await content.readany():
            size += len(chunk)
            if size > limit:
                raise AgentResponseTooLargeError(f"body over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def retire(self) -> None:
        """Close once the last lease on this client has ended (call on the loop)."""
        self._retiring = True
        if self.leases == 0:
            self._close_soon()

    def _lease_ended(self) -> None:
        self.leases -= 1
        if self._retiring and self.leases == 0:
            self._close_soon()

    async def aclose(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _close_soon(self) -> None:
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self.aclose())

    @property
    def closed(self) -> bool:
        return self._closed


class ClientLease:
    """`with client.lease():` keeps a retired client open until the block ends."""

    __slots__ = ("_client",)

    def __init__(self, client: AgentClient) -> None:
        self._client = client

    def __enter__(self) -> AgentClient:
        self._client.leases += 1
        return self._client

    def __exit__(self, *exc_info: object) -> None:
        self._client._lease_ended()


class ClientsLease:
    """`with ClientsLease(clients):` holds several clients open (an agent pool's, for one call)."""

    __slots__ = ("_clients",)

    def __init__(self, clients: tuple[AgentClient, ...]) -> None:
        self._clients = clients

    def __enter__(self) -> None:
        for client in self._clients:
            client.leases += 1

    def __exit__(self, *exc_info: object) -> None:
        for client in self._clients:
            client._lease_ended()
