"""Whether this process is draining: set from the moment it is told to stop (SIGTERM or SIGINT,
or the lifespan shutdown), so /health/ready never answers 200 again while requests finish.

uvicorn installs its own handlers for those signals when it starts serving, before the lifespan
startup; `watch_stop_signals` (called from the lifespan startup) chains in front of them, so
uvicorn still drains exactly as it would, and restores its originals on exit.
"""

import contextlib
import logging
import signal
import threading
from types import FrameType
from typing import Any

logger = logging.getLogger("gateway.drain")

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Draining:
    def __init__(self) -> None:
        self._event = threading.Event()

    def __bool__(self) -> bool:
        return self._event.is_set()

    def begin(self, reason: str) -> None:
        if not self._event.is_set():
            self._event.set()
            logger.info("draining", extra={"event": "draining", "reason": reason})

    def watch_stop_signals(self) -> None:
        """Chain a handler in front of the current SIGTERM/SIGINT handlers (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in _STOP_SIGNALS:
            previous = signal.getsignal(sig)
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, self._chained(sig, previous))

    def _chained(self, sig: signal.Signals, previous: Any) -> Any:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.begin(sig.name)
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)

        return handler

    def clear(self) -> None:
        """Forget (tests)."""
        self._event.clear()


draining = Draining()
