"""uvicorn's httptools protocol with a deadline on each request's line and headers.

uvicorn bounds an idle keep-alive connection (`--timeout-keep-alive`) and nothing else before it
calls the application: a client that opens a connection and sends nothing, or sends its request
line and headers a byte at a time, holds the connection and its file descriptor for as long as it
likes (slowloris). Here they must arrive within HEADER_READ_TIMEOUT_S of the connection opening,
or of the request's first byte on a reused connection; otherwise the connection is closed, as
nginx's `client_header_timeout` does. The body has its own deadline (BODY_READ_TIMEOUT_S, in
edge/lean_handler.py), and the time between requests stays uvicorn's keep-alive timeout.

Served with `--http edge.header_timeout:HeaderTimeoutProtocol` (the container's
entrypoint, scripts/demo.sh, the tests' and the bench's uvicorn processes).
"""

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway_project.conf import gateway_settings


class HeaderTimeoutProtocol(HttpToolsProtocol):
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head_timer()  # a no-op for the first request: the connection's timer runs

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        super().on_headers_complete()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(
                gateway_settings.header_read_timeout_s, self._head_timed_out
            )

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()
