"""chat_handle: route the request to its agent, call it, and turn the outcome into a reply.

Counting the answer in gateway_requests_total is the ASGI front's job (one place for every chat
answer, refusals included); this module sets `ctx.agent`, the label it uses.
"""

import logging

from access.auth import Principal
from chat import messages, metrics
from chat.payloads import agent_payload
from chat.responses import JsonAnswer
from chat.schemas import ChatIn
from fleet.activity import activity_record
from observability.context import RequestContext
from runtime.agent_runtime import AgentRuntime
from runtime.calls import agent_call
from runtime.errors import AgentBusyError, AgentError
from runtime.registry import registry

logger = logging.getLogger("gateway.chat")

RETRY_AFTER_BUSY_S = 1


class UnroutedError(Exception):
    """No agent has this routing name and no agent is the fallback route."""


class ForbiddenAgentError(Exception):
    """The caller's key may not use the routed agent."""


def route(modalidad: str) -> AgentRuntime:
    runtime = registry.route(modalidad)
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


async def chat_handle(payload: ChatIn, *, principal: Principal, ctx: RequestContext) -> JsonAnswer:
    runtime = route(payload.config.modalidad)
    key = runtime.key
    ctx.agent = key
    if not principal.may_use(key):
        raise ForbiddenAgentError(key)
    result = await _call(runtime, payload, ctx=ctx)
    activity_record(key, fallback=result.status != 200 or "X-Gateway-Fallback" in result.headers)
    return result


async def _call(runtime: AgentRuntime, payload: ChatIn, *, ctx: RequestContext) -> JsonAnswer:
    key = runtime.key
    spec = runtime.spec
    try:
        reply = await agent_call(
            runtime,
            agent_payload(payload, spec.payload_format),
            request_id=ctx.request_id,
            before_send=ctx.before_agent_call,
        )
    except AgentBusyError:
        ctx.outcome = "backpressure"
        metrics.series(metrics.agent_errors, key, "backpressure").inc()
        return JsonAnswer(
            status=503,
            body={"detail": messages.SATURATED},
            headers={"Retry-After": str(RETRY_AFTER_BUSY_S)},
        )
    except AgentError as exc:
        ctx.outcome = exc.reason
        metrics.agent_error(key, exc)
        logger.debug(
            "agent call failed",
            extra={"event": "agent_call", "agent": key, "reason": exc.reason, "error": str(exc)},
        )
        return _reply(spec.fallback_reply, payload, key, None, fallback=exc.reason)
    metrics.series(metrics.upstream_status, key, "200").inc()
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
