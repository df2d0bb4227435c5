"""One agent call under the agent's rules: breaker, concurrency limit, deadline, retry.

The breaker sees exactly one outcome per request; the whole call, retries and backoff included,
ends within the agent's `timeout_s`.
"""

import asyncio
import random
from collections.abc import Callable

from agents.client import AgentReply, RetryableConnectionError
from agents.errors import AgentBusyError, AgentDisabledError, AgentError, AgentTimeoutError
from agents.runtime import AgentRuntime

RETRY_BACKOFF_S = (0.1, 0.5)


async def agent_call(
    runtime: AgentRuntime,
    body: bytes,
    *,
    request_id: str,
    before_send: Callable[[], None] | None = None,
) -> AgentReply:
    """`before_send` runs once the call is let through (breaker and concurrency limit)."""
    spec = runtime.spec
    if not spec.enabled:
        raise AgentDisabledError(spec.key)
    limiter, breaker = runtime.limiter, runtime.breaker
    permit = breaker.acquire()
    if not limiter.try_acquire():
        breaker.release(permit)
        raise AgentBusyError(spec.key)
    try:
        if before_send is not None:
            before_send()
        reply = await _attempts(runtime, body, request_id=request_id)
    except AgentError as exc:
        if exc.counts_as_failure:
            breaker.record_failure(permit)
        raise
    else:
        breaker.record_success(permit)
        return reply
    finally:
        limiter.release()
        breaker.release(permit)  # no-op after an outcome; neutral otherwise (cancelled, 4xx)


async def _attempts(runtime: AgentRuntime, body: bytes, *, request_id: str) -> AgentReply:
    spec = runtime.spec
    client = runtime.client
    try:
        async with asyncio.timeout(spec.timeout_s):
            for attempt in range(spec.retries + 1):
                try:
                    return await client.post_json(body, request_id=request_id)
                except RetryableConnectionError:
                    if attempt == spec.retries:
                        raise
                    await asyncio.sleep(random.uniform(*RETRY_BACKOFF_S))
    except TimeoutError as exc:
        raise AgentTimeoutError(f"no answer within {spec.timeout_s:g}s") from exc
    raise AssertionError("unreachable")  # pragma: no cover
