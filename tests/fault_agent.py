"""A real agent server for tests: raw asyncio TCP on 127.0.0.1, in its own thread.

Each request's path picks a behaviour, so one server serves every fault at once:

    /ok               200 {"reply": "echo: <message>", "url": null}
    /ok_url           200 with "url": "https://example.test/x"
    /empty            200 {"reply": ""}
    /status/<code>[/<s>]
                      that HTTP status, tiny JSON body (after <s> seconds)
    /garbage          200 with a body that is not JSON
    /noreply          200 {"foo": 1} (valid JSON, no string reply)
    /huge             200 with a 20 MB body (Content-Length announced)
    /huge_chunked     200, 20 MB chunked, no Content-Length
    /gzip             /ok, gzip-compressed (Content-Encoding: gzip)
    /deflate          /ok, zlib-compressed (Content-Encoding: deflate)
    /deflate_raw      /ok, raw deflate without zlib's header (Content-Encoding: deflate)
    /gzip_corrupt     200, Content-Encoding: gzip, a body that is not gzip
    /gzip_huge        200, 20 MB of JSON-ish bytes gzip-compressed to ~20 KB
    /slow/<seconds>   wait, then /ok
    /hang             read the request, never answer
    /stall            send the status line and headers, then never the body
    /dribble          headers, then one body byte every 0.3 s (never finishes in time)
    /reset            reset the connection (RST) before any response byte
    /close            close the connection cleanly before any response byte
    /reset_mid        headers and half the body, then RST
    /flap/<n>[/<s>]   reset the first n requests, then /ok (after <s> seconds)
    /sse/<n>/<gap>[/<end>]
                      200 text/event-stream (chunked): n events (-1: no end), the first at once,
                      then one every <gap> seconds; then <end>: `end` (the last chunk; the
                      default), `stall` (silence until the peer closes), `reset` (RST), `close`
                      (FIN without the last chunk)
    /sse_next         /sse/<the next entry of `sse_script`>, popped per request
    /health           200 {"status": "ok"}  (GET)

Set `failing` to a status (e.g. 503) and every request, /health included, gets it: a replica
gone bad; 0 (the default) brings it back.

Observations (thread-safe): `requests` (path, headers, JSON body) in order, `connections_opened`,
`connections_closed_by_peer` (the gateway hung up on us: how cancellation is seen), `sse_sent`
(the monotonic time each event was written) and `peer_closed_at` (when the gateway hung up).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HUGE_BYTES = 20 * 1024 * 1024
_GZIP_HUGE = gzip.compress(b"x" * HUGE_BYTES)


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


# path -> (Content-Encoding, compressor) for the compressed echoes
COMPRESSORS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "gzip": ("gzip", gzip.compress),
    "deflate": ("deflate", zlib.compress),
    "deflate_raw": ("deflate", _raw_deflate),
}


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float = field(default_factory=time.monotonic)  # once the body has arrived

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FaultAgent:
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[ReceivedRequest] = field(default_factory=list)
    connections_opened: int = 0
    connections_closed_by_peer: int = 0
    flap_counts: dict[str, int] = field(default_factory=dict)
    failing: int = 0
    sse_sent: list[float] = field(default_factory=list)
    sse_script: list[str] = field(default_factory=list)
    peer_closed_at: list[float] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.AbstractServer | None = None
    _closed_event: threading.Event = field(default_factory=threading.Event)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FaultAgent:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle, self.host, 0, backlog=2048)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="fault-agent", daemon=True)
        self._thread.start()
        ready.wait(5)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def url(self, path: str = "/ok") -> str:
        return f"http://{self.host}:{self.port}{path}"

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- observations ------------------------------------------------------------------------
    def attempts(self, path: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if path is None or r.path == path)

    def last_request(self) -> ReceivedRequest:
        with self._lock:
            return self.requests[-1]

    def wait_for(self, predicate: Callable[[FaultAgent], bool], timeout: float = 5.0) -> bool:
        """Block (from a thread that is not the event loop) until `predicate(self)` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if predicate(self):
                    return True
            time.sleep(0.01)
        with self._lock:
            return bool(predicate(self))

    async def until(self, predicate: Callable[[FaultAgent], bool], timeout: float = 5.0) -> bool:
        """Await, without blocking the event loop, until `predicate(self)` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if predicate(self):
                    return True
            await asyncio.sleep(0.005)
        with self._lock:
            return bool(predicate(self))

    # -- the server --------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self.connections_opened += 1
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    with self._lock:
                        self.connections_closed_by_peer += 1
                    return
                with self._lock:
                    self.requests.append(request)
                keep_open = await self._respond(request, reader, writer)
                if not keep_open:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            with self._lock:
                self.connections_closed_by_peer += 1
        except asyncio.CancelledError:
            pass  # server shutdown; finishing normally keeps asyncio.streams from logging it
        finally:
            if not writer.is_closing():
                writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> ReceivedRequest | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        lines = head.decode("latin1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        body = await reader.readexactly(length) if length else b""
        return ReceivedRequest(method=method, path=path, headers=headers, body=body)

    async def _respond(
        self, request: ReceivedRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        path = request.path
        parts = path.strip("/").split("/")
        name = parts[0]
        if self.failing:
            return await self._send_json(writer, self.failing, {"error": "failing"})
        if name == "health":
            return await self._send_json(writer, 200, {"status": "ok"})
        if name == "slow":
            await asyncio.sleep(float(parts[1]))
            return await self._send_echo(writer, request)
        if name == "flap":
            failures = int(parts[1])
            with self._lock:
                seen = self.flap_counts.get(path, 0)
                self.flap_counts[path] = seen + 1
            if seen < failures:
                _reset(writer)
                return False
            if len(parts) > 2:
                await asyncio.sleep(float(parts[2]))
            return await self._send_echo(writer, request)
        if name in ("ok", ""):
            return await self._send_echo(writer, request)
        if name == "ok_url":
            return await self._send_json(
                writer, 200, {"reply": "con enlace", "url": "https://example.test/x"}
            )
        if name == "empty":
            return await self._send_json(writer, 200, {"reply": "", "url": None})
        if name == "noreply":
            return await self._send_json(writer, 200, {"foo": 1})
        if name == "status":
            if len(parts) > 2:
                await asyncio.sleep(float(parts[2]))
            return await self._send_json(writer, int(parts[1]), {"error": "boom"})
        if name == "garbage":
            return await self._send_raw(writer, 200, b"<html>not json</html>")
        if name == "huge":
            return await self._send_raw(writer, 200, b"x" * HUGE_BYTES)
        if name in COMPRESSORS:
            return await self._send_echo(writer, request, compress=name)
        if name == "gzip_corrupt":
            return await self._send_raw(writer, 200, b"not gzip at all", encoding="gzip")
        if name == "gzip_huge":
            return await self._send_raw(writer, 200, _GZIP_HUGE, encoding="gzip")
        if name == "huge_chunked":
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )
            chunk = b"x" * 65536
            try:
                for _ in range(HUGE_BYTES // len(chunk)):
                    writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
                await writer.drain()
            except ConnectionError:
                with self._lock:
                    self.connections_closed_by_peer += 1
                return False
            return True
        if name == "hang":
            await self._wait_for_peer_close(reader)
            return False
        if name == "stall":
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n"
            )
            await writer.drain()
            await self._wait_for_peer_close(reader)
            return False
        if name == "dribble":
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n"
            )
            try:
                for _ in range(1000):
                    writer.write(b" ")
                    await writer.drain()
                    await asyncio.sleep(0.3)
            except ConnectionError:
                with self._lock:
                    self.connections_closed_by_peer += 1
            return False
        if name == "reset":
            _reset(writer)
            return False
        if name == "sse":
            return await self._send_events(parts[1:], reader, writer)
        if name == "sse_next":
            with self._lock:
                script = self.sse_script.pop(0)
            return await self._send_events(script.split("/"), reader, writer)
        if name == "close":
            writer.close()
            return False
        if name == "reset_mid":
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n"
                b'{"reply": "half'
            )
            await writer.drain()
            _reset(writer)
            return False
        return await self._send_json(writer, 404, {"error": "unknown behaviour"})

    async def _wait_for_peer_close(self, reader: asyncio.StreamReader) -> None:
        try:
            while await reader.read(65536):
                pass
        except ConnectionError:
            pass
        with self._lock:
            self.connections_closed_by_peer += 1
            self.peer_closed_at.append(time.monotonic())

    async def _send_events(
        self, args: list[str], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        count, gap = int(args[0]), float(args[1])
        end = args[2] if len(args) > 2 else "end"
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        peer_closed = asyncio.ensure_future(self._wait_for_peer_close(reader))
        try:
            sent = 0
            while count < 0 or sent < count:
                if sent:
                    await asyncio.wait([peer_closed], timeout=gap)
                if peer_closed.done():
                    return False
                event = b"id: %d\ndata: token %d\n\n" % (sent, sent)
                writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                await writer.drain()
                with self._lock:
                    self.sse_sent.append(time.monotonic())
                sent += 1
            if end == "stall":
                await peer_closed
                return False
            peer_closed.cancel()
            # Until the watcher has run its cancellation it is still the reader's waiter, and the
            # next request's read on this kept-alive connection would raise RuntimeError.
            await asyncio.wait([peer_closed])
            if end == "reset":
                _reset(writer)
                return False
            if end == "close":
                writer.close()
                return False
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        except ConnectionError:
            return False
        finally:
            peer_closed.cancel()

    async def _send_echo(
        self, writer: asyncio.StreamWriter, request: ReceivedRequest, *, compress: str = ""
    ) -> bool:
        try:
            message = json.loads(request.body).get("message", "")
        except (ValueError, AttributeError):
            message = ""
        reply = {"reply": f"echo: {message}", "url": None}
        if compress:
            encoding, compressor = COMPRESSORS[compress]
            body = compressor(json.dumps(reply).encode())
            return await self._send_raw(writer, 200, body, encoding=encoding)
        return await self._send_json(writer, 200, reply)

    async def _send_json(self, writer: asyncio.StreamWriter, status: int, body: Any) -> bool:
        return await self._send_raw(writer, status, json.dumps(body).encode())

    async def _send_raw(
        self, writer: asyncio.StreamWriter, status: int, body: bytes, *, encoding: str = ""
    ) -> bool:
        extra = f"content-encoding: {encoding}\r\n".encode() if encoding else b""
        writer.write(
            b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n"
            % (status, len(body), extra)
            + body
        )
        try:
            await writer.drain()
        except ConnectionError:
            return False
        return True


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN (SO_LINGER 0)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def refused_url(path: str = "/ok") -> str:
    """A URL on a port where nothing listens (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"
