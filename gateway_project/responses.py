"""JSON responses in the contract's shape, encoded with orjson."""

from collections.abc import Mapping

import orjson
from django.http import HttpResponse

JSON = "application/json"


def json_response(
    status: int, body: object, headers: Mapping[str, str] | None = None
) -> HttpResponse:
    content = orjson.dumps(body)
    response = HttpResponse(content, content_type=JSON, status=status, headers=headers)
    response["Content-Length"] = str(len(content))
    return response


def detail_response(
    status: int, detail: str, headers: Mapping[str, str] | None = None
) -> HttpResponse:
    return json_response(status, {"detail": detail}, headers)
