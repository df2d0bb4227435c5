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
    """One timer per connection, not one per request: a request's head only records when it
    began, and the timer, when it fires, closes the connection if a head began more than
    HEADER_READ_TIMEOUT_S ago and is still unfinished, or waits for what is left of that head's
    time. With a timer armed and cancelled for every request the protocol cost ~0.7 % of a
    proxied call's instructions over plain httptools; this way ~0.3 % (bench/README.md, "Issue
    15: served, counted")."""

    # Slots, not instance attributes: uvicorn's protocol already sets 28, and two more give each
    # connection's protocol a dictionary of its own (1.5 kB) instead of the key table CPython
    # shares between the instances of a class.
    __slots__ = ("_head_began", "_head_timer")

    _head_timer: asyncio.TimerHandle | None
    _head_began: float | None  # when the unfinished head began; None between heads

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer = None
        super().connection_made(transport)
        self._head_began = self.loop.time()  # the first head's time runs from the connection
        self._arm_head_timer(self._head_began)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_began is None:
            self._head_began = self.loop.time()
            if self._head_timer is None:
                self._arm_head_timer(self._head_began)

    def on_headers_complete(self) -> None:
        self._head_began = None
        super().on_headers_complete()

    def _arm_head_timer(self, began: float) -> None:
        self._head_timer = self.loop.call_at(
            began + gateway_settings.header_read_timeout_s, self._head_timer_fired
        )

    def _head_timer_fired(self) -> None:
        self._head_timer = None
        began = self._head_began
        if began is None:  # between heads: the next one arms the timer again
            return
        # (the loop's clock and its timers count whole milliseconds: a timer may fire a hair early)
        if self.loop.time() + 0.001 < began + gateway_settings.header_read_timeout_s:
            self._arm_head_timer(began)  # this head began after the one the timer was set for
        elif not self.transport.is_closing():
            self.transport.close()
