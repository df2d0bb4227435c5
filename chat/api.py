"""The django-ninja face of POST /api/agent/chat: a thin adapter over chat/pipeline.py.

It publishes the operation in the OpenAPI schema (body, answers, the key header) and serves the
chat requests that need Django: those with an Origin header, which django-cors-headers answers
around it, and wrong methods (405). Ninja neither parses the body nor authenticates: the pipeline
does both, exactly as for the fast lane.
"""

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from ninja import Router
from ninja.security import APIKeyHeader

from chat import messages
from chat.pipeline import chat_answer
from chat.responses import detail_response
from chat.schemas import ChatIn, ChatOut, ErrorOut
from observability.context import request_context

router = Router(tags=["chat"])

_ERRORS = dict.fromkeys((400, 401, 403, 405, 413, 429, 503), ErrorOut)


def _inline_refs(schema: Any, defs: dict[str, Any]) -> Any:
    """`schema` with its `#/$defs/...` references replaced by the definitions themselves."""
    if isinstance(schema, dict):
        ref = schema.get("$ref", "")
        if ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline_refs(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline_refs(item, defs) for item in schema]
    return schema


def _request_body_schema() -> dict[str, Any]:
    schema = ChatIn.model_json_schema()
    body = _inline_refs(schema, schema.get("$defs", {}))
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": body}}}}


class SchemaOnlyKeyAuth(APIKeyHeader):
    """Publishes the `X-API-Key` scheme; admits every request, because the pipeline authenticates
    (a Bearer token works too)."""

    param_name = "X-API-Key"

    def __call__(self, request: HttpRequest) -> bool:
        return True

    def authenticate(self, request: HttpRequest, key: str | None) -> bool:
        return True


@router.post(
    "/chat",
    response={200: ChatOut, **_ERRORS},
    auth=SchemaOnlyKeyAuth(),
    openapi_extra=_request_body_schema(),
    summary="Send a chat message to the agent for config.modalidad",
)
async def chat(request: HttpRequest) -> HttpResponseBase:
    ctx = request_context.get()
    answer = await chat_answer(
        request.headers,
        request.body,
        request.META.get("REMOTE_ADDR") or "unknown",
        admitted=ctx.principal if ctx is not None else None,
    )
    return answer.http_response()


@router.api_operation(
    ["GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"], "/chat", include_in_schema=False
)
async def chat_wrong_method(request: HttpRequest) -> HttpResponse:
    return detail_response(405, messages.METHOD_NOT_ALLOWED, {"Allow": "POST"})
