"""runtime/deadlines.py against asyncio.timeout_at: each scenario runs with both, on asyncio's
loop and on uvloop, and must end the same way."""

import asyncio
import gc
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any

import pytest
import uvloop

from runtime import deadline_at, deadline_in
from runtime.deadlines import Deadline


class _Ours:
    """deadline_at behind asyncio.timeout_at's `async with`, so one scenario drives both."""

    def __init__(self, when: float) -> None:
        self._deadline = deadline_at(when)

    async def __aenter__(self) -> Deadline:
        return self._deadline.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._deadline.__exit__(kind, exc, tb)


Timeout = Callable[[float], AbstractAsyncContextManager[object]]
IMPLEMENTATIONS: dict[str, Timeout] = {
    "asyncio.timeout_at": asyncio.timeout_at,
    "deadline_at": _Ours,
}
RUNNERS: dict[str, Callable[[Coroutine[object, object, Any]], Any]] = {
    "asyncio": asyncio.run,
    "uvloop": uvloop.run,
}


# uvloop may run a timer up to a millisecond before the loop time it was armed for (libuv counts
# whole milliseconds): asyncio.timeout's and deadline_at's alike.
_RESOLUTION_S = 0.001


def _now() -> float:
    return asyncio.get_running_loop().time()


Block = Callable[[Timeout], Awaitable[None]]  # a scenario's work, given the implementation


async def _outcome(timeout: Timeout, when_in: float, body: Block) -> tuple:
    """How a block with a deadline `when_in` seconds away ended, whether it ended no earlier
    than its deadline, and whether its task is left with a cancellation pending."""
    started = _now()
    try:
        async with timeout(started + when_in):
            await body(timeout)
        ended = "ok"
    except TimeoutError:
        ended = "TimeoutError"
    except asyncio.CancelledError:
        ended = "CancelledError"
    task = asyncio.current_task()
    assert task is not None
    return ended, _now() >= started + when_in - _RESOLUTION_S, task.cancelling()


async def _sleep_briefly(timeout: Timeout) -> None:
    await asyncio.sleep(0.01)


async def _sleep_long(timeout: Timeout) -> None:
    await asyncio.sleep(30)


async def _cancelled_from_outside(timeout: Timeout) -> None:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().call_later(0.01, task.cancel)
    await asyncio.sleep(30)


async def _cancelled_as_the_deadline_passes(timeout: Timeout) -> None:
    # A callback holds the loop past the deadline, then asks to cancel the task: the deadline's
    # timer and that request both reach the task before it runs again, on either loop.
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()

    def hold_then_cancel() -> None:
        time.sleep(0.1)
        loop.call_soon(task.cancel)

    loop.call_later(0.02, hold_then_cancel)
    await asyncio.sleep(30)


async def _inner_deadline_first(timeout: Timeout) -> None:
    with pytest.raises(TimeoutError):
        async with timeout(_now() + 0.02):
            await asyncio.sleep(30)
    await asyncio.sleep(30)  # then the outer deadline


async def _inner_deadline_later(timeout: Timeout) -> None:
    async with timeout(_now() + 20):
        await asyncio.sleep(30)


# scenario -> (seconds to the deadline, the block, how it ends: _outcome's triple)
SCENARIOS: dict[str, tuple[float, Block, tuple]] = {
    "ends in time": (0.2, _sleep_briefly, ("ok", False, 0)),
    "overdue": (0.05, _sleep_long, ("TimeoutError", True, 0)),
    "deadline already passed": (-1.0, _sleep_long, ("TimeoutError", True, 0)),
    "cancelled from outside first": (5.0, _cancelled_from_outside, ("CancelledError", False, 1)),
    "cancelled as the deadline passes": (
        0.05,
        _cancelled_as_the_deadline_passes,
        ("CancelledError", True, 1),
    ),
    "inner deadline first, then the outer": (0.2, _inner_deadline_first, ("TimeoutError", True, 0)),
    "outer deadline before an inner one": (0.05, _inner_deadline_later, ("TimeoutError", True, 0)),
}


@pytest.mark.parametrize("runner", sorted(RUNNERS))
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_each_scenario_ends_as_with_asyncio_timeout(scenario: str, runner: str) -> None:
    when_in, body, expected = SCENARIOS[scenario]
    outcomes = {
        name: RUNNERS[runner](_outcome(impl, when_in, body))
        for name, impl in IMPLEMENTATIONS.items()
    }
    assert outcomes["deadline_at"] == outcomes["asyncio.timeout_at"] == expected


@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_a_later_shorter_deadline_is_not_held_to_an_earlier_longer_ones_timer(runner: str) -> None:
    """Many tasks, deadlines entered out of order and some left early: each overdue one times
    out at its own deadline, not when the one timer was first armed for (20 s away)."""

    async def main() -> dict[float, str]:
        started, ended = _now(), {}

        async def call(when_in: float, work_s: float) -> None:
            try:
                with deadline_in(when_in):
                    await asyncio.sleep(work_s)
                ended[when_in] = "ok"
            except TimeoutError:
                ended[when_in] = "timeout" if _now() < started + 5 else "late"

        first = asyncio.create_task(call(20.0, 30))
        await asyncio.sleep(0)
        await asyncio.gather(
            *(
                call(when_in, work_s)
                for when_in, work_s in ((0.3, 0.01), (0.1, 30), (0.2, 30), (0.05, 0.01))
            )
        )
        first.cancel()
        return ended

    assert RUNNERS[runner](main()) == {0.3: "ok", 0.1: "timeout", 0.2: "timeout", 0.05: "ok"}


@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_a_deadline_after_the_timer_fired_with_nothing_left_is_kept(runner: str) -> None:
    async def main() -> str:
        with deadline_in(0.02):  # arms the timer; the block ends before it fires
            pass
        await asyncio.sleep(0.05)  # the timer fires with nothing to cancel and is not re-armed
        try:
            with deadline_in(0.02):
                await asyncio.sleep(30)
        except TimeoutError:
            return "timed out"
        return "not cancelled"

    assert RUNNERS[runner](main()) == "timed out"


def test_a_deadline_needs_a_task() -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()
        refused: asyncio.Future[str] = loop.create_future()

        def callback() -> None:  # runs in the loop, in no task
            try:
                with deadline_in(1):
                    refused.set_result("entered")
            except RuntimeError as exc:
                refused.set_result(str(exc))

        loop.call_soon(callback)
        return await refused

    assert asyncio.run(main()) == "a deadline is entered inside a task"


def test_a_closed_loops_pending_deadlines_go_with_it() -> None:
    """A loop closed with a task still inside a deadline (a test's, or a worker's at exit): this
    module must not keep that loop's timer, deadlines or tasks alive afterwards."""
    loop = asyncio.new_event_loop()

    async def abandoned() -> None:
        with deadline_in(30):
            await asyncio.sleep(30)

    task = loop.create_task(abandoned())
    loop.run_until_complete(asyncio.sleep(0.01))
    assert not task.done()
    left = weakref.ref(task)
    loop.set_exception_handler(lambda *_: None)  # 'Task was destroyed but it is pending'
    loop.close()
    del task, loop
    gc.collect()
    assert left() is None
