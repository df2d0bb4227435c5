"""Streamed replies (Server-Sent Events): an agent's event stream relayed to the caller event by
event, as the events arrive.

A chat request with `Accept: text/event-stream` goes to its agent with that Accept; when the agent
answers 200 `text/event-stream` and its first event arrives within the agent's `timeout_s`, the
caller gets `200 text/event-stream` (`Cache-Control: no-cache`, `X-Accel-Buffering: no`) and each
event as the agent sent it, one ASGI message per event, which uvicorn writes to the socket at once.
Before that first event every failure is the usual JSON fallback; after it, a failure
(runtime/streams.py: idle or total timeout, a broken connection, an event over the size cap, the
drain) ends the stream with one last event, then the response ends:

    event: error
    data: {"reply": <the agent's fallback text>, "reason": <the fallback reason>}

Both entry points send a StreamAnswer with `send_to`: the fast lane directly, the ninja operation
through an EventStreamResponse, which only carries the CORS middleware's headers to the edge. The
edge (edge/lean_handler.py) watches for the caller's disconnect while a stream is sent and closes
the answer when it ends, whichever way.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import orjson
from django.http import StreamingHttpResponse

from chat import metrics
from observability.context import RequestContext
from runtime import AgentError, AgentStream

logger = logging.getLogger("gateway.chat")

EVENT_STREAM = "text/event-stream"
SEND_GRACE_S = 1.0  # for the error event after stream_max_s
STREAM_HEADERS = (
    (b"Content-Type", EVENT_STREAM.encode()),
    (b"Cache-Control", b"no-cache"),
    (b"X-Accel-Buffering", b"no"),
)


def stream_accept(headers: Mapping[str, str]) -> str | None:
    """The caller's Accept when it asks for an event stream (sent on to the agent), else None."""
    accept = headers.get("accept")
    return accept if accept is not None and EVENT_STREAM in accept.lower() else None


def error_event(reply: str, reason: str) -> bytes:
    return b"event: error\ndata: " + orjson.dumps({"reply": reply, "reason": reason}) + b"\n\n"


class StreamAnswer:
    """One streamed reply. Iterating it gives the events to send (after a failure, the error
    event last); `close` gives back what its stream holds and records it, once."""

    def __init__(
        self,
        stream: AgentStream,
        *,
        key: str,
        fallback_reply: str,
        ctx: RequestContext,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """`headers`: the answer's own (X-Gateway-Failover), sent after the entry point's."""
        self._stream = stream
        self._headers = tuple(
            (name.encode("latin1"), value.encode("latin1"))
            for name, value in (headers or {}).items()
        )
        self._key = key
        self._fallback_reply = fallback_reply
        self._ctx = ctx
        self._first: bytes | None = stream.first
        self._done = False
        self._completed: bool | None = None  # the stream's outcome for the breaker
        self._closed = False
        self._events = metrics.series(metrics.stream_events, key)
        self.failed = False  # ended with the error event
        self.first_byte_s = 0.0
        self.on_close: Callable[[StreamAnswer], None] | None = None

    def __aiter__(self) -> "StreamAnswer":
        return self

    async def __anext__(self) -> bytes:
        event = self._first
        if event is not None:
            self._first = None
            self.first_byte_s = time.perf_counter() - self._ctx.started
            metrics.series(metrics.stream_first_byte, self._key).observe(self.first_byte_s)
            self._events.inc()
            return event
        if self._done:
            raise StopAsyncIteration
        try:
            event = await self._stream.next_event()
        except AgentError as exc:
            self._done = True
            return self._fail(exc)
        if event is None:
            self._done = True
            self._completed = True
            self.close()
            raise StopAsyncIteration
        self._events.inc()
        return event

    async def send_to(
        self,
        send: Callable[[dict[str, Any]], Awaitable[None]],
        headers: Iterable[tuple[bytes, bytes]],
    ) -> None:
        """The whole response as ASGI messages, one per event; `headers`: the response's.

        A caller too slow to take the events (its socket full, so `send` waits) cannot hold the
        agent's stream past `stream_max_s` either: the response is then left unfinished, and
        uvicorn closes its connection."""
        await send(
            {"type": "http.response.start", "status": 200, "headers": [*headers, *self._headers]}
        )
        try:
            async with asyncio.timeout_at(self._stream.ends_at + SEND_GRACE_S):
                async for event in self:
                    await send({"type": "http.response.body", "body": event, "more_body": True})
        except TimeoutError:
            self._ctx.outcome = "timeout"
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def http_response(self) -> "EventStreamResponse":
        return EventStreamResponse(self)

    def close(self) -> None:
        """Close the agent's stream (its connection too, unless the agent ended it) and give back
        its slot; neutral for the breaker unless the agent ended or broke it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._stream.close(completed=self._completed)
        finally:
            elapsed = time.perf_counter() - self._ctx.started
            metrics.series(metrics.stream_duration, self._key).observe(elapsed)
            if self.on_close is not None:
                self.on_close(self)

    def _fail(self, exc: AgentError) -> bytes:
        self.failed = True
        self._ctx.outcome = exc.reason
        if exc.counts_as_failure:  # the drain ending a stream is nobody's error
            self._completed = False
            metrics.agent_error(self._key, exc)
        logger.debug(
            "agent stream failed",
            extra={"event": "agent_call", "agent": self._key, "reason": exc.reason,
                   "error": str(exc)},
        )  # fmt: skip
        self.close()  # the agent's connection closes before the error event goes out
        return error_event(self._fallback_reply, exc.reason)


class EventStreamResponse(StreamingHttpResponse):
    """A StreamAnswer as the ninja operation's response: Django's middleware adds its headers
    (CORS), then the edge sends the answer with them (`asgi_headers`)."""

    def __init__(self, answer: StreamAnswer) -> None:
        super().__init__(
            answer,
            content_type=EVENT_STREAM,
            headers={name.decode(): value.decode() for name, value in STREAM_HEADERS[1:]},
        )
        self.answer = answer

    def asgi_headers(self) -> list[tuple[bytes, bytes]]:
        return [(name.encode("latin1"), value.encode("latin1")) for name, value in self.items()]
