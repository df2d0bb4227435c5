"""The asyncio agent stub, for machines without nginx: `python -m bench.stub.agent --fd N`.

A bare asyncio Protocol with httptools' parser (already a gateway dependency): keep-alive HTTP/1.1,
the request body read and dropped, the stub paths answered after their delay; and
`/stream/<events>/<interval ms>`, an event stream (bench/streams.py).
"""

import argparse
import asyncio
import socket

import httptools

from bench.stub.paths import REPLY, STUB_PATHS

_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(REPLY),
    REPLY,
)
_HEALTH = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{"status":"ok"}'
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


class StubProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_message_complete(self) -> None:
        path = self.url.split(b"?", 1)[0].decode()
        if path == "/health":
            self._write(_HEALTH)
            return
        if path.startswith("/stream/"):
            _, _, events, interval_ms = path.split("/")
            self._write(_STREAM_HEAD)
            self._stream(0, int(events), int(interval_ms) / 1000)
            return
        delay = STUB_PATHS.get(path)
        if delay is None:
            self._write(_NOT_FOUND)
        elif delay <= 0:
            self._write(_OK)
        else:
            asyncio.get_running_loop().call_later(delay, self._write, _OK)

    def _stream(self, sent: int, events: int, interval_s: float) -> None:
        """Event `sent` now, the next one `interval_s` later; the last chunk after `events`."""
        if self.transport is None or self.transport.is_closing():
            return
        if sent == events:
            self._write(b"0\r\n\r\n")
            return
        event = b'data: {"delta": "token %d"}\n\n' % sent
        self._write(b"%x\r\n%s\r\n" % (len(event), event))
        asyncio.get_running_loop().call_later(
            interval_s, self._stream, sent + 1, events, interval_s
        )

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


async def serve(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    server = await asyncio.get_running_loop().create_server(StubProtocol, sock=sock, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True, help="a bound, listening socket")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(serve(args.fd))
    except ImportError:
        asyncio.run(serve(args.fd))


if __name__ == "__main__":
    main()
