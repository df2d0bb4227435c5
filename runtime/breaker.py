"""An asyncio adapter over pybreaker's state machine.

pybreaker's own `call_async` needs Tornado, and its `calling()` counts any BaseException,
including `asyncio.CancelledError`, as a failure. Here the request path asks for a permit before
the call (`acquire`), then reports exactly one outcome (`record_success`, `record_failure`, or
`release` for outcomes that are neither: caller disconnect, backpressure, a 4xx). Outcomes are fed
through `CircuitBreaker.call` with a thunk, so pybreaker's transitions and listeners apply as
written. On top of it: at most `probe_limit` concurrent probes while half-open.
"""

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pybreaker

from runtime.errors import BreakerOpenError

CLOSED, OPEN, HALF_OPEN = pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN
STATE_VALUES = {CLOSED: 0, OPEN: 1, HALF_OPEN: 2}

StateChangeHook = Callable[[str, str, str], None]  # (agent key, old state, new state)


class _Outcome(Exception):
    """Carries a failure into pybreaker's bookkeeping."""


def _succeed() -> None:
    return None


def _fail() -> None:
    raise _Outcome()


@dataclass(slots=True)
class Permit:
    probe: bool
    settled: bool = False


class _StateListener(pybreaker.CircuitBreakerListener):
    def __init__(self, key: str, hook: StateChangeHook) -> None:
        self._key, self._hook = key, hook
        self.muted = False

    def state_change(self, cb, old_state, new_state) -> None:  # type: ignore[no-untyped-def]
        if not self.muted:
            self._hook(self._key, old_state.name if old_state else CLOSED, new_state.name)


class AsyncBreaker:
    def __init__(
        self,
        *,
        key: str,
        fail_max: int,
        reset_s: float,
        on_state_change: StateChangeHook,
        probe_limit: int = 3,
    ) -> None:
        self._storage = pybreaker.CircuitMemoryStorage(CLOSED)
        self._listener = _StateListener(key, on_state_change)
        self._cb = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_s,
            name=key,
            state_storage=self._storage,
            listeners=[self._listener],
        )
        self.probe_limit = probe_limit
        self._probes = 0

    @property
    def state(self) -> str:
        return self._cb.current_state

    @property
    def fail_counter(self) -> int:
        return self._cb.fail_counter

    def configure(self, *, fail_max: int, reset_s: float) -> None:
        self._cb.fail_max = fail_max
        self._cb.reset_timeout = reset_s

    def retry_after_s(self) -> float:
        opened_at = self._storage.opened_at
        if self.state != OPEN or opened_at is None:
            return 0.0
        remaining = opened_at + timedelta(seconds=self._cb.reset_timeout) - datetime.now(UTC)
        return max(remaining.total_seconds(), 0.0)

    def acquire(self) -> Permit:
        """Let a call through or raise BreakerOpenError; never waits."""
        state = self._cb.current_state
        if state == CLOSED:
            return Permit(probe=False)
        if state == OPEN:
            if self.retry_after_s() > 0:
                raise BreakerOpenError("circuit open")
            self._cb.half_open()
        if self._probes >= self.probe_limit:
            raise BreakerOpenError("circuit half-open; probes in flight")
        self._probes += 1
        return Permit(probe=True)

    def record_success(self, permit: Permit) -> None:
        if not self._settle(permit):
            return
        storage = self._storage
        if not permit.probe and storage.state == CLOSED and storage.counter == 0:
            # pybreaker's closed-state success resets a counter already at zero and tells
            # listeners that have no success hook: skip its lock and calls (every answer).
            return
        self._cb.call(_succeed)

    def record_failure(self, permit: Permit) -> None:
        if self._settle(permit):
            with contextlib.suppress(_Outcome, pybreaker.CircuitBreakerError):
                self._cb.call(_fail)

    def release(self, permit: Permit) -> None:
        """Settle a permit with no outcome (caller gone, refused before the call, 4xx)."""
        self._settle(permit)

    def reset(self) -> None:
        self._cb.close()

    def retire(self) -> None:
        """Replaced by a new breaker: calls still settling here change nothing anyone sees."""
        self._listener.muted = True

    def _settle(self, permit: Permit) -> bool:
        if permit.settled:
            return False
        permit.settled = True
        if permit.probe:
            self._probes -= 1
        # An outcome that arrives while the circuit is open (a call that began before it opened)
        # changes nothing: pybreaker's open state would treat it as a probe.
        return self._cb.current_state != OPEN
