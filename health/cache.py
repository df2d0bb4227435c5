"""GET /health's probe rounds: single-flight, with a short cache, per event loop.

Without it every monitor's call probes every agent (N monitors x M agents probes). Here a round
probes each agent once; a caller arriving while a round runs awaits that round, and a round that
started less than `ttl_s` (1 s) ago is served from memory, so the agents see at most one probe
per second per event loop (per worker process) however many monitors call.

A round is reused only for the same question: the same agent specs (an agent added, removed or
edited starts a new round at once) and the same set of open breakers (a `circuit_open` answer is
never older than the cache, and a breaker that closed gets its agent probed again).
"""

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from health.probes import AgentHealth
from runtime import OPEN, AgentSpec

Results = dict[str, AgentHealth]
Probe = Callable[[list[AgentSpec], Mapping[str, str]], Coroutine[Any, Any, Results]]

TTL_S = 1.0


@dataclass(slots=True)
class _Round:
    specs: tuple[AgentSpec, ...]
    open_breakers: frozenset[str]
    started_at: float
    task: asyncio.Task[Results]

    def answers(self, specs: tuple[AgentSpec, ...], open_breakers: frozenset[str]) -> bool:
        return self.open_breakers == open_breakers and self.specs == specs


class HealthCache:
    """One probe round at a time per event loop, its results reused for `ttl_s` from its start.
    `clock` is injectable (tests); it must be monotonic."""

    def __init__(self, ttl_s: float = TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._rounds: dict[asyncio.AbstractEventLoop, _Round] = {}

    async def results(
        self, specs: Sequence[AgentSpec], breaker_states: Mapping[str, str], probe: Probe
    ) -> Results:
        """The health of `specs`: from the latest round when it answers the same question and
        is still running or started less than `ttl_s` ago, else from a new round."""
        loop = asyncio.get_running_loop()
        wanted = tuple(specs)
        open_breakers = frozenset(key for key, state in breaker_states.items() if state == OPEN)
        latest = self._rounds.get(loop)
        now = self.clock()
        if latest is None or not self._reusable(latest, wanted, open_breakers, now):
            task = loop.create_task(probe(list(wanted), dict(breaker_states)))
            task.add_done_callback(_retrieve_exception)
            latest = _Round(wanted, open_breakers, now, task)
            self._forget_closed_loops()
            self._rounds[loop] = latest
        # A caller that leaves (its view cancelled) does not cancel the round the others await.
        return await asyncio.shield(latest.task)

    def _reusable(
        self,
        latest: _Round,
        specs: tuple[AgentSpec, ...],
        open_breakers: frozenset[str],
        now: float,
    ) -> bool:
        if not latest.answers(specs, open_breakers):
            return False
        task = latest.task
        if not task.done():
            return True  # in flight: join it
        if task.cancelled() or task.exception() is not None:
            return False  # never cache a failed round
        return now - latest.started_at < self.ttl_s

    def clear(self) -> None:
        self._rounds.clear()

    def _forget_closed_loops(self) -> None:
        for loop in [loop for loop in self._rounds if loop.is_closed()]:
            del self._rounds[loop]


def _retrieve_exception(task: asyncio.Task[Results]) -> None:
    """Mark a failed round's exception as seen: its callers may all have left."""
    if not task.cancelled():
        task.exception()


health_cache = HealthCache()
