"""One agent call under the agent's rules: breaker, concurrency limit (with a fair share per
empresa), deadline, retry; for a streaming request, the agent's event stream (runtime/streams.py).

The breaker sees exactly one outcome per request; the whole call, any wait for a slot, retries
and backoff included, ends within the agent's `timeout_s`, and holds the runtime it started with
(runtime/agent_runtime.py): an edit saved meanwhile applies to the next call, never to this one's
remaining attempts.
"""

import asyncio
import random
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager, nullcontext

import aiohttp

from agents.models import RetryOn
from observability.context import RequestTrace, TraceHeaders
from runtime.agent_runtime import AgentRuntime, Replica
from runtime.client import AgentReply
from runtime.deadlines import deadline_at
from runtime.errors import (
    AgentBusyError,
    AgentDisabledError,
    AgentError,
    AgentTimeoutError,
    NotSentConnectionError,
    RetryableConnectionError,
)
from runtime.pool_metrics import OK, attempt_ended
from runtime.specs import AgentSpec
from runtime.streams import AgentStream, stream_first_event

RETRY_BACKOFF_S = (0.1, 0.5)


async def agent_call(
    runtime: AgentRuntime,
    body: bytes,
    *,
    request_id: str,
    tenant: Hashable = None,
    extra_headers: tuple[tuple[str, str], ...] = (),
    before_send: Callable[[], None] | None = None,
    trace: RequestTrace | None = None,
    stream_accept: str | None = None,
    deadline: float | None = None,
    session_id: int | None = None,
) -> AgentReply | AgentStream:
    """`tenant` (the empresa) is who the call's concurrency slot counts for
    (runtime/limiter.py); `extra_headers` go on every attempt (the caller's trace context);
    `before_send` runs once the call is let through (breaker and concurrency limit); `trace`
    (the request's recorded span, tracing on) gets a client span per attempt, whose traceparent
    replaces the caller's. `session_id` keeps a session on one endpoint of an agent with
    session affinity.

    `stream_accept`: the caller's Accept on a streaming request. An agent that streams gives an
    AgentStream whose first event arrived within the deadline; it holds the call's slot, breaker
    permit and a lease on the client until it is closed, which settles the breaker.

    `deadline` (loop time): an earlier end than `timeout_s` from now (a failover agent's call
    ends with the request's deadline: chat/failover.py)."""
    spec = runtime.spec
    if not spec.enabled or not runtime.replicas:  # no endpoint enabled: as good as disabled
        raise AgentDisabledError(spec.key)
    started = asyncio.get_running_loop().time()
    own = started + spec.timeout_s
    deadline = own if deadline is None or deadline > own else deadline
    limiter, breaker = runtime.limiter, runtime.breaker
    permit = breaker.acquire()
    if not limiter.try_acquire(tenant):
        breaker.release(permit)
        # An empresa below its fair share may wait for a slot, within the call's deadline (and
        # is let go if its caller leaves meanwhile: `before_send` starts that watch).
        if limiter.may_wait(tenant) and before_send is not None:
            before_send()
        if not await limiter.wait_for_slot(tenant, deadline):
            raise AgentBusyError(spec.key)
        try:
            permit = breaker.acquire()
        except BaseException:
            limiter.release(tenant)
            raise
    streaming = False
    try:
        if before_send is not None:
            before_send()
        with runtime.lease():
            reply = await _attempts(
                runtime, body, request_id=request_id, started=started, deadline=deadline,
                session_id=session_id,
                extra=extra_headers, trace=trace, stream_accept=stream_accept,
            )  # fmt: skip
            if isinstance(reply, AgentStream):
                reply.hold(runtime, permit, tenant)
                streaming = True
    except AgentError as exc:
        if exc.counts_as_failure and runtime.failing_as_a_whole():
            breaker.record_failure(permit)
        raise
    else:
        if not streaming:
            breaker.record_success(permit)
        return reply
    finally:
        if not streaming:  # else the stream gives them back when it closes
            limiter.release(tenant)
            breaker.release(permit)  # no-op after an outcome; neutral otherwise (cancelled, 4xx)


def _may_retry(spec: AgentSpec, error: RetryableConnectionError) -> bool:
    """`retry_on=connect` (agents with side effects): only a request that cannot have reached
    the agent; `connect_or_reset`: also one reset or closed before any response byte."""
    return spec.retry_on != RetryOn.CONNECT or isinstance(error, NotSentConnectionError)


async def _attempts(
    runtime: AgentRuntime,
    body: bytes,
    *,
    request_id: str,
    started: float,
    deadline: float,
    session_id: int | None = None,
    extra: tuple[tuple[str, str], ...] = (),
    trace: RequestTrace | None = None,
    stream_accept: str | None = None,
) -> AgentReply | AgentStream:
    """Attempt n (1 for the first) goes out as `X-Gateway-Attempt: n`, counting attempts that
    never reached the agent; every attempt carries the request id as its `Idempotency-Key`.
    `deadline` (loop time) is the call's: `timeout_s` from its start (`started`) or earlier,
    any wait for a slot included; an event stream's first event must arrive within it too. Each
    attempt goes to the endpoint the balancer picks (by `session_id` with affinity), a retry to
    one not yet tried."""
    spec = runtime.spec
    last = spec.retries + 1
    tried: list[Replica] = []
    try:
        with deadline_at(deadline):
            for attempt in range(1, last + 1):
                replica = runtime.pick(session_id, tried)
                try:
                    return await _attempt(
                        runtime, replica, body, request_id=request_id, attempt=attempt,
                        started=started, deadline=deadline, extra=extra, trace=trace,
                        stream_accept=stream_accept,
                    )  # fmt: skip
                except RetryableConnectionError as exc:
                    if attempt == last or not _may_retry(spec, exc):
                        raise
                    tried.append(replica)
                    await asyncio.sleep(random.uniform(*RETRY_BACKOFF_S))
    except TimeoutError as exc:
        limit = min(spec.timeout_s, deadline - started)
        raise AgentTimeoutError(f"no answer within {limit:.3g}s") from exc
    raise AssertionError("unreachable")  # pragma: no cover


async def _attempt(
    runtime: AgentRuntime,
    replica: Replica,
    body: bytes,
    *,
    request_id: str,
    attempt: int,
    started: float,
    deadline: float,
    extra: TraceHeaders,
    trace: RequestTrace | None,
    stream_accept: str | None,
) -> AgentReply | AgentStream:
    """One attempt on `replica`; in a pool, counted in its in-flight and its outcome recorded
    for outlier ejection (an open stream keeps both until it closes)."""
    pooled = runtime.balancer is not None
    if pooled:
        replica.state.inflight += 1
    outcome, ok = "cancelled", None
    answer: AgentReply | AgentStream | None = None
    try:
        with _attempt_span(trace, runtime, replica, attempt, deadline, extra) as headers:
            response = await replica.client.post_json(
                body, request_id=request_id, attempt=attempt, extra_headers=headers,
                stream_accept=stream_accept,
            )  # fmt: skip
            if isinstance(response, aiohttp.ClientResponse):
                answer = await stream_first_event(runtime, replica, response, started=started)
            else:
                answer = response
        outcome, ok = OK, True
        return answer
    except AgentError as exc:
        outcome, ok = exc.reason, (False if exc.counts_as_failure else None)
        raise
    except asyncio.CancelledError:
        if asyncio.get_running_loop().time() >= deadline:  # the call's deadline, not the caller
            outcome, ok = AgentTimeoutError.reason, False
        raise
    finally:
        if pooled and not isinstance(answer, AgentStream):  # else the stream ends it
            attempt_ended(runtime, replica, outcome, ok)


def _attempt_span(
    trace: RequestTrace | None,
    runtime: AgentRuntime,
    replica: Replica,
    attempt: int,
    deadline: float,
    extra: TraceHeaders,
) -> AbstractContextManager[TraceHeaders]:
    """The attempt's client span, which gives the trace headers to send; untraced, `extra`."""
    if trace is None:
        return nullcontext(extra)
    return trace.attempt(
        agent=runtime.key,
        url=replica.url,
        attempt=attempt,
        breaker_state=runtime.breaker.state,
        deadline=deadline,
    )
