"""Deadlines that share one loop timer: `with deadline_at(when):` does what
`async with asyncio.timeout_at(when):` does, at a fraction of the cost.

asyncio.timeout arms a loop timer on entry and cancels it on exit; under uvloop that is ~27k
instructions a use, 3 % of a proxied call (bench/README.md, "Issue 15: deadlines on one timer").
Here entering a deadline puts it in its loop's set and leaving takes it out. The loop has one
timer, armed for the earliest deadline when none earlier is armed; when it fires it cancels the
tasks whose deadlines have passed and re-arms for the earliest left. Under steady traffic it is
armed about once per timeout period, whatever the number of calls.

An overdue task is cancelled and its block raises TimeoutError, exactly as with asyncio.timeout:
unless the task was also cancelled for another reason meanwhile, in which case the
CancelledError goes on. An agent's event stream keeps asyncio.timeout_at (runtime/streams.py):
the drain moves its deadline, which these cannot.
"""

import asyncio
import math
import threading
import weakref
from types import TracebackType


class Deadline:
    """One use, in the task that enters it; `deadline_at` and `deadline_in` make them."""

    __slots__ = ("_cancelling", "_delay", "_expired", "_task", "_timer", "when")

    def __init__(self, when: float, delay: float | None = None) -> None:
        self.when = when
        self._delay = delay
        self._expired = False

    def __enter__(self) -> "Deadline":
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline is entered inside a task")
        self._task = task
        loop = task.get_loop()
        if self._delay is not None:
            self.when = loop.time() + self._delay
        self._cancelling = task.cancelling()
        self._timer = _timer_of(loop)
        self._timer.add(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._expired:
            self._timer.pending.discard(self)
            return
        # As asyncio.Timeout.__aexit__: the cancellation is ours to turn into a TimeoutError
        # only if nothing else asked to cancel the task since it entered.
        if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()


def deadline_at(when: float) -> Deadline:
    """A deadline at `when`, in the running loop's time."""
    return Deadline(when)


def deadline_in(delay: float) -> Deadline:
    """A deadline `delay` seconds after the block is entered."""
    return Deadline(math.inf, delay)


class _LoopTimer:
    """The deadlines entered in one event loop, and its one timer."""

    __slots__ = ("__weakref__", "_armed_at", "_handle", "loop", "pending")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: set[Deadline] = set()  # entered, not yet left nor expired
        self._armed_at = math.inf
        self._handle: asyncio.Handle | None = None

    def add(self, deadline: Deadline) -> None:
        self.pending.add(deadline)
        if deadline.when < self._armed_at:
            if self._handle is not None:
                self._handle.cancel()
            self._arm(deadline.when)

    def _arm(self, when: float) -> None:
        self._armed_at = when
        if when <= self.loop.time():  # as asyncio.timeout: before what the loop runs next
            self._handle = self.loop.call_soon(self._fire)
        else:
            self._handle = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        """One pass over the pending deadlines: cheap while few are reached (a pass per
        `timeout` under steady traffic); when most calls time out, each expiry costs a pass over
        the calls in flight."""
        # The deadline the timer was armed for is due even if the loop ran it early (libuv
        # counts whole milliseconds), as asyncio.timeout's own timer would be; others wait.
        due = max(self.loop.time(), self._armed_at)
        self._handle, self._armed_at = None, math.inf
        overdue, earliest = [], math.inf
        for deadline in self.pending:
            if deadline.when <= due:
                overdue.append(deadline)
            elif deadline.when < earliest:
                earliest = deadline.when
        for deadline in overdue:
            self.pending.discard(deadline)
            deadline._expire()
        if earliest < math.inf:
            self._arm(earliest)


class _ThreadTimer(threading.local):
    timer: "weakref.ref[_LoopTimer] | None" = None


_current = _ThreadTimer()


def _timer_of(loop: asyncio.AbstractEventLoop) -> _LoopTimer:
    """The loop's timer. A thread runs one loop at a time, so each thread keeps the timer of the
    loop it ran last; a timer replaced (another loop, then this one again) still serves the
    deadlines entered with it: alternating loops costs timers, never a deadline. The reference
    is weak: what keeps a timer is its armed handle and its pending deadlines, so a closed loop's
    timer, its deadlines and their tasks go with the loop."""
    held = _current.timer
    timer = held() if held is not None else None
    if timer is None or timer.loop is not loop:
        timer = _LoopTimer(loop)
        _current.timer = weakref.ref(timer)
    return timer
