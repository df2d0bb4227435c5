"""Turn validation errors into the contract's one-line 400 `detail`."""

from collections.abc import Sequence
from typing import Any

import orjson
import pydantic

from chat import messages
from chat.schemas import CONTRACT_ERROR, ChatIn

# The message for a field that is missing or of a shape the field validators never saw.
_FIELD_MESSAGES = {
    "message": messages.EMPTY_MESSAGE,
    "session_id": messages.BAD_SESSION_ID,
    "id_empresa": messages.BAD_ID_EMPRESA,
    "config": messages.EMPTY_MODALIDAD,
    "config.modalidad": messages.EMPTY_MODALIDAD,
    "config.id_empresa": messages.BAD_ID_EMPRESA,
}
_BODY_LOCATION = ("body", "payload")


def contract_detail(errors: Sequence[dict[str, Any]]) -> str:
    """The first error, as the contract words it (fields are validated in contract order)."""
    if not errors:
        return messages.INVALID_JSON
    error = errors[0]
    if error.get("type") == CONTRACT_ERROR:
        return str(error["msg"])
    loc = [str(part) for part in error.get("loc", ())]
    field_path = loc[len(_BODY_LOCATION) :] if tuple(loc[:2]) == _BODY_LOCATION else loc[1:]
    if not field_path:
        return messages.INVALID_JSON  # the body is missing or not a JSON object
    name = ".".join(field_path)
    if name == "config" and error.get("input") is not None and error.get("type") != "missing":
        return messages.not_object("config")
    return _FIELD_MESSAGES.get(name) or messages.invalid_field(name)


class InvalidChatBodyError(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def chat_in_from_body(body: bytes) -> ChatIn:
    """The request body as ChatIn, or InvalidChatBodyError with the contract's 400 `detail`.

    The same answer django-ninja gives for the chat operation's body parameter (an empty or
    unparsable body, then validation errors located under ("body", "payload")), without a
    request object: the chat fast lane (chat/endpoint.py) calls it on the raw body.
    """
    if not body:
        raise InvalidChatBodyError(messages.INVALID_JSON)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidChatBodyError(messages.INVALID_JSON) from None
    try:
        return ChatIn.model_validate(data)
    except pydantic.ValidationError as exc:
        errors = [
            {"type": error["type"], "loc": (*_BODY_LOCATION, *error["loc"]), "msg": error["msg"]}
            for error in exc.errors(include_url=False, include_input=False)
        ]
        raise InvalidChatBodyError(contract_detail(errors)) from None
