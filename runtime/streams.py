"""AgentStream: an agent's reply as an event stream (`text/event-stream`), read event by event.

A streaming chat request (the caller sent `Accept: text/event-stream`) goes to the agent with that
Accept; an agent answering 200 with `Content-Type: text/event-stream` gets its body read here, one
whole event (up to a blank line) at a time, its bytes as the agent sent them. Deadlines:

- the first event within the call's deadline (`timeout_s`, runtime/calls.py): until it arrives a
  failure is an AgentError like any call's, and the caller gets the usual fallback;
- then at most `stream_idle_timeout_s` between events and `stream_max_s` from the call's start;
- once the process drains (SIGTERM), at most GATEWAY_DRAIN_S - STREAM_DRAIN_MARGIN_S from the
  signal, so a stream's last event goes out before uvicorn cuts what is left.

Lifecycle: `agent_call` hands an open stream the call's concurrency slot, a lease on its endpoint's
client and its breaker permit (`hold`); `close` gives them back and settles the breaker (and, in a
pool, the endpoint's in-flight count and outlier record) once: a success when the agent ended the
stream, a failure when it broke it (timeout, connection, an event over the size cap), neither when
the caller left or the drain ended it.
"""

import asyncio
import re
import time
from collections.abc import Hashable

import aiohttp

from gateway_project.conf import gateway_settings
from runtime.agent_runtime import AgentRuntime, Replica
from runtime.breaker import Permit
from runtime.client import AgentReply, ClientLease, map_agent_errors
from runtime.draining import draining
from runtime.errors import (
    AgentConnectionError,
    AgentDecodeError,
    AgentResponseTooLargeError,
    AgentTimeoutError,
    StreamDrainedError,
)
from runtime.pool_metrics import OK, attempt_ended

STREAM_DRAIN_MARGIN_S = 1.0
# An event ends at a blank line: two line ends in a row (CRLF, LF, or a CR not followed by LF).
_EVENT_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")

_open: set["AgentStream"] = set()  # held streams, for the drain


class AgentStream:
    __slots__ = (
        "_buffer",
        "_drain_at",
        "_eof",
        "_held",
        "_idle_s",
        "_last_at",
        "_max_event_bytes",
        "_replica",
        "_response",
        "_scanned",
        "_total_at",
        "_wait",
        "first",
    )

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        replica: Replica,
        *,
        started: float,
        max_event_bytes: int,
    ) -> None:
        """`started`: the call's start, loop time; `replica`: the endpoint it comes from."""
        self._response = response
        self._replica = replica
        self._buffer = bytearray()
        self._scanned = 0
        self._eof = False
        self._max_event_bytes = max_event_bytes
        self._idle_s = 0.0
        self._last_at = started
        self._total_at = started
        self._drain_at = float("inf")
        self._wait: asyncio.Timeout | None = None
        self._held: tuple[AgentRuntime, Permit, Hashable, ClientLease] | None = None
        self.first = b""

    async def start(self, *, idle_s: float, max_s: float) -> bool:
        """Read the first event (under the caller's deadline); False when the agent ended the
        stream without one (it is then closed, like a read reply)."""
        self._idle_s = idle_s
        self._total_at += max_s
        try:
            if self._response.headers.get("Content-Encoding", "identity").lower() != "identity":
                raise AgentDecodeError("an event stream must not be compressed")
            event = await self._read_event()
        except BaseException:
            self._response.close()
            raise
        if event is None:
            self._response.release()
            return False
        self.first = event
        self._last_at = asyncio.get_running_loop().time()
        return True

    @property
    def ends_at(self) -> float:
        """Loop time by which the stream ends: `stream_max_s` after the call began."""
        return self._total_at

    def hold(self, runtime: AgentRuntime, permit: Permit, tenant: Hashable) -> None:
        """Take over the call's slot and breaker permit, and a lease on its endpoint's client,
        until `close`."""
        lease = self._replica.client.lease()
        lease.__enter__()
        self._held = (runtime, permit, tenant, lease)
        _open.add(self)
        if draining:
            self._drain_by(_drain_deadline())

    async def next_event(self) -> bytes | None:
        """The next whole event, or None once the agent ended the stream. Raises
        AgentTimeoutError (idle or total), AgentConnectionError, AgentResponseTooLargeError or
        StreamDrainedError."""
        idle_at = self._last_at + self._idle_s
        try:
            async with asyncio.timeout_at(min(idle_at, self._total_at, self._drain_at)) as wait:
                self._wait = wait  # the drain may bring it forward
                event = await self._read_event()
        except TimeoutError:
            raise self._expired(idle_at) from None
        finally:
            self._wait = None
        self._last_at = asyncio.get_running_loop().time()
        return event

    def close(self, *, completed: bool | None) -> None:
        """Give back what the stream held; `completed`: True when the agent ended it, False when
        it failed it, None for neither (the caller left, the drain). Idempotent."""
        if self._eof and completed:
            self._response.release()
        else:
            self._response.close()  # the agent sees its connection closed
        held, self._held = self._held, None
        if held is None:
            return
        _open.discard(self)
        runtime, permit, tenant, lease = held
        outcome = {True: OK, False: "stream_failed", None: "stream_left"}[completed]
        attempt_ended(runtime, self._replica, outcome, completed)
        try:
            if completed is True:
                runtime.breaker.record_success(permit)
            elif completed is False and runtime.failing_as_a_whole():
                runtime.breaker.record_failure(permit)
        finally:
            lease.__exit__(None, None, None)
            runtime.limiter.release(tenant)
            runtime.breaker.release(permit)

    async def _read_event(self) -> bytes | None:
        """The next event from the buffer, reading more as needed; at the end of the stream,
        what is left (an event without its blank line), then None."""
        while (event := self._split()) is None:
            if self._eof:
                tail, self._buffer = bytes(self._buffer), bytearray()
                return tail or None
            try:
                with map_agent_errors():
                    chunk = await self._response.content.readany()
            except AgentConnectionError as exc:  # nothing here is retryable
                raise AgentConnectionError(str(exc)) from exc
            if chunk:
                self._buffer += chunk
            else:
                self._eof = True
        return event

    def _split(self) -> bytes | None:
        buffer = self._buffer
        end = _EVENT_END.search(buffer, max(0, self._scanned - 3))
        # A CR last in the buffer may be the first half of a CRLF: wait for the next byte.
        if end is None or (end.end() == len(buffer) and buffer[-1:] == b"\r" and not self._eof):
            self._scanned = len(buffer)
            if len(buffer) > self._max_event_bytes:
                raise AgentResponseTooLargeError(f"an event over {self._max_event_bytes} bytes")
            return None
        event = bytes(buffer[: end.end()])
        del buffer[: end.end()]
        self._scanned = 0
        return event

    def _expired(self, idle_at: float) -> Exception:
        """The error for the deadline that passed: the earliest of the three."""
        if self._drain_at <= min(idle_at, self._total_at):
            return StreamDrainedError("the drain limit came before the stream's end")
        if self._total_at <= idle_at:
            return AgentTimeoutError("the stream passed its stream_max_s")
        return AgentTimeoutError(f"no event within {self._idle_s:g}s")

    def _drain_by(self, deadline: float) -> None:
        self._drain_at = min(self._drain_at, deadline)
        wait = self._wait
        if wait is not None and (wait.when() or float("inf")) > self._drain_at:
            wait.reschedule(self._drain_at)


async def stream_first_event(
    runtime: AgentRuntime, replica: Replica, response: aiohttp.ClientResponse, *, started: float
) -> "AgentStream | AgentReply":
    """The agent's event stream once its first event is in (the caller's deadline bounds the
    wait); an empty reply when the agent ended the stream without any."""
    spec = runtime.spec
    stream = AgentStream(
        response, replica, started=started, max_event_bytes=replica.client.max_response_bytes
    )
    if await stream.start(idle_s=spec.stream_idle_timeout_s, max_s=spec.stream_max_s):
        return stream
    return AgentReply(reply="", url=None)


def _drain_deadline() -> float:
    """Loop time by which a stream ends while the process drains."""
    began = draining.began_at if draining.began_at is not None else time.monotonic()
    left = gateway_settings.drain_s - STREAM_DRAIN_MARGIN_S - (time.monotonic() - began)
    return asyncio.get_running_loop().time() + max(0.0, left)


def _drain_began() -> None:
    if not _open:
        return
    deadline = _drain_deadline()
    for stream in list(_open):
        stream._drain_by(deadline)


draining.on_begin(_drain_began)
