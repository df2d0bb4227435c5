"""POST /api/agent/chat: the one endpoint n8n calls.

Two entry points share `respond`: this django-ninja operation (the OpenAPI schema, CORS requests,
wrong methods) and the fast lane in chat/endpoint.py that serves every other chat request.
"""

from django.http import HttpRequest, HttpResponse
from ninja import Router

from agents.conf import gateway_settings
from chat import messages
from chat.schemas import ChatIn, ChatOut, ErrorOut
from chat.services import ForbiddenAgentError, UnroutedError, chat_handle
from gateway_project import metrics
from gateway_project.auth import Principal, gateway_key_auth
from gateway_project.context import RequestContext, current_request_id, request_context
from gateway_project.logs import preview
from gateway_project.responses import JsonAnswer, detail_answer, detail_response

router = Router(tags=["chat"])

_ERRORS = dict.fromkeys((400, 401, 403, 405, 413, 429, 503), ErrorOut)


@router.post(
    "/chat",
    response={200: ChatOut, **_ERRORS},
    auth=gateway_key_auth,
    summary="Send a chat message to the agent for config.modalidad",
)
async def chat(request: HttpRequest, payload: ChatIn) -> HttpResponse:
    answer = await respond(payload, request.auth)  # type: ignore[attr-defined]
    return answer.http_response()


@router.api_operation(
    ["GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"], "/chat", include_in_schema=False
)
async def chat_wrong_method(request: HttpRequest) -> HttpResponse:
    return detail_response(405, messages.METHOD_NOT_ALLOWED, {"Allow": "POST"})


async def respond(payload: ChatIn, principal: Principal) -> JsonAnswer:
    """The answer to a valid chat body from an authenticated caller."""
    ctx = request_context.get() or RequestContext(request_id=current_request_id())
    ctx.session_id = payload.session_id
    ctx.message_preview = preview(payload.message, gateway_settings.log_message_preview)
    try:
        return await chat_handle(payload, principal=principal, ctx=ctx)
    except UnroutedError:
        ctx.outcome = "rejected"
        ctx.agent = metrics.UNROUTED
        return detail_answer(400, messages.UNKNOWN_MODALIDAD.format(payload.config.modalidad))
    except ForbiddenAgentError:
        ctx.outcome = "rejected"
        return detail_answer(403, messages.FORBIDDEN_AGENT)
