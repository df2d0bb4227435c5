"""AgentRuntime: what the hot path holds for one agent (spec, client, breaker, limiter)."""

from dataclasses import dataclass

from agents.breaker import AsyncBreaker
from agents.client import AgentClient
from agents.specs import AgentSpec


class ConcurrencyLimiter:
    """Counts calls in flight and refuses one over the limit at once (no queue).

    Used from the event loop only, so a plain counter is enough. The same limiter (and breaker)
    survives a rebuild of its agent, so calls in flight keep counting against the limit.
    """

    __slots__ = ("inflight", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.inflight = 0

    def try_acquire(self) -> bool:
        if self.inflight >= self.limit:
            return False
        self.inflight += 1
        return True

    def release(self) -> None:
        self.inflight -= 1


@dataclass(frozen=True, slots=True)
class AgentRuntime:
    spec: AgentSpec
    client: AgentClient
    breaker: AsyncBreaker
    limiter: ConcurrencyLimiter

    @property
    def key(self) -> str:
        return self.spec.key
