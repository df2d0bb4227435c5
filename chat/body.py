"""The chat request body, parsed and validated into ChatIn, or refused with the contract's one-line
400 `detail` (the first error, fields being validated in contract order)."""

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


class InvalidChatBodyError(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def contract_detail(errors: Sequence[Any]) -> str:
    """The first of pydantic's validation errors, as the contract words it."""
    if not errors:
        return messages.INVALID_JSON
    error = errors[0]
    if error.get("type") == CONTRACT_ERROR:
        return str(error["msg"])
    field_path = [str(part) for part in error.get("loc", ())]
    if not field_path:
        return messages.INVALID_JSON  # the body is not a JSON object
    name = ".".join(field_path)
    if error.get("type") == "string_type":  # an optional text field (chat/schemas.py _TEXT)
        return messages.not_text(name)
    return _FIELD_MESSAGES.get(name) or messages.invalid_field(name)


def parse_chat_body(body: bytes) -> ChatIn:
    """The request body as ChatIn, or InvalidChatBodyError carrying the contract's 400 `detail`."""
    if not body:
        raise InvalidChatBodyError(messages.INVALID_JSON)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidChatBodyError(messages.INVALID_JSON) from None
    try:
        return ChatIn.model_validate(data)
    except pydantic.ValidationError as exc:
        raise InvalidChatBodyError(
            contract_detail(exc.errors(include_url=False, include_input=False))
        ) from None
