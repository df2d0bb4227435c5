"""runtime/streams.py cuts an agent's event stream into whole events, bytes untouched, whatever
line ends the agent uses and however its bytes are split into reads; and ends it in time for
the drain."""

import asyncio
import time

import pytest

from runtime.draining import draining
from runtime.errors import AgentDecodeError, AgentResponseTooLargeError
from runtime.streams import AgentStream, _drain_deadline


class FakeContent:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)

    async def readany(self) -> bytes:
        await asyncio.sleep(0)
        return self.chunks.pop(0) if self.chunks else b""


class FakeResponse:
    def __init__(self, chunks: list[bytes], headers: dict[str, str] | None = None) -> None:
        self.content = FakeContent(chunks)
        self.headers = headers or {}
        self.closed = self.released = False

    def close(self) -> None:
        self.closed = True

    def release(self) -> None:
        self.released = True


async def events(chunks: list[bytes], *, max_event_bytes: int = 1000) -> list[bytes]:
    response = FakeResponse(chunks)
    stream = AgentStream(
        response,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]  # the replica: only used once held
        started=asyncio.get_running_loop().time(),
        max_event_bytes=max_event_bytes,
    )
    if not await stream.start(idle_s=5, max_s=60):
        assert response.released
        return []
    got = [stream.first]
    while (event := await stream.next_event()) is not None:
        got.append(event)
    stream.close(completed=True)
    assert response.released and not response.closed  # ended by the agent: pooled again
    return got


CASES = [
    pytest.param([b"data: a\n\ndata: b\n\n"], [b"data: a\n\n", b"data: b\n\n"], id="lf"),
    pytest.param([b"id: 1\r\ndata: x\r\n\r\n"], [b"id: 1\r\ndata: x\r\n\r\n"], id="crlf"),
    pytest.param([b"data: a\r\n", b"\r", b"\ndata: b\r\n\r\n"],
                 [b"data: a\r\n\r\n", b"data: b\r\n\r\n"], id="crlf-split-between-reads"),
    pytest.param([b"data: a\r\rdata: b\r\r"], [b"data: a\r\r", b"data: b\r\r"], id="cr"),
    pytest.param([bytes([b]) for b in b"data: a\n\n: ping\n\n"],
                 [b"data: a\n\n", b": ping\n\n"], id="byte-by-byte"),
    pytest.param([b"data: a\n\ndata: tail"], [b"data: a\n\n", b"data: tail"],
                 id="last-event-without-its-blank-line"),
    pytest.param([b"data: a\ndata: b\n\n"], [b"data: a\ndata: b\n\n"], id="multi-line"),
    pytest.param([], [], id="no-event"),
]  # fmt: skip


@pytest.mark.asyncio
@pytest.mark.parametrize(("chunks", "expected"), CASES)
async def test_events_are_cut_at_blank_lines(chunks, expected):
    assert await events(chunks) == expected
    assert b"".join(expected) == b"".join(chunks)


@pytest.mark.asyncio
async def test_an_event_over_the_cap_is_refused():
    with pytest.raises(AgentResponseTooLargeError):
        await events([b"data: ok\n\n", b"data: " + b"x" * 20], max_event_bytes=16)


@pytest.mark.asyncio
async def test_a_compressed_stream_is_refused():
    response = FakeResponse([b"data: a\n\n"], {"Content-Encoding": "gzip"})
    stream = AgentStream(response, None, started=0.0, max_event_bytes=100)  # type: ignore[arg-type]
    with pytest.raises(AgentDecodeError):
        await stream.start(idle_s=5, max_s=60)
    assert response.closed


@pytest.mark.asyncio
@pytest.mark.parametrize(("began_ago", "left"), [(0.0, 2.0), (0.5, 1.5), (5.0, 0.0)])
async def test_the_drain_ends_a_stream_a_second_before_uvicorns_limit(settings, began_ago, left):
    """GATEWAY_DRAIN_S is uvicorn's graceful-shutdown budget, counted from when the drain began;
    a stream gets its error event 1 s before it (STREAM_DRAIN_MARGIN_S), never in the past.
    The live drain: tests/integration/test_streaming.py."""
    settings.GATEWAY_DRAIN_S = 3
    loop = asyncio.get_running_loop()
    draining.began_at = time.monotonic() - began_ago
    try:
        assert _drain_deadline() - loop.time() == pytest.approx(left, abs=0.01)
    finally:
        draining.began_at = None
