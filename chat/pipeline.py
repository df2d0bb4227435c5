"""The chat pipeline: every answer to POST /api/agent/chat, from the request's headers, body and
client address. Both entry points are thin adapters over it: the ASGI edge's fast lane
(edge/lean_handler.py) and the django-ninja operation (chat/api.py), which publishes the schema
and serves what needs Django (requests with an Origin header, through the CORS middleware).

The edge admits a caller from its headers before reading the body (`admit`: 503 before the agents
are loaded, 401, 429), so a wrong key costs no body read; `chat_answer` admits it itself when it
was not.
"""

import logging
from collections.abc import Mapping

from access.auth import Principal, authenticate
from access.ratelimit import RateLimited
from chat import messages, metrics
from chat.body import InvalidChatBodyError, parse_chat_body
from chat.responses import JsonAnswer, detail_answer, rate_limited_answer, unauthorized_answer
from chat.services import (
    EmpresaDisabledError,
    ForbiddenAgentError,
    ForbiddenEmpresaError,
    UnroutedError,
    chat_handle,
)
from chat.streaming import StreamAnswer, stream_accept
from gateway_project.conf import gateway_settings
from observability.context import RequestContext, current_request_id, request_context
from observability.logs import preview
from runtime import registry

logger = logging.getLogger("gateway.chat")

CHAT_PATH = "/api/agent/chat"
RETRY_AFTER_NOT_LOADED_S = 2


async def admit(headers: Mapping[str, str], client: str) -> Principal | JsonAnswer:
    """The caller, or the refusal that answers it: 503 while the agents were never loaded, 401,
    429 (one request is counted against the caller's rate limit). Headers alone decide."""
    if not registry.snapshot.loaded:
        return detail_answer(
            503, messages.NOT_LOADED, {"Retry-After": str(RETRY_AFTER_NOT_LOADED_S)}
        )
    try:
        principal = await authenticate(headers, client)
    except RateLimited as exc:
        return rate_limited_answer(exc.retry_after_s)
    if principal is None:
        return unauthorized_answer()
    ctx = request_context.get()
    if ctx is not None:
        ctx.principal, ctx.key_name = principal, principal.name
    return principal


async def chat_answer(
    headers: Mapping[str, str], body: bytes, client: str, *, admitted: Principal | None = None
) -> JsonAnswer | StreamAnswer:
    """The answer to one chat request; `admitted`: the caller `admit` already let in. A streaming
    request (`Accept: text/event-stream`) to an agent that streams gets a StreamAnswer."""
    try:
        if admitted is None:
            outcome = await admit(headers, client)
            if isinstance(outcome, JsonAnswer):
                return outcome
            admitted = outcome
        return await _answer(body, admitted, stream_accept(headers))
    except Exception:
        logger.exception("unhandled error answering a chat request", extra={"event": "http_error"})
        return detail_answer(500, messages.INTERNAL_ERROR)


async def _answer(
    body: bytes, principal: Principal, accept: str | None = None
) -> JsonAnswer | StreamAnswer:
    try:
        payload = parse_chat_body(body)
    except InvalidChatBodyError as exc:
        return detail_answer(400, exc.detail)
    ctx = request_context.get() or RequestContext(request_id=current_request_id())
    ctx.session_id = payload.session_id
    ctx.id_empresa = payload.id_empresa
    ctx.message_preview = preview(payload.message, gateway_settings.log_message_preview)
    try:
        return await chat_handle(payload, principal=principal, ctx=ctx, stream_accept=accept)
    except UnroutedError:
        ctx.outcome = "rejected"
        ctx.agent = metrics.UNROUTED
        return detail_answer(400, messages.UNKNOWN_MODALIDAD.format(payload.config.modalidad))
    except ForbiddenAgentError:
        ctx.outcome = "rejected"
        return detail_answer(403, messages.FORBIDDEN_AGENT)
    except ForbiddenEmpresaError:
        ctx.outcome = "rejected"
        return detail_answer(403, messages.FORBIDDEN_EMPRESA)
    except EmpresaDisabledError:
        ctx.outcome = "rejected"
        return detail_answer(403, messages.EMPRESA_DISABLED)
    except RateLimited as exc:
        ctx.outcome = "rejected"
        return rate_limited_answer(exc.retry_after_s)
