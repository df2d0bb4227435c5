"""AgentClient: one pooled httpx.AsyncClient per agent, and the one place httpx errors are mapped.

`post_json` makes a single attempt and returns the parsed reply or raises an AgentCallError.
The deadline over all attempts lives in runtime/calls.py; httpx's own timeouts bound each phase
(connect, pool wait, write, read) so a stuck socket cannot outlive it either.
"""

import asyncio
import contextlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import orjson

from gateway_project.conf import gateway_settings
from runtime.errors import (
    AgentBadStatusError,
    AgentConnectionError,
    AgentDecodeError,
    AgentResponseTooLargeError,
    AgentTimeoutError,
)
from runtime.specs import AgentSpec
from runtime.transport import agent_http_client

# The Content-Encodings AgentClient inflates itself, as zlib window bits. httpx inflates each
# received chunk whole: 64 KB of gzip can become 64 MB before the size cap sees them.
_INFLATE_WBITS = {
    "gzip": zlib.MAX_WBITS | 16,
    "x-gzip": zlib.MAX_WBITS | 16,
    "deflate": zlib.MAX_WBITS,
}


class RetryableConnectionError(AgentConnectionError):
    """Refused, or reset or closed before any response byte: the agent sent nothing back, but
    it may have received the request (retried under `retry_on=connect_or_reset`)."""


class NotSentConnectionError(RetryableConnectionError):
    """The request cannot have reached the agent: the connection was refused or never made, or
    a kept-alive connection was found closed before the request was written (retried under
    either `retry_on`)."""


@dataclass(frozen=True, slots=True)
class AgentReply:
    reply: str
    url: str | None


@contextlib.contextmanager
def map_httpx_errors() -> Iterator[None]:
    """Translate transport errors into the AgentError tree (cf. httpx's map_httpcore_exceptions)."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise AgentTimeoutError(str(exc) or type(exc).__name__) from exc
    except (httpx.ConnectError, httpx.WriteError) as exc:
        # ConnectTimeout is a TimeoutException (above): never retried. A WriteError is a request
        # not written whole (aiohttp: "Cannot write to closing transport", a kept-alive
        # connection closed under it; httpcore reads on after a failed write instead).
        raise NotSentConnectionError(str(exc) or type(exc).__name__) from exc
    except httpx.ReadError as exc:
        raise RetryableConnectionError(str(exc) or type(exc).__name__) from exc
    except httpx.RemoteProtocolError as exc:
        # Only a peer that hung up before answering is retryable; garbage it sent is not.
        error = RetryableConnectionError if "without sending" in str(exc) else AgentConnectionError
        raise error(str(exc)) from exc
    except httpx.DecodingError as exc:  # a compressed body that does not inflate
        raise AgentDecodeError(str(exc) or type(exc).__name__) from exc
    except httpx.HTTPError as exc:
        raise AgentConnectionError(str(exc) or type(exc).__name__) from exc
    except OSError as exc:
        raise RetryableConnectionError(str(exc) or type(exc).__name__) from exc


def parse_reply(body: bytes) -> AgentReply:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise AgentDecodeError("agent body is not JSON") from exc
    if not isinstance(data, dict) or not isinstance(data.get("reply"), str):
        raise AgentDecodeError("agent JSON has no string 'reply'")
    url = data.get("url")
    return AgentReply(reply=data["reply"], url=url if isinstance(url, str) and url else None)


async def _inflate_capped(response: httpx.Response, encoding: str, limit: int) -> bytes:
    """A gzip or deflate body, inflated at most `limit` + 1 bytes at a time: a reply that
    inflates past the cap is refused there, never held whole. Like httpx, a deflate body may
    come without zlib's header (raw deflate)."""
    inflater = zlib.decompressobj(_INFLATE_WBITS[encoding])
    body = bytearray()
    first = True
    async for data in response.aiter_raw():
        while data:
            try:
                body += inflater.decompress(data, limit + 1 - len(body))
            except zlib.error as exc:
                if not (first and encoding == "deflate"):
                    raise httpx.DecodingError(str(exc)) from exc
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


class AgentClient:
    def __init__(self, spec: AgentSpec, *, user_agent: str, max_response_bytes: int) -> None:
        self.url = spec.url
        self.max_response_bytes = max_response_bytes
        self._http = agent_http_client(
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": user_agent,
            },
            timeout=httpx.Timeout(
                connect=spec.connect_timeout_s,
                read=spec.timeout_s,
                write=spec.timeout_s,
                pool=spec.timeout_s,
            ),
            limits=httpx.Limits(
                max_connections=spec.max_connections,
                max_keepalive_connections=min(
                    spec.max_connections, gateway_settings.agent_keepalive_connections
                ),
                keepalive_expiry=30.0,
            ),
            http1=True,
            http2=False,
            follow_redirects=False,
            trust_env=False,
        )
        self.leases = 0
        self._retiring = False
        self._closing: asyncio.Task[None] | None = None

    def lease(self) -> "ClientLease":
        """Hold the client open for one whole call, retries and backoff included."""
        return ClientLease(self)

    async def post_json(self, body: bytes, *, request_id: str, attempt: int = 1) -> AgentReply:
        """One attempt. Callers hold a lease around every attempt of a call (runtime/calls.py)."""
        headers = {
            "X-Request-ID": request_id,
            "Idempotency-Key": request_id,  # the same on every attempt of one chat request
            "X-Gateway-Attempt": str(attempt),
        }
        with map_httpx_errors():
            request = self._http.build_request("POST", self.url, content=body, headers=headers)
            response = await self._http.send(request, stream=True)
        # From here a response byte has arrived: nothing below is retryable.
        try:
            with map_httpx_errors():
                payload = await self._read_capped(response)
        except RetryableConnectionError as exc:
            raise AgentConnectionError(str(exc)) from exc
        finally:
            await response.aclose()
        if response.status_code != 200:
            raise AgentBadStatusError(response.status_code)
        return parse_reply(payload)

    async def _read_capped(self, response: httpx.Response) -> bytes:
        limit = self.max_response_bytes
        headers = response.headers
        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise AgentResponseTooLargeError(f"content-length {declared} > {limit}")
        if response.status_code != 200:
            return b""  # the status alone decides; closing the response discards the body
        encoding = (headers.get("content-encoding") or "").strip().lower()
        if encoding in _INFLATE_WBITS:
            return await _inflate_capped(response, encoding, limit)
        # Without a Content-Encoding the bytes are the body: skip httpx's decoder layer.
        body = response.aiter_bytes() if encoding else response.aiter_raw()
        chunks: list[bytes] = []
        size = 0
        async for chunk in body:
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
        await self._http.aclose()

    def _close_soon(self) -> None:
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self.aclose())

    @property
    def closed(self) -> bool:
        return self._http.is_closed


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
