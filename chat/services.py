"""chat_handle: route the request to its agent, call it (and, when it fails, its failover agents:
chat/failover.py), and turn the outcome into a reply (or, for a streaming request to an agent
that streams, a StreamAnswer: chat/streaming.py).

Counting the answer in gateway_requests_total is the ASGI front's job (one place for every chat
answer, refusals included); this module sets `ctx.agent`, the label it uses.
"""

import asyncio
import logging
import time

from access.auth import Principal
from access.ratelimit import rate_limiter
from chat import messages, metrics
from chat.failover import (
    ANSWERED,
    FORBIDDEN,
    MIN_LEFT_S,
    NO_TIME,
    failover_agents,
    failover_count,
    fails_over,
)
from chat.payloads import agent_payload
from chat.responses import JsonAnswer
from chat.schemas import ChatIn
from chat.streaming import StreamAnswer
from fleet.activity import activity_record
from observability.context import RequestContext
from runtime import (
    AgentBusyError,
    AgentError,
    AgentReply,
    AgentRuntime,
    AgentStream,
    ConcurrencyLimiter,
    TenantRuntime,
    agent_call,
    registry,
)

logger = logging.getLogger("gateway.chat")

RETRY_AFTER_BUSY_S = 1
FAILOVER_HEADER = "X-Gateway-Failover"  # the routed agent's key, when a failover agent answered


class UnroutedError(Exception):
    """No agent has this routing name and no agent is the fallback route."""


class ForbiddenAgentError(Exception):
    """The caller's key may not use the routed agent."""


class ForbiddenEmpresaError(Exception):
    """The caller's key may not act for this empresa."""


class EmpresaDisabledError(Exception):
    """The empresa's tenant row is disabled."""


def route(modalidad: str, tenant: TenantRuntime | None = None) -> AgentRuntime:
    runtime = registry.route(modalidad, tenant)
    if runtime is not None:
        return runtime
    fallback = registry.snapshot.fallback
    if fallback is None:
        raise UnroutedError(modalidad)
    metrics.unrouted_total.inc()
    logger.warning(
        "modalidad not routed; using the fallback route",
        extra={"event": "unrouted_modalidad", "agent": fallback.key},
    )
    return fallback


async def chat_handle(
    payload: ChatIn,
    *,
    principal: Principal,
    ctx: RequestContext,
    stream_accept: str | None = None,
) -> JsonAnswer | StreamAnswer:
    """The empresa's rules first (key binding, tenant row: enabled, rate, routes, calls in
    flight), then the agent's. `stream_accept`: the caller's Accept on a streaming request."""
    id_empresa = payload.id_empresa
    if not principal.may_act_for(id_empresa):
        raise ForbiddenEmpresaError(id_empresa)
    tenant = registry.snapshot.tenants.get(id_empresa) if id_empresa is not None else None
    if tenant is not None:
        if not tenant.spec.enabled:
            raise EmpresaDisabledError(id_empresa)
        per_minute = tenant.spec.requests_per_minute
        if per_minute and not rate_limiter.check_nowait(tenant.rate_identity, per_minute):
            await rate_limiter.check(tenant.rate_identity, per_minute)
    runtime = route(payload.config.modalidad, tenant)
    key = runtime.key
    ctx.agent = key
    if not principal.may_use(key):
        raise ForbiddenAgentError(key)
    held = _tenant_slots(tenant, key)
    tenant_id = id_empresa if tenant is not None else None
    if held is None:
        result = _busy(key, ctx)
    else:
        try:
            answer = await _call(
                runtime, payload, ctx=ctx, stream_accept=stream_accept, principal=principal,
                tenant=tenant, held=held,
            )  # fmt: skip
        except BaseException:
            _release(held)
            raise
        if isinstance(answer, StreamAnswer):
            # The stream keeps the empresa's slots too, and is recorded when it ends.
            answer.on_close = lambda stream: _stream_closed(stream, held, key, tenant_id)
            return answer
        _release(held)
        result = answer
    activity_record(
        key,
        fallback=result.status != 200 or "X-Gateway-Fallback" in result.headers,
        seconds=time.perf_counter() - ctx.started,
        tenant=tenant_id,
    )
    return result


def _stream_closed(
    answer: StreamAnswer, held: list[ConcurrencyLimiter], key: str, tenant: int | None
) -> None:
    _release(held)
    activity_record(key, fallback=answer.failed, seconds=answer.first_byte_s, tenant=tenant)


def _release(held: list[ConcurrencyLimiter]) -> None:
    for slots in held:
        slots.release()


def _tenant_slots(tenant: TenantRuntime | None, key: str) -> list[ConcurrencyLimiter] | None:
    """The empresa's slots this call takes (its cap across agents, its cap on this agent), or
    None when one of them is full (nothing is then held)."""
    if tenant is None:
        return []
    held: list[ConcurrencyLimiter] = []
    for slots in (tenant.slots, tenant.agent_slots.get(key)):
        if slots is None:
            continue
        if not slots.try_acquire():
            for taken in held:
                taken.release()
            return None
        held.append(slots)
    return held


def _busy(key: str, ctx: RequestContext) -> JsonAnswer:
    """The contract's backpressure 503: the agent's slots, or the empresa's, are all taken."""
    ctx.outcome = "backpressure"
    metrics.series(metrics.agent_errors, key, "backpressure").inc()
    if ctx.trace is not None:
        ctx.trace.event("gateway.backpressure", {"gateway.agent": key})
    return JsonAnswer(
        status=503,
        body={"detail": messages.SATURATED},
        headers={"Retry-After": str(RETRY_AFTER_BUSY_S)},
    )


async def _call(
    runtime: AgentRuntime,
    payload: ChatIn,
    *,
    ctx: RequestContext,
    stream_accept: str | None,
    principal: Principal,
    tenant: TenantRuntime | None = None,
    held: list[ConcurrencyLimiter] | None = None,
) -> JsonAnswer | StreamAnswer:
    """The routed agent's answer; when it fails in a way that fails over (chat/failover.py),
    the first of its failover agents that answers, else the routed agent's fallback (or 503)."""
    spec = runtime.spec
    # The request's deadline, for its failover agents (no clock read for an agent without).
    deadline = asyncio.get_running_loop().time() + spec.timeout_s if spec.failover else 0.0
    try:
        reply = await _agent_reply(runtime, payload, ctx, stream_accept)
    except AgentError as exc:
        failed = _failed(runtime, exc, payload, ctx)
        if spec.failover and fails_over(exc, routed=True):
            answer = await _failover(
                runtime, exc, payload, ctx=ctx, stream_accept=stream_accept, deadline=deadline,
                principal=principal, tenant=tenant, held=held if held is not None else [],
            )  # fmt: skip
            if answer is not None:
                return answer
        return failed
    return _answered(runtime, reply, payload, ctx, fallback_reply=spec.fallback_reply)


async def _agent_reply(
    runtime: AgentRuntime,
    payload: ChatIn,
    ctx: RequestContext,
    stream_accept: str | None,
    deadline: float | None = None,
) -> AgentReply | AgentStream:
    return await agent_call(
        runtime,
        agent_payload(payload, runtime.spec.payload_format),
        request_id=ctx.request_id,
        tenant=payload.id_empresa,
        extra_headers=ctx.trace_headers,
        before_send=ctx.before_agent_call,
        trace=ctx.trace,
        stream_accept=stream_accept,
        deadline=deadline,
        session_id=payload.session_id,
    )


def _failed(
    runtime: AgentRuntime, exc: AgentError, payload: ChatIn, ctx: RequestContext
) -> JsonAnswer:
    """The routed agent's failure, counted, as its answer: 503 when it is busy, else its
    fallback text."""
    key = runtime.key
    if isinstance(exc, AgentBusyError):
        return _busy(key, ctx)
    ctx.outcome = exc.reason
    if ctx.trace is not None and exc.reason == "circuit_open":
        ctx.trace.event(
            "gateway.breaker_rejected",
            {"gateway.agent": key, "gateway.breaker_state": runtime.breaker.state},
        )
    metrics.agent_error(key, exc)
    logger.debug(
        "agent call failed",
        extra={"event": "agent_call", "agent": key, "reason": exc.reason, "error": str(exc)},
    )
    return _reply(runtime.spec.fallback_reply, payload, key, None, fallback=exc.reason)


async def _failover(
    routed: AgentRuntime,
    error: AgentError,
    payload: ChatIn,
    *,
    ctx: RequestContext,
    stream_accept: str | None,
    deadline: float,
    principal: Principal,
    tenant: TenantRuntime | None,
    held: list[ConcurrencyLimiter],
) -> JsonAnswer | StreamAnswer | None:
    """The answer of the first failover agent that answers within `deadline` (loop time), or
    None. A streamed answer's empresa slot on its agent joins `held`."""
    loop = asyncio.get_running_loop()
    first = routed.key
    for target in failover_agents(routed, registry.snapshot.agents):
        to = target.key
        if not principal.may_use(to):
            failover_count(first, to, FORBIDDEN)
            continue
        if deadline - loop.time() < MIN_LEFT_S:
            failover_count(first, to, NO_TIME)
            break
        slots = tenant.agent_slots.get(to) if tenant is not None else None
        if slots is not None and not slots.try_acquire():
            failover_count(first, to, "backpressure")
            continue
        if ctx.trace is not None:
            ctx.trace.event(
                "gateway.failover",
                {"gateway.agent": first, "gateway.failover.to": to,
                 "gateway.failover.after": error.reason},
            )  # fmt: skip
        try:
            reply = await _agent_reply(target, payload, ctx, stream_accept, deadline)
        except AgentError as exc:
            if slots is not None:
                slots.release()
            failover_count(first, to, exc.reason)
            metrics.agent_error(to, exc)
            logger.debug(
                "failover agent failed",
                extra={"event": "agent_call", "agent": to, "reason": exc.reason,
                       "error": str(exc), "failover_for": first},
            )  # fmt: skip
            if not fails_over(exc, routed=False):
                return None
            error = exc
            continue
        except BaseException:
            if slots is not None:
                slots.release()
            raise
        failover_count(first, to, ANSWERED)
        ctx.failover = to
        answer = _answered(
            target, reply, payload, ctx, fallback_reply=routed.spec.fallback_reply,
            failover_from=first,
        )  # fmt: skip
        if slots is not None:
            if isinstance(answer, StreamAnswer):
                held.append(slots)  # given back when the stream closes
            else:
                slots.release()
        return answer
    return None


def _answered(
    runtime: AgentRuntime,
    reply: AgentReply | AgentStream,
    payload: ChatIn,
    ctx: RequestContext,
    *,
    fallback_reply: str,
    failover_from: str | None = None,
) -> JsonAnswer | StreamAnswer:
    """An agent's reply as the answer; `failover_from`: the routed agent, when a failover
    agent answered (the X-Gateway-Failover header)."""
    key = runtime.key
    headers = {FAILOVER_HEADER: failover_from} if failover_from is not None else None
    metrics.series(metrics.upstream_status, key, "200").inc()
    if isinstance(reply, AgentStream):
        ctx.outcome = "ok"
        return StreamAnswer(reply, key=key, fallback_reply=fallback_reply, ctx=ctx, headers=headers)
    if not reply.reply.strip():
        ctx.outcome = "empty_reply"
        metrics.series(metrics.agent_errors, key, "empty_reply").inc()
        return _reply(
            messages.EMPTY_REPLY, payload, key, None, fallback="empty_reply", headers=headers
        )
    ctx.outcome = "ok"
    logger.debug("agent call ok", extra={"event": "agent_call", "agent": key})
    return _reply(reply.reply, payload, key, reply.url, headers=headers)


def _reply(
    text: str,
    payload: ChatIn,
    key: str,
    url: str | None,
    *,
    fallback: str | None = None,
    headers: dict[str, str] | None = None,
) -> JsonAnswer:
    body = {"reply": text, "session_id": payload.session_id, "agent_used": key, "url": url}
    if fallback:
        headers = {**(headers or {}), "X-Gateway-Fallback": fallback}
    return JsonAnswer(status=200, body=body, headers=headers or {})
