"""The NinjaAPI: routers, the orjson codec, and one JSON error shape for every failure."""

import logging
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser
from ninja.renderers import BaseRenderer

import gateway_project
from chat import messages
from chat.api import router as chat_router
from chat.errors import contract_detail
from gateway_project.ratelimit import RateLimited
from gateway_project.responses import (
    detail_response,
    rate_limited_answer,
    unauthorized_answer,
)

logger = logging.getLogger("gateway.api")


class OrjsonParser(Parser):
    def parse_body(self, request: HttpRequest) -> Any:
        return orjson.loads(request.body)


class OrjsonRenderer(BaseRenderer):
    media_type = "application/json"

    def render(self, request: HttpRequest, data: Any, *, response_status: int) -> bytes:
        return orjson.dumps(data)


api = NinjaAPI(
    title="Agent gateway",
    version=gateway_project.__version__,
    description="Routes n8n chat requests to the AI agent for their modalidad. "
    "Contract: docs/CONTRACT.md.",
    parser=OrjsonParser(),
    renderer=OrjsonRenderer(),
    urls_namespace="api",
)
api.add_router("/agent", chat_router)


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    return detail_response(400, contract_detail(exc.errors))


@api.exception_handler(AuthenticationError)
def _unauthorized(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return unauthorized_answer().http_response()


@api.exception_handler(RateLimited)
def _rate_limited(request: HttpRequest, exc: RateLimited) -> HttpResponse:
    return rate_limited_answer(exc.retry_after_s).http_response()


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    # ninja raises HttpError(400) when the body is not JSON at all.
    detail = messages.INVALID_JSON if exc.status_code == 400 else str(exc.message)
    return detail_response(exc.status_code, detail)


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("unhandled error in an API view", extra={"event": "api_error"})
    return detail_response(500, messages.INTERNAL_ERROR)
