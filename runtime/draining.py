"""Whether this process is draining: set from the moment it is told to stop (SIGTERM or SIGINT,
or the lifespan shutdown), so /health/ready never answers 200 again while requests finish.

uvicorn installs its own handlers for those signals when it starts serving, before the lifespan
startup; `watch_stop_signals` (called from the lifespan startup) chains in front of them, so
uvicorn still drains exactly as it would, and restores its originals on exit. The handler only
sets a flag; the `draining` line is logged, and the listeners (`on_begin`: open event streams,
runtime/streams.py) are told, from the event loop, outside any request's context (a signal
handler runs in whatever code it interrupted, a request's included).
"""

import asyncio
import contextlib
import contextvars
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

logger = logging.getLogger("gateway.drain")

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Draining:
    def __init__(self) -> None:
        self._event = threading.Event()
        self.began_at: float | None = None  # time.monotonic() when the drain began
        self._listeners: list[Callable[[], None]] = []

    def __bool__(self) -> bool:
        return self._event.is_set()

    def on_begin(self, listener: Callable[[], None]) -> None:
        """Call `listener` on the event loop when the drain begins."""
        self._listeners.append(listener)

    def begin(self, reason: str) -> None:
        if not self._event.is_set():
            self._set()
            self._began(reason)

    def _set(self) -> None:
        self.began_at = time.monotonic()
        self._event.set()

    def _began(self, reason: str) -> None:
        _log_draining(reason)
        for listener in self._listeners:
            listener()

    def watch_stop_signals(self) -> None:
        """Chain a handler in front of the current SIGTERM/SIGINT handlers (main thread, on the
        serving event loop)."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in _STOP_SIGNALS:
            previous = signal.getsignal(sig)
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, self._chained(sig, previous, loop))

    def _chained(self, sig: signal.Signals, previous: Any, loop: asyncio.AbstractEventLoop) -> Any:
        def handler(signum: int, frame: FrameType | None) -> None:
            if not self._event.is_set():
                self._set()
                loop.call_soon_threadsafe(self._began, sig.name, context=contextvars.Context())
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)

        return handler

    def clear(self) -> None:
        """Forget (tests)."""
        self._event.clear()
        self.began_at = None


def _log_draining(reason: str) -> None:
    logger.info("draining", extra={"event": "draining", "reason": reason})


draining = Draining()
