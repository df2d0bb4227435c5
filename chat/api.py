"""POST /api/agent/chat: the one endpoint n8n calls."""

from django.http import HttpRequest, HttpResponse
from ninja import Router

from agents.conf import gateway_settings
from chat import messages
from chat.schemas import ChatIn, ChatOut, ErrorOut
from chat.services import ForbiddenAgentError, UnroutedError, chat_handle
from gateway_project import metrics
from gateway_project.auth import gateway_key_auth
from gateway_project.context import RequestContext, current_request_id, request_context
from gateway_project.logs import preview
from gateway_project.responses import detail_response, json_response

router = Router(tags=["chat"])

_ERRORS = dict.fromkeys((400, 401, 403, 405, 413, 429, 503), ErrorOut)


@router.post(
    "/chat",
    response={200: ChatOut, **_ERRORS},
    auth=gateway_key_auth,
    summary="Send a chat message to the agent for config.modalidad",
)
async def chat(request: HttpRequest, payload: ChatIn) -> HttpResponse:
    ctx = request_context.get() or RequestContext(request_id=current_request_id())
    ctx.session_id = payload.session_id
    ctx.message_preview = preview(payload.message, gateway_settings.log_message_preview)
    try:
        result = await chat_handle(payload, principal=request.auth, ctx=ctx)  # type: ignore[attr-defined]
    except UnroutedError:
        ctx.outcome = "rejected"
        metrics.requests_total.labels(metrics.UNROUTED, "400").inc()
        return detail_response(400, messages.UNKNOWN_MODALIDAD.format(payload.config.modalidad))
    except ForbiddenAgentError:
        ctx.outcome = "rejected"
        return detail_response(403, messages.FORBIDDEN_AGENT)
    return json_response(result.status, result.body, result.headers)


@router.api_operation(
    ["GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"], "/chat", include_in_schema=False
)
async def chat_wrong_method(request: HttpRequest) -> HttpResponse:
    return detail_response(405, messages.METHOD_NOT_ALLOWED, {"Allow": "POST"})
