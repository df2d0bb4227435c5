"""The NinjaAPI under /api: its routers, the orjson codec, the OpenAPI schema at /api/docs, and
the contract's JSON shape for an error ninja itself raises. Chat answers come from
chat/pipeline.py, never from ninja's validation or auth."""

import logging
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import HttpError
from ninja.renderers import BaseRenderer

import gateway_project
from chat import messages
from chat.api import router as chat_router
from chat.responses import detail_response

logger = logging.getLogger("gateway.api")


class OrjsonRenderer(BaseRenderer):
    media_type = "application/json"

    def render(self, request: HttpRequest, data: Any, *, response_status: int) -> bytes:
        return orjson.dumps(data)


api = NinjaAPI(
    title="Agent gateway",
    version=gateway_project.__version__,
    description="Routes n8n chat requests to the AI agent for their modalidad. "
    "Contract: docs/CONTRACT.md.",
    renderer=OrjsonRenderer(),
    urls_namespace="api",
)
api.add_router("/agent", chat_router)


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return detail_response(exc.status_code, str(exc.message))


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("unhandled error in an API view", extra={"event": "api_error"})
    return detail_response(500, messages.INTERNAL_ERROR)
