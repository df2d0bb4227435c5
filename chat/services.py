"""chat_handle: route the request to its agent, call it, and turn the outcome into a reply (or,
for a streaming request to an agent that streams, a StreamAnswer: chat/streaming.py).

Counting the answer in gateway_requests_total is the ASGI front's job (one place for every chat
answer, refusals included); this module sets `ctx.agent`, the label it uses.
"""

import logging
import time

from access.auth import Principal
from access.ratelimit import rate_limiter
from chat import messages, metrics
from chat.payloads import agent_payload
from chat.responses import JsonAnswer
from chat.schemas import ChatIn
from chat.streaming import StreamAnswer
from fleet.activity import activity_record
from observability.context import RequestContext
from runtime import (
    AgentBusyError,
    AgentError,
    AgentRuntime,
    AgentStream,
    ConcurrencyLimiter,
    TenantRuntime,
    agent_call,
    registry,
)

logger = logging.getLogger("gateway.chat")

RETRY_AFTER_BUSY_S = 1


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
        if tenant.spec.requests_per_minute:
            await rate_limiter.check(f"empresa:{id_empresa}", tenant.spec.requests_per_minute)
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
            answer = await _call(runtime, payload, ctx=ctx, stream_accept=stream_accept)
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
    runtime: AgentRuntime, payload: ChatIn, *, ctx: RequestContext, stream_accept: str | None
) -> JsonAnswer | StreamAnswer:
    key = runtime.key
    spec = runtime.spec
    try:
        reply = await agent_call(
            runtime,
            agent_payload(payload, spec.payload_format),
            request_id=ctx.request_id,
            tenant=payload.id_empresa,
            extra_headers=ctx.trace_headers,
            before_send=ctx.before_agent_call,
            trace=ctx.trace,
            stream_accept=stream_accept,
            session_id=payload.session_id,
        )
    except AgentBusyError:
        return _busy(key, ctx)
    except AgentError as exc:
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
        return _reply(spec.fallback_reply, payload, key, None, fallback=exc.reason)
    metrics.series(metrics.upstream_status, key, "200").inc()
    if isinstance(reply, AgentStream):
        ctx.outcome = "ok"
        return StreamAnswer(reply, key=key, fallback_reply=spec.fallback_reply, ctx=ctx)
    if not reply.reply.strip():
        ctx.outcome = "empty_reply"
        metrics.series(metrics.agent_errors, key, "empty_reply").inc()
        return _reply(messages.EMPTY_REPLY, payload, key, None, fallback="empty_reply")
    ctx.outcome = "ok"
    logger.debug("agent call ok", extra={"event": "agent_call", "agent": key})
    return _reply(reply.reply, payload, key, reply.url)


def _reply(
    text: str, payload: ChatIn, key: str, url: str | None, *, fallback: str | None = None
) -> JsonAnswer:
    body = {"reply": text, "session_id": payload.session_id, "agent_used": key, "url": url}
    return JsonAnswer(
        status=200, body=body, headers={"X-Gateway-Fallback": fallback} if fallback else {}
    )
